import random

import msgpack
import pytest

from shared.ipc.codec import BadMessage, decode, decode_reply, encode
from shared.ipc.messages import CTL_PING, DEV_XMIT, IP_RCV, all_types


def test_round_trip_and_schema():
    code, fields = decode(encode(IP_RCV, 2, [1, 2, 3]))
    assert code == IP_RCV and fields == (2, [1, 2, 3])
    assert (fields.ifindex, fields.handles) == (2, [1, 2, 3])          # named as in messages.py
    assert decode(encode(CTL_PING)) == (CTL_PING, ())


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", b"not msgpack at all",
    msgpack.packb({"a": 1}), msgpack.packb([]), msgpack.packb(["x"]),
    msgpack.packb([0x7777]),                       # unknown code
    msgpack.packb([IP_RCV, 2]),                    # missing field
    msgpack.packb([IP_RCV, 2, [1], 9]),            # extra field
    msgpack.packb([IP_RCV, "2", [1]]),             # wrong type
    msgpack.packb([IP_RCV, True, [1]]),            # bool is not an int here
    b"\x91" + b"\xcf" + b"\xff" * 8,               # huge int code
    b"x" * (2 << 20),                              # oversized
])
def test_bad_messages(frame):
    with pytest.raises(BadMessage):
        decode(frame)


def test_random_garbage_only_raises_bad_message():
    rng = random.Random(3)
    for _ in range(5000):
        try:
            decode(rng.randbytes(rng.randrange(0, 64)))
        except BadMessage:
            pass


def test_reply_decoding():
    assert decode_reply(msgpack.packb([0, {"x": 1}])) == (0, {"x": 1})
    with pytest.raises(BadMessage):
        decode_reply(msgpack.packb([0]))


def test_every_code_is_unique_and_in_its_range():
    codes = [m.code for m in all_types()]
    assert len(codes) == len(set(codes))
    assert DEV_XMIT >> 8 == 1 and IP_RCV >> 8 == 2


def test_tcp_events_decode_into_named_fields_and_malformed_ones_are_refused():
    from shared.ipc.codec import decode_tcp_event
    ev = decode_tcp_event([7, "acc", 3, 0x0A420001, 51000, 0x0A420002, 80])
    assert (ev.conn, ev.kind, ev.listener, ev.rport, ev.lport) == (7, "acc", 3, 51000, 80)
    assert decode_tcp_event([7, "data", 0, b"x"]).data == b"x"
    for bad in ([7, "data", 0], [7, "data", 0, "text"], [7, "acked", True], [7, "nonsense"], ["7", "eof"],
                [7], "eof", [7, "eof", 1]):
        assert decode_tcp_event(bad) is None, bad


def test_every_event_tcp_emits_is_in_the_schema():
    """Each ``self.events.append([...])`` in services/tcp.py names a kind of TCP_EVENT_FIELDS
    with as many fields as the schema gives it."""
    import ast
    import pathlib
    from shared.ipc.messages import TCP_EVENT_FIELDS
    src = pathlib.Path(__file__).resolve().parents[3] / "services" / "tcp.py"
    found = []
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.List) and len(node.elts) >= 2 and isinstance(node.elts[1], ast.Constant) \
                and node.elts[1].value in TCP_EVENT_FIELDS:
            found.append((node.elts[1].value, len(node.elts) - 2))
    assert {k for k, _ in found} == set(TCP_EVENT_FIELDS)
    assert all(n == len(TCP_EVENT_FIELDS[k]) for k, n in found), found
