"""One TCP connection as a sans-IO state machine (RFC 9293 3.10).

Segments go in with ``receive(seg, now)``; application calls are ``send``,
``close``, ``abort`` and ``read_credit``; ``poll(now)`` runs the timers.
Everything the connection wants to transmit collects in ``output``; data for
the application in ``delivered``; ``acked`` counts data bytes the peer
acknowledged (so the socket layer can free send-buffer space); ``error`` is
the errno the application should see. Time is always passed in.

Implemented: every state and transition (simultaneous open and close,
half-close), RST and RFC 5961 challenge ACKs, MSS, window scaling and
timestamps with PAWS (RFC 7323), SACK (RFC 2018) on receive and a
scoreboard-driven retransmission on send (after RFC 6675), RTO (RFC 6298,
Karn), fast retransmit and NewReno recovery (RFC 5681, 6582), pluggable
congestion control, Nagle, delayed ACK, zero-window probes, keepalive,
TIME_WAIT, and urgent data (RFC 6093: BSD pointer semantics; ``urgent`` lists
the stream offsets of urgent bytes the peer announced, for the socket layer).

Why one file: it is one state machine, and RFC 9293's segment-arrival steps (3.10.7)
must be read in their order; the parts that stand alone already do (sequence
arithmetic, options, congestion control, SACK scoreboard, TCP_INFO, persistence).
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass, field, replace

from shared.bytequeue import ByteQueue
from shared.proto.tcp import seq as S
from shared.proto.tcp.cc import ALGORITHMS
from shared.proto.tcp.rtt import RttEstimator
from shared.wire.tcp import ACK, FIN, PSH, RST, SYN, URG, TcpOptions


class State(enum.Enum):
    SYN_SENT = "SYN-SENT"
    SYN_RCVD = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"
    CLOSED = "CLOSED"

    # members are singletons: hash by identity, as they compare. Enum's own __hash__ is
    # Python code (hash of the name), run for every ``state in SYNCHRONIZED``
    __hash__ = object.__hash__


_OPT_FIELDS = {"keepidle": "keepalive_time", "keepintvl": "keepalive_intvl", "keepcnt": "keepalive_probes",
               "maxseg": "mss", "cc": "cc"}


def with_opts(cfg: "TcpConfig", opts: dict) -> "TcpConfig":
    """``cfg`` as a connection's options change it (TCP_MAXSEG lowers the MSS only)."""
    changes = {_OPT_FIELDS[k]: v for k, v in opts.items() if k in _OPT_FIELDS}
    if "mss" in changes:
        changes["mss"] = min(cfg.mss, changes["mss"])
    return replace(cfg, **changes) if changes else cfg


SYNCHRONIZED = {State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING,
                State.LAST_ACK, State.TIME_WAIT}
RECEIVES_DATA = {State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2}


@dataclass(slots=True)
class Segment:
    seq: int
    ack: int
    flags: int
    wnd: int = 0
    data: bytes = b""
    opts: TcpOptions = field(default_factory=TcpOptions)
    urg: int = 0                     # urgent pointer, with the URG flag

    @property
    def seg_len(self) -> int:
        return len(self.data) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


@dataclass(frozen=True, slots=True)
class TcpConfig:
    mss: int = 1460                  # what we can receive (MTU - 40)
    rcv_wscale: int = 7
    sack: bool = True
    timestamps: bool = True
    nagle: bool = True
    delayed_ack: float = 0.04        # Linux's minimum ATO
    time_wait: float = 60.0          # 2 MSL, as TCP_TIMEWAIT_LEN
    fin_timeout: float = 60.0        # an orphaned connection's FIN-WAIT-2 (net.ipv4.tcp_fin_timeout)
    rfc1337: bool = True             # RSTs leave TIME-WAIT alone (Linux's sysctl of the name; its default is 0)
    ooo_max_blocks: int = 256        # disjoint out-of-order blocks kept per connection
    invalid_ratelimit: float = 0.5   # least gap between ACKs answering invalid segments (tcp_invalid_ratelimit)
    max_orphans: int = 4096          # the tcp service's: closed connections finishing alone (tcp_max_orphans)
    max_tw_buckets: int = 16384      # the tcp service's: connections in TIME-WAIT (tcp_max_tw_buckets)
    syn_retries: int = 6
    retries2: int = 15
    keepalive: bool = False
    keepalive_time: float = 7200.0
    keepalive_intvl: float = 75.0
    keepalive_probes: int = 9
    cc: str = "cubic"
    rto_min: float = 0.2
    tso: bool = False                # new data may leave in segments of many MSS; the device cuts them
    syncookies: bool = True          # a listener's full half-open queue answers with cookies (the tcp service's)


