"""msgpack encoding of messages, with a decoder that never trusts its input."""

from __future__ import annotations

from collections import namedtuple

import msgpack

from shared.ipc.messages import CAPTURE_FIELDS, EV_READY, EV_RESTART, TCP_EVENT_FIELDS, lookup

MAX_MESSAGE = 1 << 20     # no legitimate control or packet message is larger


class BadMessage(ValueError):
    """A frame that is not a well-formed message of a known type."""


def encode(code: int, *fields: object) -> bytes:
    return msgpack.packb((code, *fields), use_bin_type=True)


def decode(frame: bytes) -> tuple[int, tuple]:
    """Decode and check a message against the schema: (code, its fields as a named
    tuple, names from messages.py); raises BadMessage."""
    if len(frame) > MAX_MESSAGE:
        raise BadMessage(f"message of {len(frame)} bytes exceeds {MAX_MESSAGE}")
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise BadMessage(f"undecodable message: {exc.__class__.__name__}") from None
    if not isinstance(obj, list) or not obj or type(obj[0]) is not int:
        raise BadMessage("message is not [code, ...]")
    mt = lookup(obj[0])
    if mt is None:
        raise BadMessage(f"unknown message code {obj[0]:#x}")
    fields = obj[1:]
    if len(fields) != len(mt.fields):
        raise BadMessage(f"{mt.name} takes {len(mt.fields)} fields, got {len(fields)}")
    for (name, typ), val in zip(mt.fields, fields):
        if not isinstance(val, typ) or (isinstance(val, bool) and typ is not bool):
            names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise BadMessage(f"{mt.name}.{name} must be {names}")
    return obj[0], mt.named._make(fields)


def decode_reply(frame: bytes) -> tuple[int, object]:
    """Decode a control reply ``[errno, result]`` (errno 0 on success)."""
    try:
        obj = msgpack.unpackb(frame, raw=False)
    except Exception as exc:
        raise BadMessage(f"undecodable reply: {exc.__class__.__name__}") from None
    if not isinstance(obj, list) or len(obj) != 2 or type(obj[0]) is not int:
        raise BadMessage("reply is not [errno, result]")
    return obj[0], obj[1]


# -- the syscall endpoint's replies and events (see messages.py) -------------------------
def sys_reply(req: int, err: int, result: object, ready: list | None) -> bytes:
    return msgpack.packb([req, err, result, ready], use_bin_type=True)


def ready_event(fd: int, version: int, mask: int, sock_id: int) -> bytes:
    return msgpack.packb([EV_READY, fd, version, mask, sock_id])


def restart_event(pid: int) -> bytes:
    return msgpack.packb([EV_RESTART, pid])


# -- TCP_EVENTS items -----------------------------------------------------------------------
TCP_EVENT = {kind: namedtuple(f"TcpEvent_{kind}", ["conn", "kind", *(n for n, _ in fields)])
             for kind, fields in TCP_EVENT_FIELDS.items()}


def decode_tcp_event(item: object) -> tuple | None:
    """One TCP_EVENTS item as a named tuple (conn, kind, and the kind's fields), or None
    if it is not one: an unknown kind, a missing field, a field of another type."""
    if type(item) is not list or len(item) < 2 or type(item[0]) is not int:
        return None
    shape = _EVENT_SHAPES.get(item[1]) if type(item[1]) is str else None
    if shape is None or len(item) != shape[1]:
        return None
    values = item[2:]
    if not all(map(isinstance, values, shape[2])) or True in map(_is_bool, values):   # no field is a bool
        return None
    return shape[0]._make(item)


def _is_bool(v: object) -> bool:
    return v is True or v is False


_EVENT_SHAPES = {kind: (TCP_EVENT[kind], 2 + len(fields), tuple(t for _, t in fields))
                 for kind, fields in TCP_EVENT_FIELDS.items()}


# -- capture frames -------------------------------------------------------------------------
CaptureFrame = namedtuple("CaptureFrame", CAPTURE_FIELDS)


def capture_frame(ifindex: int, direction: int, ts: float, frame: bytes) -> bytes:
    return msgpack.packb([ifindex, direction, ts, frame])


def decode_capture(body: bytes) -> CaptureFrame:
    return CaptureFrame(*msgpack.unpackb(body))
