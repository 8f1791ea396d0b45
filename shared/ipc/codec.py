"""msgpack encoding of messages, with a decoder that never trusts its input."""

from __future__ import annotations

import msgpack

from shared.ipc.messages import lookup

MAX_MESSAGE = 1 << 20     # no legitimate control or packet message is larger


class BadMessage(ValueError):
    """A frame that is not a well-formed message of a known type."""


def encode(code: int, *fields: object) -> bytes:
    return msgpack.packb((code, *fields), use_bin_type=True)


def decode(frame: bytes) -> tuple[int, list]:
    """Decode and check a message against the schema; raises BadMessage."""
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
    return obj[0], fields


def decode_reply(frame: bytes) -> tuple[int, object]:
    """Decode a control reply ``[errno, result]`` (errno 0 on success)."""
    try:
        obj = msgpack.unpackb(frame, raw=False)
    except Exception as exc:
        raise BadMessage(f"undecodable reply: {exc.__class__.__name__}") from None
    if not isinstance(obj, list) or len(obj) != 2 or type(obj[0]) is not int:
        raise BadMessage("reply is not [errno, result]")
    return obj[0], obj[1]
