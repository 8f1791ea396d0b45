"""Per-connection socket options on a Tcb, its TCP_INFO, and their checks in the socket layer."""
import errno
import socket
import struct

import pytest

from shared.proto import sockopt
from shared.proto.tcp import info, persist
from shared.proto.tcp.cc import Cubic, Reno
from shared.proto.tcp.tcb import TcpConfig
from tests.unit.proto.tcp.helpers import established

CFG = TcpConfig(sack=True, timestamps=True, cc="cubic")


def test_switching_congestion_control_keeps_the_window():
    t = established(CFG)
    t.cc.cwnd, t.cc.ssthresh = 20_000, 30_000
    t.setopt("cc", "reno", now=1)
    assert isinstance(t.cc, Reno) and (t.cc.cwnd, t.cc.ssthresh) == (20_000, 30_000)
    with pytest.raises(ValueError):
        t.setopt("cc", "vegas", now=1)
    assert isinstance(t.cc, Reno)


def test_options_shape_the_connection_and_survive_a_restart():
    t = established(CFG)
    t.setopt("keepidle", 60, now=1)
    t.setopt("maxseg", 900, now=1)
    t.setopt("ttl", 33, now=1)
    t.setopt("cc", "reno", now=1)
    assert t.cfg.keepalive_time == 60 and t.cfg.mss == 900 and t.snd_mss <= 900
    r = persist.restore(CFG, persist.snapshot(t), bytes(t.sndq), dict(t.ooo))
    assert r.opts == {"keepidle": 60, "maxseg": 900, "ttl": 33, "cc": "reno"}
    assert r.cfg.keepalive_time == 60 and r.cfg.mss == 900 and isinstance(r.cc, Reno)
    with pytest.raises(ValueError):
        t.setopt("nonsense", 1, now=1)


def test_tcp_info_has_linux_layout_and_the_connection_values():
    t = established(CFG)
    t.ts_ok = True                  # as if the handshake had carried timestamps
    t.rtt.sample(0.010)
    b = info.tcp_info(t, now=2.0, bytes_acked=5000, pmtu=1500)
    assert len(b) == info.SIZE == 280
    state, _, _, _, _, options = struct.unpack_from("6B", b)
    rto, _, snd_mss = struct.unpack_from("=3I", b, 8)
    rtt = struct.unpack_from("=I", b, 8 + 15 * 4)[0]
    bytes_acked = struct.unpack_from("=Q", b, 8 + 24 * 4 + 16)[0]
    assert state == 1 and options & info.TCPI_OPT_TIMESTAMPS
    assert snd_mss == t.snd_mss and rto == int(t.rtt.rto * 1e6) and rtt == 10_000
    assert bytes_acked == 5001                       # the SYN counts, as in Linux
    assert info.idle_info(info.STATE_LISTEN)[:1] == b"\x0a" and isinstance(t.cc, Cubic)


@pytest.mark.parametrize("level,name,value,stream,want", [
    (socket.IPPROTO_IP, socket.IP_TTL, 0, True, errno.EINVAL),
    (socket.IPPROTO_IP, socket.IP_TTL, -1, False, ("ttl", 64)),
    (socket.IPPROTO_IP, socket.IP_TOS, 0x13, True, ("tos", 0x10)),       # TCP keeps its ECN bits
    (socket.IPPROTO_IP, socket.IP_TOS, 0x13, False, ("tos", 0x13)),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 128, True, errno.EINVAL),
    (socket.IPPROTO_TCP, socket.TCP_MAXSEG, 87, True, errno.EINVAL),
    (socket.IPPROTO_TCP, socket.TCP_MAXSEG, 0, True, ("maxseg", 0)),
    (socket.IPPROTO_TCP, socket.TCP_CONGESTION, "bbr", True, errno.ENOENT),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5, False, errno.ENOPROTOOPT),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, "5", True, errno.EINVAL),
])
def test_socket_layer_checks_options_as_linux(level, name, value, stream, want):
    if isinstance(want, tuple):
        assert sockopt.check(level, name, value, stream) == want
    else:
        with pytest.raises(OSError) as e:
            sockopt.check(level, name, value, stream)
        assert e.value.errno == want