def reset_for(seg: Segment) -> Segment | None:
    """The RST answering a segment that has no connection (RFC 9293 3.10.7.1)."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return Segment(seq=seg.ack, ack=0, flags=RST)
    return Segment(seq=0, ack=S.add(seg.seq, seg.seg_len), flags=RST | ACK)


class Tcb:
    def __init__(self, cfg: TcpConfig, iss: int, now: float, ts_offset: int = 0) -> None:
        self.cfg = cfg
        self.state = State.CLOSED
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss                 # highest sequence sent so far
        self.snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.snd_mss = 536                 # RFC 9293 default until the peer says
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0                   # right edge we advertised (never shrunk)
        self.rcv_space = 65535             # bytes the socket layer can still take
        self.sndq = ByteQueue()            # unacknowledged + unsent data; sndq[0] is at self.sndq_seq
        self.sndq_seq = S.add(iss, 1)
        self.fin_queued = False
        self.ooo: dict[int, bytes] = {}    # out-of-order data by sequence number
        self.ooo_fin: int | None = None    # sequence number of a FIN that arrived early
        self.sack_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_offset = ts_offset
        self.last_ack_sent = 0
        self.oow_last = -1e9               # when we last answered an invalid segment (rate limit)
        self.sacked: list[tuple[int, int]] = []   # scoreboard: peer's SACK blocks above snd_una
        self.rexmit_next = iss             # next hole to retransmit, up to lost_until
        self.lost_until = iss
        self.in_recovery = False
        self.recover = iss
        self.dupacks = 0
        self.rtt = RttEstimator(rto_min=cfg.rto_min)
        self.cc = ALGORITHMS[cfg.cc](self.snd_mss)
        self.rtt_seq: int | None = None    # Karn: time one segment at a time when no timestamps
        self.rtt_sent = 0.0
        self.retries = 0
        self.rto_at: float | None = None
        self.dack_at: float | None = None
        self.persist_at: float | None = None
        self.tw_at: float | None = None
        self.ka_at: float | None = None
        self.orphan_fw2: float | None = None  # the socket is gone: FIN-WAIT-2 lasts this long (tcp_fin_timeout)
        self.fw2_at: float | None = None
        self.last_rcv = now
        self.unacked_segs = 0
        self.nodelay = not cfg.nagle       # TCP_NODELAY
        self.keepalive = cfg.keepalive     # SO_KEEPALIVE
        self.snd_up: int | None = None     # urgent pointer: sequence just after the urgent byte
        self.rcv_up: int | None = None     # sequence of the peer's latest urgent byte
        self.rcv_total = 0                 # data bytes delivered in order, ever (stream offsets)
        self.urgent: list[int] = []        # stream offsets of newly announced urgent bytes
        self.output: list[Segment] = []
        self.delivered = bytearray()
        self.acked = 0
        self.eof = False                   # the peer's FIN was received in order
        self.error: int | None = None
        self.passive = False
        self.stats = {"retrans": 0, "fast_retrans": 0, "rto": 0, "dupacks": 0, "ooo": 0, "challenge_acks": 0,
                      "acks_skipped": 0, "segs_in": 0, "segs_out": 0, "fin_wait2_timeouts": 0, "ooo_dropped": 0,
                      "tail_probes": 0}
        self.opts: dict[str, int | str] = {}    # per-connection socket options (setopt), kept across restarts

    # -- opening ------------------------------------------------------------------
    @classmethod
    def connect(cls, cfg: TcpConfig, iss: int, now: float, ts_offset: int = 0, rcv_space: int = 65535) -> "Tcb":
        t = cls(cfg, iss, now, ts_offset)
        t.rcv_space = rcv_space
        t.state = State.SYN_SENT
        t._send_syn(now)
        return t

    @classmethod
    def accept(cls, cfg: TcpConfig, iss: int, syn: Segment, now: float, ts_offset: int = 0,
               rcv_space: int = 65535) -> "Tcb":
        """A SYN reached a listener: answer SYN-ACK (SYN-RECEIVED)."""
        t = cls(cfg, iss, now, ts_offset)
        t.rcv_space = rcv_space
        t.passive = True
        t._take_syn(syn)
        t.state = State.SYN_RCVD
        t._send_syn(now)
        return t

    def _take_syn(self, syn: Segment) -> None:
        o = syn.opts
        self.irs = syn.seq
        self.rcv_nxt = S.add(syn.seq, 1)
        self.rcv_adv = S.add(self.rcv_nxt, min(self.rcv_space, 0xFFFF))
        self.snd_wnd = syn.wnd                     # never scaled in a SYN
        self.snd_wl1, self.snd_wl2 = syn.seq, syn.ack
        self.max_snd_wnd = self.snd_wnd
        self.snd_mss = max(88, min(o.mss if o.mss else 536, self.cfg.mss))
        self.cc.mss = self.snd_mss
        self.cc.cwnd = 10 * self.snd_mss
        if o.wscale is not None and (self.passive or self.cfg.rcv_wscale is not None):
            self.snd_wscale = o.wscale
            self.rcv_wscale = self.cfg.rcv_wscale
        self.sack_ok = self.cfg.sack and o.sack_ok
        if self.cfg.timestamps and o.ts is not None:
            self.ts_ok = True
            self.ts_recent = o.ts[0]

    def _send_syn(self, now: float) -> None:
        synack = self.state is State.SYN_RCVD
        opts = TcpOptions(
            mss=self.cfg.mss,
            wscale=self.cfg.rcv_wscale if not synack or self.rcv_wscale else None,
            sack_ok=self.cfg.sack if not synack else self.sack_ok,
            ts=(self.ts_val(now), self.ts_recent if synack else 0)
            if (self.cfg.timestamps and (not synack or self.ts_ok)) else None)
        wnd = min(self.rcv_space, 0xFFFF)
        flags = SYN | ACK if synack else SYN
        self._emit(Segment(self.iss, self.rcv_nxt if synack else 0, flags, wnd, b"", opts))
        self.snd_nxt = S.add(self.iss, 1)
        self.snd_max = S.max_seq(self.snd_max, self.snd_nxt)
        self._arm_rto(now)

    # -- helpers ------------------------------------------------------------------
    def ts_val(self, now: float) -> int:
        return (int(now * 1000) + self.ts_offset) & 0xFFFFFFFF

    def _emit(self, seg: Segment) -> None:
        self.output.append(seg)
        self.stats["segs_out"] += 1
        if seg.flags & ACK:
            self.last_ack_sent = seg.ack
            self.dack_at = None
            self.unacked_segs = 0

    def _rcv_edge(self) -> int:
        """Where the right edge of the window could be now."""
        return S.add(self.rcv_nxt, max(0, min(self.rcv_space, 0xFFFF << self.rcv_wscale)))

    def _wnd_field(self) -> int:
        """The window to advertise, scaled. The right edge never moves left, and
        moves right only by at least one MSS (receiver SWS avoidance, RFC 9293 3.8.6.2.2)."""
        edge = self._rcv_edge()
        if S.sub(edge, self.rcv_adv) >= min(self.snd_mss, S.sub(edge, self.rcv_nxt)) > 0:
            self.rcv_adv = edge
        if S.lt(self.rcv_adv, self.rcv_nxt):
            self.rcv_adv = self.rcv_nxt
        return min(0xFFFF, S.sub(self.rcv_adv, self.rcv_nxt) >> self.rcv_wscale)

    def _opts(self, now: float, with_sack: bool = True) -> TcpOptions:
        ts = (self.ts_val(now), self.ts_recent) if self.ts_ok else None
        sack = tuple(self._sack_blocks()) if (self.sack_ok and with_sack and self.ooo) else ()
        return TcpOptions(ts=ts, sack=sack)

    def _sack_blocks(self) -> list[tuple[int, int]]:
        blocks: list[list[int]] = []
        for s in sorted(self.ooo, key=lambda x: S.sub(x, self.rcv_nxt)):
            e = S.add(s, len(self.ooo[s]))
            if blocks and S.ge(blocks[-1][1], s):
                blocks[-1][1] = S.max_seq(blocks[-1][1], e)
            else:
                blocks.append([s, e])
        return [(a, b) for a, b in blocks][:4]

    def send_ack(self, now: float) -> None:
        self._emit(Segment(self.snd_nxt, self.rcv_nxt, ACK, self._wnd_field(), b"", self._opts(now)))

    def _oow_ack(self, seg: Segment, now: float) -> bool:
        """ACK an invalid segment (out of window, PAWS, RFC 5961 challenges), at most once per
        ``invalid_ratelimit`` per connection unless it carries data (RFC 5961 7, Linux's
        tcp_oow_rate_limited): a peer or a blind attacker cannot make us send an ACK per segment,
        and two stacks that disagree cannot loop ACKs at line rate. Linux has dropped its
        system-wide challenge-ACK limit as a side channel (CVE-2016-5696); so has this."""
        if (not seg.data or seg.flags & SYN) and now - self.oow_last < self.cfg.invalid_ratelimit:
            self.stats["acks_skipped"] += 1
            return False
        self.oow_last = now
        self.send_ack(now)
        return True

    def _challenge_ack(self, seg: Segment, now: float) -> None:
        if self._oow_ack(seg, now):
            self.stats["challenge_acks"] += 1

    def _arm_rto(self, now: float) -> None:
        self.rto_at = now + self.rtt.rto

    def seg_size(self) -> int:
        """Data bytes per segment: the MSS less the options every segment carries
        (tcp_current_mss: 1448 with timestamps on a 1500-byte MTU)."""
        size = self.snd_mss - (12 if self.ts_ok else 0)
        if self.sack_ok and self.ooo:
            size -= 4 + 8 * min(len(self.ooo), 3 if self.ts_ok else 4)
        return max(size, 64)

    @property
    def flight(self) -> int:
        return S.sub(self.snd_nxt, self.snd_una)

    def _sacked_bytes(self) -> int:
        return sum(S.sub(e, s) for s, e in self.sacked)

    def _is_sacked(self, seq: int) -> tuple[int, int] | None:
        for s, e in self.sacked:
            if S.le(s, seq) and S.lt(seq, e):
                return s, e
        return None

    # -- application calls -----------------------------------------------------------
    def send(self, data: bytes, now: float, urgent: bool = False) -> None:
        """Queue data (the socket layer enforces SO_SNDBUF) and transmit what may go.
        ``urgent`` (MSG_OOB) makes its last byte urgent: the urgent pointer goes
        just after it (RFC 6093, as BSD and Linux do) and Nagle is off until it is acked."""
        if self.fin_queued or self.state not in (State.SYN_SENT, State.SYN_RCVD, State.ESTABLISHED,
                                                 State.CLOSE_WAIT):
            raise OSError(errno.EPIPE, "Broken pipe")
        self.sndq += data
        if urgent and data:
            self.snd_up = self._data_end()
        self.output_data(now)

    def close(self, now: float) -> None:
        """No more data from us: queue a FIN (close() or shutdown(SHUT_WR))."""
        if self.state is State.SYN_SENT:
            self._to_closed()
            return
        if self.fin_queued or self.state not in (State.SYN_RCVD, State.ESTABLISHED, State.CLOSE_WAIT):
            return
        self.fin_queued = True
        self.state = State.LAST_ACK if self.state is State.CLOSE_WAIT else State.FIN_WAIT_1
        self.output_data(now)

    def abort(self, now: float) -> None:
        """Reset the connection (SO_LINGER 0, or close with unread data)."""
        if self.state in SYNCHRONIZED | {State.SYN_RCVD} and self.state is not State.TIME_WAIT:
            self._emit(Segment(self.snd_nxt, 0, RST))
        self._to_closed()

    def read_credit(self, n: int, now: float) -> None:
        """The application read ``n`` bytes: the receive window opens by that much.
        A window update goes out when the edge can move by two segments or more
        and the window we advertised had shrunk below half of what is free."""
        self.rcv_space += n
        if self.state not in RECEIVES_DATA:
            return
        advertised = S.sub(self.rcv_adv, self.rcv_nxt)
        grow = S.sub(self._rcv_edge(), self.rcv_adv)
        if grow >= 2 * self.snd_mss and advertised < S.sub(self._rcv_edge(), self.rcv_nxt) // 2:
            self.send_ack(now)

    def new_syn_ends_time_wait(self, seg: Segment) -> bool:
        """A SYN for this 4-tuple in TIME-WAIT opens a new connection instead of being
        challenged (RFC 6191): if its timestamp is newer than any we saw, or without
        timestamps, its sequence number is beyond what the old connection used
        (RFC 1122 4.2.2.13); the caller then ends this one (end_time_wait)."""
        if self.state is not State.TIME_WAIT or seg.flags & (SYN | ACK | RST) != SYN:
            return False
        if self.ts_ok and seg.opts.ts is not None:
            return S.gt(seg.opts.ts[0], self.ts_recent)
        return S.gt(seg.seq, self.rcv_nxt)

    def end_time_wait(self) -> None:
        self._to_closed()

    def _to_closed(self) -> None:
        self.state = State.CLOSED
        self.rto_at = self.dack_at = self.persist_at = self.tw_at = self.ka_at = self.fw2_at = None

    def orphan(self, now: float) -> None:
        """The application closed the socket: nobody can read any more, so a peer
        that never sends its FIN must not hold the connection in FIN-WAIT-2 for
        ever (Linux: tcp_fin_timeout, then the connection is dropped silently)."""
        self.orphan_fw2 = self.cfg.fin_timeout
        if self.state is State.FIN_WAIT_2 and self.fw2_at is None:
            self.fw2_at = now + self.orphan_fw2

    def _fail(self, err: int) -> None:
        self.error = err
        self._to_closed()

    # -- output --------------------------------------------------------------------
    def _data_end(self) -> int:
        return S.add(self.sndq_seq, len(self.sndq))

    def output_data(self, now: float) -> None:
        """tcp_write_xmit: retransmit lost holes, then new data, within the windows."""
        if self.state not in SYNCHRONIZED or self.state is State.TIME_WAIT:
            return
        mss = self.seg_size()
        # TSO: up to 64 KB of new data per segment, in whole MSS, for the device to cut (retransmissions stay one MSS)
        burst = max(1, (65535 - 120) // mss) * mss if self.cfg.tso else mss
        wnd_edge = S.add(self.snd_una, self.snd_wnd)
        # 1. holes the scoreboard says are lost
        while S.lt(self.rexmit_next, self.lost_until) and S.lt(self.rexmit_next, self.snd_max):
            if self._pipe() >= self.cc.cwnd:
                return
            hole = self._is_sacked(self.rexmit_next)
            if hole:
                self.rexmit_next = hole[1]
                continue
            end = self.lost_until
            nxt_sacked = min((s for s, _ in self.sacked if S.gt(s, self.rexmit_next)),
                             key=lambda s: S.sub(s, self.rexmit_next), default=None)
            if nxt_sacked is not None and S.lt(nxt_sacked, end):
                end = nxt_sacked
            n = min(mss, S.sub(end, self.rexmit_next))
            self._xmit(self.rexmit_next, n, now, retransmit=True)
            self.rexmit_next = S.add(self.rexmit_next, n if n else 1)
        # 2. new data, then the FIN
        data_end = self._data_end()
        while True:
            avail = S.sub(data_end, self.snd_nxt)
            if avail <= 0:
                if self.fin_queued and self.snd_nxt == data_end:
                    self._xmit(self.snd_nxt, 0, now)         # a bare FIN
                break
            room = min(S.sub(wnd_edge, self.snd_nxt), self.cc.cwnd - self._pipe())
            n = min(burst, avail, max(room, 0))
            if n > mss:
                n -= n % mss                                  # whole segments, the tail goes on its own
            # sender SWS avoidance (RFC 9293 3.8.6.2.1): a full segment, all that is
            # queued, or half the largest window the peer offered
            if n <= 0 or (n < mss and n < avail and n < self.max_snd_wnd // 2):
                # nothing in flight, so no ACK will come to open the window (a window
                # update may have been lost): probe later, as tcp_check_probe_timer
                if self.flight == 0 and self.persist_at is None:
                    self.persist_at = now + self.rtt.rto
                break
            if n < mss and self.flight > 0 and not self.nodelay and not self.fin_queued and self.snd_up is None:
                break                                        # Nagle (RFC 1122 4.2.3.4)
            self._xmit(self.snd_nxt, n, now)
        if self.flight and self.rto_at is None:
            self._arm_rto(now)

    def _pipe(self) -> int:
        """Bytes believed in the network (RFC 6675 'pipe'). Without SACK, each
        duplicate ACK says one more segment has left it (RFC 5681's inflation)."""
        lost_pending = max(0, S.sub(self.lost_until, self.rexmit_next))
        left = self._sacked_bytes() if self.sack_ok else self.dupacks * self.snd_mss
        return max(0, self.flight - left - lost_pending)

    def _xmit(self, seq: int, n: int, now: float, retransmit: bool = False) -> None:
        """Send ``n`` bytes from ``seq``; the FIN rides on the segment that ends the data."""
        off = S.sub(seq, self.sndq_seq)
        data_end = self._data_end()
        n = max(0, min(n, S.sub(data_end, seq)))            # the FIN's sequence number holds no data
        data = self.sndq[off:off + n] if n else b""
        at_end = S.add(seq, n) == data_end
        flags = ACK | (FIN if self.fin_queued and at_end else 0) | (PSH if n and at_end else 0)
        urg = 0
        if self.snd_up is not None and S.lt(seq, self.snd_up):
            flags |= URG                                     # tcp_options_write: capped at 0xFFFF
            urg = min(S.sub(self.snd_up, seq), 0xFFFF)
        seg = Segment(seq, self.rcv_nxt, flags, self._wnd_field(), data, self._opts(now), urg)
        self._emit(seg)
        end = S.add(seq, seg.seg_len)
        if retransmit or S.lt(seq, self.snd_max):
            self.stats["retrans"] += 1
            if self.rtt_seq is not None and S.le(seq, self.rtt_seq):
                self.rtt_seq = None                          # Karn: that sample is void
        elif self.rtt_seq is None and not self.ts_ok:
            self.rtt_seq, self.rtt_sent = seq, now
        if S.gt(end, self.snd_nxt):
            self.snd_nxt = end
        self.snd_max = S.max_seq(self.snd_max, self.snd_nxt)
        if self.rto_at is None:
            self._arm_rto(now)

    # -- input ---------------------------------------------------------------------------
    def receive(self, seg: Segment, now: float) -> None:
        self.stats["segs_in"] += 1
        self.last_rcv = now
        if self.state is State.CLOSED:
            return
        if self.state is State.SYN_SENT:
            self._rcv_syn_sent(seg, now)
            return
        if self.state is State.TIME_WAIT and seg.flags & FIN and not seg.flags & RST:
            self.send_ack(now)                                # their FIN again: ACK it, restart 2MSL
            self.tw_at = now + self.cfg.time_wait
            return
        if self.state is State.SYN_RCVD and seg.flags & SYN and not seg.flags & (ACK | RST) and seg.seq == self.irs:
            self._send_syn(now)                               # their SYN again: our SYN-ACK was lost
            return
        if not self._acceptable(seg, now):
            return
        if seg.flags & RST:
            self._rcv_rst(seg, now)
            return
        if seg.flags & SYN:
            self._challenge_ack(seg, now)                     # RFC 5961 4.2
            return
        if not seg.flags & ACK:
            return
        if not self._rcv_ack(seg, now):
            return
        if seg.flags & URG and seg.urg and self.state in RECEIVES_DATA:
            self._rcv_urg(S.add(seg.seq, seg.urg - 1))
        self._rcv_data(seg, now)
        if self.state is not State.CLOSED:
            self.output_data(now)
            if self.keepalive:
                self.ka_at = now + self.cfg.keepalive_time

    def _rcv_syn_sent(self, seg: Segment, now: float) -> None:
        f = seg.flags
        if f & ACK and (S.le(seg.ack, self.iss) or S.gt(seg.ack, self.snd_nxt)):
            if not f & RST:
                self._emit(Segment(seg.ack, 0, RST))
            return
        if f & RST:
            if f & ACK:
                self._fail(errno.ECONNREFUSED)
            return
        if not f & SYN:
            return
        self._take_syn(seg)
        if f & ACK:
            self.snd_una = seg.ack
            self.sndq_seq = seg.ack
            self.rto_at = None
            self.retries = 0
            if self.ts_ok and seg.opts.ts and seg.opts.ts[1]:
                self.rtt.sample((self.ts_val(now) - seg.opts.ts[1]) / 1000)
            self.state = State.ESTABLISHED
            self.send_ack(now)
            self.output_data(now)
        else:
            self.state = State.SYN_RCVD                       # simultaneous open
            self._send_syn(now)

    def _acceptable(self, seg: Segment, now: float) -> bool:
        """Sequence check (RFC 9293 3.10.7.4 first) and PAWS (RFC 7323 5)."""
        if self.ts_ok and seg.opts.ts is not None and not seg.flags & RST:
            if S.lt(seg.opts.ts[0], self.ts_recent) and self.state is not State.SYN_RCVD:
                self._oow_ack(seg, now)
                return False
        wnd = S.sub(self.rcv_adv, self.rcv_nxt) if S.gt(self.rcv_adv, self.rcv_nxt) else 0
        n = seg.seg_len
        if wnd == 0:
            # a closed window accepts nothing but the ACK, URG and RST at RCV.NXT
            ok = seg.seq == self.rcv_nxt
        elif n == 0:
            ok = S.between(self.rcv_nxt, seg.seq, S.add(self.rcv_nxt, wnd))
        else:
            end = S.add(seg.seq, n - 1)
            ok = (S.between(self.rcv_nxt, seg.seq, S.add(self.rcv_nxt, wnd))
                  or S.between(self.rcv_nxt, end, S.add(self.rcv_nxt, wnd)))
        if not ok:
            if not seg.flags & RST:
                self._oow_ack(seg, now)
            return False
        if self.ts_ok and seg.opts.ts is not None and S.le(seg.seq, self.last_ack_sent):
            self.ts_recent = seg.opts.ts[0]
        return True

    def _rcv_rst(self, seg: Segment, now: float) -> None:
        if self.state is State.TIME_WAIT and self.cfg.rfc1337:
            return             # RFC 1337: a RST must not cut TIME-WAIT short (old duplicates would follow)
        if seg.seq != self.rcv_nxt:
            self._challenge_ack(seg, now)                     # RFC 5961 3.2
            return
        if self.state is State.SYN_RCVD and self.passive:
            self._to_closed()                                 # back to LISTEN: the listener forgets it
            return
        if self.state in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            self._to_closed()
            return
        # as Linux's tcp_reset: after the peer's FIN, a reset says our writes went nowhere (EPIPE)
        self._fail(errno.ECONNREFUSED if self.state is State.SYN_RCVD else
                   errno.EPIPE if self.state is State.CLOSE_WAIT else errno.ECONNRESET)

    def _rcv_ack(self, seg: Segment, now: float) -> bool:
        ack = seg.ack
        if self.state is State.SYN_RCVD:
            if not (S.lt(self.snd_una, ack) and S.le(ack, self.snd_nxt)):
                self._emit(Segment(ack, 0, RST))
                return False
            self.state = State.ESTABLISHED
            self.snd_wnd = seg.wnd << self.snd_wscale
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
        if S.gt(ack, self.snd_nxt):
            self._oow_ack(seg, now)                           # acks something not yet sent
            return False
        if S.lt(ack, S.add(self.snd_una, -max(self.max_snd_wnd, 1))) and S.lt(ack, self.snd_una):
            self._challenge_ack(seg, now)                     # RFC 5961 5.2
            return False
        if self.sack_ok and seg.opts.sack:
            self._update_scoreboard(seg.opts.sack)
        wnd = seg.wnd << self.snd_wscale
        if S.gt(ack, self.snd_una):
            self._new_ack(seg, ack, now)
        elif ack == self.snd_una and not seg.data and not seg.flags & FIN and wnd == self.snd_wnd \
                and self.flight > 0:
            self._dupack(now)
        # window update (RFC 9293 3.10.7.4, fifth)
        if S.lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and S.le(self.snd_wl2, ack)):
            self.snd_wnd = wnd
            self.max_snd_wnd = max(self.max_snd_wnd, wnd)
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            if wnd:
                self.persist_at = None
        # our FIN acknowledged?
        fin_acked = self.fin_queued and self.snd_una == S.add(self._data_end(), 1)
        if self.state is State.FIN_WAIT_1 and fin_acked:
            self.state = State.FIN_WAIT_2
            if self.orphan_fw2 is not None:
                self.fw2_at = now + self.orphan_fw2
        elif self.state is State.CLOSING and fin_acked:
            self._enter_time_wait(now)
        elif self.state is State.LAST_ACK and fin_acked:
            self._to_closed()
            return False
        elif self.state is State.TIME_WAIT:
            self.send_ack(now)                                # a retransmitted FIN: ACK it, restart 2MSL
            self.tw_at = now + self.cfg.time_wait
            return False
        return True

    def _update_scoreboard(self, blocks: tuple[tuple[int, int], ...]) -> None:
        for s, e in blocks:
            if not (S.lt(s, e) and S.gt(e, self.snd_una) and S.le(e, self.snd_max)):
                continue                                      # stale or bogus block (RFC 2018 8)
            s = S.max_seq(s, self.snd_una)
            merged = [(s, e)]
            for a, b in self.sacked:
                if S.le(a, merged[0][1]) and S.ge(b, merged[0][0]):
                    merged[0] = (a if S.lt(a, merged[0][0]) else merged[0][0], S.max_seq(b, merged[0][1]))
                else:
                    merged.append((a, b))
            self.sacked = sorted(merged, key=lambda r: S.sub(r[0], self.snd_una))

    def _new_ack(self, seg: Segment, ack: int, now: float) -> None:
        acked_total = S.sub(ack, self.snd_una)
        data_acked = max(0, min(S.sub(ack, self.sndq_seq), len(self.sndq)))
        if data_acked:
            del self.sndq[:data_acked]
            self.sndq_seq = S.add(self.sndq_seq, data_acked)
            self.acked += data_acked
        if S.gt(ack, self.sndq_seq) and not self.sndq:
            self.sndq_seq = S.max_seq(self.sndq_seq, S.add(self.iss, 1))
        self.snd_una = ack
        if self.snd_up is not None and S.ge(ack, self.snd_up):
            self.snd_up = None                               # urgent mode ends once it is acked
        self.sacked = [(S.max_seq(s, ack), e) for s, e in self.sacked if S.gt(e, ack)]
        if S.lt(self.rexmit_next, ack):
            self.rexmit_next = ack
        if S.lt(self.lost_until, ack):
            self.lost_until = ack
        self.retries = 0
        self.rtt.backoff = 0
        # RTT: timestamps echo (RFC 7323 4) or the one timed segment (Karn)
        if self.ts_ok and seg.opts.ts and seg.opts.ts[1]:
            self.rtt.sample(((self.ts_val(now) - seg.opts.ts[1]) & 0xFFFFFFFF) / 1000)
        elif self.rtt_seq is not None and S.gt(ack, self.rtt_seq):
            self.rtt.sample(now - self.rtt_sent)
            self.rtt_seq = None
        if self.in_recovery:
            if S.ge(ack, self.recover):
                self.in_recovery = False                      # full ACK (RFC 6582 3.2 step 3)
                self.cc.cwnd = min(self.cc.ssthresh, max(self._pipe(), self.snd_mss) + self.snd_mss)
            else:                                             # partial ACK: the next hole is lost too
                self.lost_until = S.max_seq(self.lost_until, S.add(ack, self.snd_mss))
        else:
            self.cc.on_ack(acked_total, now, self.rtt.srtt)
        self.dupacks = 0
        self.rto_at = now + self.rtt.rto if self.flight else None

    def _dupack(self, now: float) -> None:
        self.dupacks += 1
        self.stats["dupacks"] += 1
        enough_sacked = self._sacked_bytes() >= 3 * self.snd_mss
        if self.in_recovery:
            if self.sacked:
                self.lost_until = S.max_seq(self.lost_until, self.sacked[0][0])
            return
        if self.dupacks >= 3 or enough_sacked:
            # fast retransmit (RFC 5681 3.2) entering NewReno/SACK recovery
            self.stats["fast_retrans"] += 1
            self.in_recovery = True
            self.recover = self.snd_max
            self.cc.on_loss(self.flight, now)
            top = self.sacked[-1][0] if self.sacked else S.add(self.snd_una, self.snd_mss)
            self.lost_until = S.max_seq(top, S.add(self.snd_una, self.snd_mss))
            # the first lost segment goes at once, whatever the pipe (RFC 6675 5 step 4.3)
            n = min(self.seg_size(), S.sub(self.lost_until, self.snd_una))
            self._xmit(self.snd_una, n, now, retransmit=True)
            self.rexmit_next = S.add(self.snd_una, max(n, 1))

    def _rcv_data(self, seg: Segment, now: float) -> None:
        fin_seq = S.add(seg.seq, len(seg.data)) if seg.flags & FIN else None
        if self.state not in RECEIVES_DATA:
            if fin_seq is not None and self.state in (State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK):
                self.send_ack(now)                            # our ACK of their FIN was lost
            return
        data, sq = seg.data, seg.seq
        if data:
            if S.lt(sq, self.rcv_nxt):                       # trim what we already have
                data = data[S.sub(self.rcv_nxt, sq):]
                sq = self.rcv_nxt
            room = S.sub(self.rcv_adv, sq) if S.gt(self.rcv_adv, sq) else 0
            data = data[:room]
            if not data:
                self.send_ack(now)                            # nothing fits: show the window
                return
        got = ack_now = False
        if data and sq == self.rcv_nxt:
            self._deliver(data)
            had_gap = bool(self.ooo)
            self._drain_ooo()
            self.unacked_segs += 1
            got, ack_now = True, had_gap or self.unacked_segs >= 2 or not self.cfg.delayed_ack
        elif data:
            self.stats["ooo"] += 1
            self._ooo_insert(sq, data)
            if fin_seq is not None:
                self.ooo_fin = fin_seq
            self.send_ack(now)                                # a gap: ACK at once, with SACK
            return
        # one ACK per segment: a FIN in order is ACKed (or its ACK delayed) by _rcv_fin, and
        # that ACK covers the data before it; a FIN beyond what we have gets ours at once
        if fin_seq is not None and S.gt(fin_seq, self.rcv_nxt):
            self.ooo_fin = fin_seq
            self.send_ack(now)
        elif (fin_seq is not None and fin_seq == self.rcv_nxt) or self.ooo_fin == self.rcv_nxt:
            self._rcv_fin(now, ack_now)
        elif ack_now:
            self.send_ack(now)
        elif got and self.dack_at is None:
            self.dack_at = now + self.cfg.delayed_ack

    def _rcv_urg(self, useq: int) -> None:
        """RFC 9293 3.10.7.4 sixth (tcp_check_urg): a pointer that moves forward
        announces a new urgent byte at ``useq`` (BSD pointer: the byte before it).
        The socket layer is told its stream offset; a pointer to data already
        received, or not beyond the last one, is ignored."""
        if S.lt(useq, self.rcv_nxt) or (self.rcv_up is not None and S.le(useq, self.rcv_up)):
            return
        self.rcv_up = useq
        self.urgent.append(self.rcv_total + S.sub(useq, self.rcv_nxt))

    def _deliver(self, data: bytes) -> None:
        self.rcv_total += len(data)
        self.delivered += data
        self.rcv_nxt = S.add(self.rcv_nxt, len(data))
        self.rcv_space -= len(data)

    def _ooo_insert(self, sq: int, data: bytes) -> None:
        """Keep out-of-order data as disjoint blocks: a segment that overlaps or
        touches blocks is merged with them; a new block beyond ``ooo_max_blocks``
        is dropped (the peer sends it again, as after Linux's tcp_prune_ofo_queue),
        so a peer cannot park millions of tiny or overlapping segments, and
        draining and SACK stay linear in a bounded number of blocks."""
        end = S.add(sq, len(data))
        touching = [s for s in self.ooo if S.le(s, end) and S.ge(S.add(s, len(self.ooo[s])), sq)]
        if len(touching) == 1 and S.le(touching[0], sq):
            # the usual case after a loss: the next segment continues a block; grow it in place
            s0 = touching[0]
            block = self.ooo[s0]
            if not isinstance(block, bytearray):
                block = self.ooo[s0] = bytearray(block)
            have = S.sub(S.add(s0, len(block)), sq)
            if have < len(data):
                block += data[have:]
            return
        if not touching:
            if len(self.ooo) >= self.cfg.ooo_max_blocks:
                self.stats["ooo_dropped"] += 1
                return
            self.ooo[sq] = bytes(data)
            return
        order = self.rcv_nxt                   # every block lies beyond it: offsets from it order them
        start = min([sq, *touching], key=lambda x: S.sub(x, order))
        stop = max([end, *(S.add(s, len(self.ooo[s])) for s in touching)], key=lambda x: S.sub(x, order))
        buf = bytearray(S.sub(stop, start))
        at = S.sub(sq, start)
        buf[at:at + len(data)] = data
        for s in touching:
            block = self.ooo.pop(s)
            at = S.sub(s, start)
            buf[at:at + len(block)] = block    # what we had first stays
        self.ooo[start] = bytes(buf)

    def _drain_ooo(self) -> None:
        while self.ooo:
            hit = None
            for s in self.ooo:
                if S.le(s, self.rcv_nxt) and S.gt(S.add(s, len(self.ooo[s])), self.rcv_nxt):
                    hit = s
                    break
                if S.le(S.add(s, len(self.ooo[s])), self.rcv_nxt):
                    hit = s
                    break
            if hit is None:
                return
            chunk = self.ooo.pop(hit)
            skip = S.sub(self.rcv_nxt, hit)
            if skip < len(chunk):
                self._deliver(chunk[skip:])

    def _rcv_fin(self, now: float, ack_now: bool = False) -> None:
        """The peer's FIN, in order. ``ack_now``: data before it in the segment wants an ACK
        at once (a gap filled, two segments unacknowledged), and this ACK is that one too."""
        self.ooo_fin = None
        self.rcv_nxt = S.add(self.rcv_nxt, 1)
        self.eof = True
        if self.state is State.ESTABLISHED and self.cfg.delayed_ack and not ack_now:
            # as Linux's tcp_fin: the ACK of a FIN that starts a passive close is delayed,
            # so that the FIN a prompt close() sends carries it (three segments, not four)
            self.state = State.CLOSE_WAIT
            if self.dack_at is None:
                self.dack_at = now + self.cfg.delayed_ack
            return
        self.send_ack(now)
        if self.state is State.ESTABLISHED:
            self.state = State.CLOSE_WAIT
        elif self.state is State.FIN_WAIT_1:
            fin_acked = self.fin_queued and self.snd_una == S.add(self._data_end(), 1)
            if fin_acked:
                self._enter_time_wait(now)
            else:
                self.state = State.CLOSING
        elif self.state is State.FIN_WAIT_2:
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        self.state = State.TIME_WAIT
        self.rto_at = self.persist_at = self.dack_at = self.ka_at = None
        self.tw_at = now + self.cfg.time_wait

    # -- timers ----------------------------------------------------------------------
    def poll_at(self) -> float | None:
        times = [t for t in (self.rto_at, self.dack_at, self.persist_at, self.tw_at, self.ka_at, self.fw2_at)
                 if t is not None]
        return min(times) if times else None

    def poll(self, now: float) -> None:
        if self.tw_at is not None and now >= self.tw_at:
            self._to_closed()
            return
        if self.fw2_at is not None and now >= self.fw2_at:
            if self.state is State.FIN_WAIT_2:
                self.stats["fin_wait2_timeouts"] += 1
                self._to_closed()
                return
            self.fw2_at = None
        if self.dack_at is not None and now >= self.dack_at:
            self.send_ack(now)
        if self.rto_at is not None and now >= self.rto_at:
            self._on_rto(now)
        if self.persist_at is not None and now >= self.persist_at:
            self._probe(now)
        if self.ka_at is not None and now >= self.ka_at:
            self._keepalive(now)

    def probe_after_restart(self, now: float) -> bool:
        """A process of this stack restarted and lost the segments inside it: send
        the tail of the flight again now (up to a TSO segment, so the whole flight
        when it is small), as a tail loss probe (RFC 8985 7) without its timer or a
        timeout's congestion response. The peer ACKs what it lacked; if a hole
        lies before the tail, its SACK of the tail (at least three MSS when the
        flight is larger than one TSO segment) starts SACK recovery at once.
        Before, the head alone went again, and segments lost behind it waited for
        the retransmission timeout (200 ms and more). A duplicate costs the peer
        one ACK. False: nothing in flight."""
        if self.state in (State.SYN_SENT, State.SYN_RCVD):
            self.stats["retrans"] += 1
            self._send_syn(now)
            return True
        if self.state not in SYNCHRONIZED or not self.flight:
            return False
        mss = self.seg_size()
        burst = max(1, (65535 - 120) // mss) * mss if self.cfg.tso else 3 * mss
        n = min(self.flight, burst)
        start = S.add(self.snd_max, -n)
        self.stats["tail_probes"] += 1
        while n > 0:                       # without TSO, MSS at a time
            k = min(n, mss if not self.cfg.tso else burst)
            self._xmit(start, k, now, retransmit=True)
            start, n = S.add(start, k), n - k
        return True

    def _on_rto(self, now: float) -> None:
        self.stats["rto"] += 1
        self.retries += 1
        limit = self.cfg.syn_retries if self.state in (State.SYN_SENT, State.SYN_RCVD) else self.cfg.retries2
        if self.retries > limit:
            self._fail(errno.ETIMEDOUT)
            return
        self.rtt.back_off()
        self.rtt_seq = None
        if self.state in (State.SYN_SENT, State.SYN_RCVD):
            self.stats["retrans"] += 1
            self._send_syn(now)
            return
        if self.flight == 0:
            self.rto_at = None
            return
        self.cc.on_rto(self.flight, now)
        self.in_recovery = False
        self.dupacks = 0
        self.sacked = []                                      # RFC 2018 8: the receiver may renege
        self.rexmit_next = self.snd_una
        self.lost_until = self.snd_max
        self.rto_at = None
        self.output_data(now)
        self._arm_rto(now)

    def _probe(self, now: float) -> None:
        """Window probe (tcp_write_wakeup): what the window takes if it takes anything
        (the SWS override timeout, RFC 9293 3.8.6.2.1), else one byte beyond a zero
        window (3.8.6.1)."""
        self.persist_at = None
        if self.state not in SYNCHRONIZED or self.flight:
            return
        avail = S.sub(self._data_end(), self.snd_nxt)
        usable = S.sub(S.add(self.snd_una, self.snd_wnd), self.snd_nxt)
        if avail > 0 and usable > 0:
            self._xmit(self.snd_nxt, min(avail, usable, self.seg_size()), now)    # the RTO covers it now
            return
        if avail > 0:
            self._xmit(self.snd_nxt, 1, now)
        else:
            self._emit(Segment(S.add(self.snd_una, -1), self.rcv_nxt, ACK, self._wnd_field(), b"", self._opts(now)))
        self.rtt.back_off()
        self.persist_at = now + self.rtt.rto

    def _keepalive(self, now: float) -> None:
        idle = now - self.last_rcv
        if self.state is not State.ESTABLISHED:
            self.ka_at = None
            return
        if idle < self.cfg.keepalive_time:
            self.ka_at = self.last_rcv + self.cfg.keepalive_time
            return
        probes = int((idle - self.cfg.keepalive_time) / self.cfg.keepalive_intvl)
        if probes >= self.cfg.keepalive_probes:
            self._fail(errno.ETIMEDOUT)
            return
        self._emit(Segment(S.add(self.snd_una, -1), self.rcv_nxt, ACK, self._wnd_field(), b"", self._opts(now)))
        self.ka_at = now + self.cfg.keepalive_intvl

    def setopt(self, name: str, value: int | str, now: float) -> None:
        """A per-connection socket option: "cc" (TCP_CONGESTION: an algorithm of cc.py,
        taking over cwnd and ssthresh), "keepidle", "keepintvl", "keepcnt" (seconds,
        seconds, probes), "maxseg" (TCP_MAXSEG: the MSS we announce, and send with
        at most), "ttl" and "tos" (IP_TTL, IP_TOS of its segments). ValueError for
        anything else."""
        if name == "cc":
            if value not in ALGORITHMS:
                raise ValueError(f"no congestion control {value!r}")
            old = self.cc
            self.cc = ALGORITHMS[value](self.snd_mss)
            self.cc.cwnd, self.cc.ssthresh = old.cwnd, old.ssthresh
        elif (name not in _OPT_FIELDS and name not in ("ttl", "tos")) or type(value) is not int:
            raise ValueError(f"no per-connection option {name!r} = {value!r}")
        self.opts[name] = value           # ttl and tos: for the segments' IP headers (tcp reads them)
        self.cfg = with_opts(self.cfg, {name: value})
        if name == "maxseg" and self.state is not State.SYN_SENT and value < self.snd_mss:
            self.snd_mss = self.cc.mss = value
        if name.startswith("keep") and self.keepalive and self.state is State.ESTABLISHED:
            self.ka_at = now + self.cfg.keepalive_time

    def set_keepalive(self, on: bool, now: float) -> None:
        self.keepalive = on
        self.ka_at = now + self.cfg.keepalive_time if on and self.state is State.ESTABLISHED else None
