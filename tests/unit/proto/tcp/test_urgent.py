"""Urgent data (MSG_OOB) in the engine: RFC 9293 3.8.5 with RFC 6093's BSD pointer."""

from shared.proto.tcp.tcb import Segment
from shared.wire.tcp import ACK, PSH, URG, TcpOptions

from .helpers import IRS, ISS, established, take

R = IRS + 1
L = ISS + 1


def useg(seq, data, urg):
    return Segment(seq, L, ACK | URG, 65535, data, TcpOptions(), urg)


def test_urgent_send_points_just_after_the_last_byte_and_ignores_nagle():
    t = established()
    t.send(b"abc", now=1)
    take(t)
    t.send(b"!", now=1, urgent=True)              # Nagle would hold this: data is in flight
    [s] = take(t)
    assert s.flags == ACK | PSH | URG and s.seq == L + 3 and s.urg == 1 and s.data == b"!"
    t.receive(Segment(R, L + 4, ACK, 65535), now=1.1)
    assert t.snd_up is None                       # acked: urgent mode over
    t.send(b"x", now=1.2)
    [s] = take(t)
    assert not s.flags & URG and s.urg == 0


def test_pointer_is_counted_from_each_segment_and_capped():
    t = established(peer_mss=1000)
    t.send(b"u" * 2500, now=1, urgent=True)
    segs = take(t)
    assert [s.urg for s in segs] == [2500, 1500, 500]
    assert all(s.flags & URG for s in segs)


def test_receive_reports_the_stream_offset_of_the_urgent_byte():
    t = established()
    t.receive(Segment(R, L, ACK, 65535, b"hello"), now=1)
    t.receive(useg(R + 5, b"ab!", 3), now=1)      # '!' is urgent (pointer 3: the byte before R+8)
    assert bytes(t.delivered) == b"helloab!" and t.urgent == [7]


def test_pointer_ahead_of_the_data_announces_a_byte_still_to_come():
    t = established()
    t.receive(useg(R, b"abc", 10), now=1)
    assert t.urgent == [9]


def test_repeated_or_stale_pointers_are_ignored():
    t = established()
    t.receive(useg(R, b"ab!", 3), now=1)
    t.receive(useg(R, b"ab!", 3), now=1)          # the same segment again
    t.receive(useg(R + 3, b"cd", 1), now=1)       # a new pointer, at "c"
    assert t.urgent == [2, 3]
    t.receive(useg(R + 5, b"e", 0), now=1)        # pointer 0 is meaningless: ignored
    assert t.urgent == [2, 3]
