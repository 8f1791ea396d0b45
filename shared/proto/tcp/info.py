"""A connection's TCP_INFO, in the layout of Linux's ``struct tcp_info`` (280 bytes
as of Linux 6.18; getsockopt gives the first ``buflen`` of them).

What a Tcb keeps is filled in (state, options and window scales, RTO, MSS both
ways, packets in flight, retransmissions, RTT and its variance in us, cwnd and
ssthresh in packets, segments and bytes each way, windows, times since the
last send and receive); what mkstack has no counterpart for (pacing, delivery
rate, ECN, busy time, DSACKs) is 0, as the kernel reports an unused feature.
"""

from __future__ import annotations

import struct

from shared.proto.tcp import seq as S
from shared.proto.tcp.tcb import State, Tcb

SIZE = 280
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4
# include/net/tcp_states.h
LINUX_STATE = {State.ESTABLISHED: 1, State.SYN_SENT: 2, State.SYN_RCVD: 3, State.FIN_WAIT_1: 4, State.FIN_WAIT_2: 5,
               State.TIME_WAIT: 6, State.CLOSED: 7, State.CLOSE_WAIT: 8, State.LAST_ACK: 9, State.CLOSING: 11}
STATE_LISTEN, STATE_CLOSE = 10, 7         # TCP_LISTEN, TCP_CLOSE of tcp_states.h
TCP_MSS_DEFAULT = 536
# u8 state, ca_state, retransmits, probes, backoff, options, wscales, flags; then u32 rto .. total_retrans (24),
# u64 pacing_rate, max_pacing_rate, bytes_acked, bytes_received; u32 segs_out, segs_in, notsent_bytes, min_rtt,
# data_segs_in, data_segs_out; u64 delivery_rate, busy_time, rwnd_limited, sndbuf_limited; u32 delivered,
# delivered_ce; u64 bytes_sent, bytes_retrans; u32 dsack_dups, reord_seen, rcv_ooopack, snd_wnd, rcv_wnd, rehash;
# u16 total_rto, total_rto_recoveries; u32 total_rto_time; then the AccECN counters (zero)
_LAYOUT = struct.Struct("=8B24I4Q6I4Q2I2Q6I2HI")
_US = 1_000_000


def snd_mss(info: bytes) -> int:
    """tcpi_snd_mss of a TCP_INFO (what getsockopt(TCP_MAXSEG) gives for a connection)."""
    return _LAYOUT.unpack_from(info)[_NAMES.index("snd_mss")]


def idle_info(state: int, mss: int = TCP_MSS_DEFAULT) -> bytes:
    """TCP_INFO of a socket without a connection (new, closed or listening); its
    delivery_rate_app_limited bit is set, as tcp_init_sock leaves it."""
    return _pack(state=state, snd_mss=mss, flags=1)


_NAMES = ("state ca_state retransmits probes backoff options wscales flags rto ato snd_mss rcv_mss unacked "
          "sacked lost retrans fackets last_data_sent last_ack_sent last_data_recv last_ack_recv pmtu "
          "rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd advmss reordering rcv_rtt rcv_space total_retrans "
          "pacing_rate max_pacing_rate bytes_acked bytes_received segs_out segs_in notsent_bytes min_rtt "
          "data_segs_in data_segs_out delivery_rate busy_time rwnd_limited sndbuf_limited delivered "
          "delivered_ce bytes_sent bytes_retrans dsack_dups reord_seen rcv_ooopack snd_wnd rcv_wnd rehash "
          "total_rto total_rto_recoveries total_rto_time").split()


def _pack(**f: int) -> bytes:
    unknown = f.keys() - set(_NAMES)
    if unknown:
        raise KeyError(f"not tcp_info fields: {sorted(unknown)}")
    out = _LAYOUT.pack(*(f.get(n, 0) for n in _NAMES))
    return out + bytes(SIZE - len(out))


def tcp_info(t: Tcb, now: float, bytes_acked: int, pmtu: int) -> bytes:
    """The TCP_INFO of a connection's Tcb at ``now`` (``bytes_acked``: the stream bytes the
    peer acknowledged, which the socket layer counts past 4 GiB; Linux counts the SYN too)."""
    if t.state not in (State.SYN_SENT, State.SYN_RCVD):
        bytes_acked += 1
    opts = (TCPI_OPT_TIMESTAMPS if t.ts_ok else 0) | (TCPI_OPT_SACK if t.sack_ok else 0)
    if t.snd_wscale or t.rcv_wscale:
        opts |= TCPI_OPT_WSCALE
    mss = max(1, t.snd_mss)
    ms = lambda since: min(0xFFFFFFFF, int(max(0.0, now - since) * 1000))   # noqa: E731
    rtt = t.rtt
    srtt = rtt.srtt or 0.0            # no sample yet
    return _pack(
        state=LINUX_STATE[t.state], retransmits=min(255, rtt.backoff), backoff=min(255, rtt.backoff),
        options=opts, wscales=(t.snd_wscale & 0xF) | (t.rcv_wscale & 0xF) << 4,
        rto=int(rtt.rto * _US), ato=int(t.cfg.delayed_ack * _US), snd_mss=t.snd_mss, rcv_mss=t.cfg.mss,
        unacked=-(-t.flight // mss), retrans=0, last_data_recv=ms(t.last_rcv), last_ack_recv=ms(t.last_rcv),
        pmtu=pmtu, rcv_ssthresh=t.rcv_space, rtt=int(srtt * _US), rttvar=int(rtt.rttvar * _US),
        snd_ssthresh=min(0x7FFFFFFF, t.cc.ssthresh // mss), snd_cwnd=max(1, t.cc.cwnd // mss), advmss=t.cfg.mss,
        reordering=3, rcv_space=t.rcv_space, total_retrans=t.stats["retrans"], bytes_acked=bytes_acked,
        bytes_received=S.sub(t.rcv_nxt, t.irs) - 1 if t.irs or t.rcv_nxt else 0, segs_out=t.stats["segs_out"],
        segs_in=t.stats["segs_in"], notsent_bytes=max(0, len(t.sndq) - t.flight), min_rtt=int(srtt * _US),
        snd_wnd=t.snd_wnd, rcv_wnd=t.rcv_space, total_rto=min(0xFFFF, t.stats["rto"]))
