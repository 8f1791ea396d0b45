"""Congestion control: Reno (RFC 5681) and CUBIC (RFC 9438), behind one interface.

The engine calls ``on_ack`` for every ACK that acknowledges new data outside
recovery, ``on_loss`` when fast retransmit starts, ``on_rto`` on a timeout.
Windows are in bytes.
"""

from __future__ import annotations

INITIAL_WINDOW = 10       # segments (RFC 6928, as Linux)


class Reno:
    name = "reno"

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = INITIAL_WINDOW * mss
        self.ssthresh = 1 << 30
        self._acc = 0

    def on_ack(self, acked: int, now: float, srtt: float | None) -> None:
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.mss)          # slow start, ABC with L = 1 SMSS
        else:
            self._acc += acked                          # congestion avoidance: +1 SMSS per window
            if self._acc >= self.cwnd:
                self._acc -= self.cwnd
                self.cwnd += self.mss

    def loss_ssthresh(self, flight: int) -> int:
        return max(flight // 2, 2 * self.mss)

    def on_loss(self, flight: int, now: float) -> None:
        self.ssthresh = self.loss_ssthresh(flight)
        self.cwnd = self.ssthresh

    def on_rto(self, flight: int, now: float) -> None:
        self.ssthresh = self.loss_ssthresh(flight)
        self.cwnd = self.mss                            # loss window (RFC 5681 3.1)
        self._acc = 0


class Cubic(Reno):
    """CUBIC: window growth as a cubic function of the time since the last loss."""

    name = "cubic"
    C = 0.4
    BETA = 0.7

    def __init__(self, mss: int) -> None:
        super().__init__(mss)
        self.w_max = 0.0            # in segments
        self.k = 0.0
        self.epoch: float | None = None
        self.w_est = 0.0

    def on_ack(self, acked: int, now: float, srtt: float | None) -> None:
        if self.cwnd < self.ssthresh:
            super().on_ack(acked, now, srtt)
            return
        seg = self.cwnd / self.mss
        if self.epoch is None:
            self.epoch = now
            if seg < self.w_max:
                self.k = ((self.w_max - seg) / self.C) ** (1 / 3)
            else:
                self.k, self.w_max = 0.0, seg
            self.w_est = seg
        t = now - self.epoch + (srtt or 0.0)
        target = self.C * (t - self.k) ** 3 + self.w_max
        # the Reno-friendly estimate (RFC 9438 4.3)
        self.w_est += 3 * (1 - self.BETA) / (1 + self.BETA) * (acked / self.mss) / seg
        goal = max(target, self.w_est)
        if goal > seg:   # grow towards the goal, at most by half a window per RTT
            self.cwnd += int(self.mss * min(goal - seg, seg / 2) / seg * (acked / self.mss))

    def loss_ssthresh(self, flight: int) -> int:
        return max(int(self.cwnd * self.BETA), 2 * self.mss)

    def _reduce(self) -> None:
        seg = self.cwnd / self.mss
        # fast convergence (RFC 9438 4.7)
        self.w_max = seg * (1 + self.BETA) / 2 if seg < self.w_max else seg
        self.epoch = None

    def on_loss(self, flight: int, now: float) -> None:
        self._reduce()
        super().on_loss(flight, now)

    def on_rto(self, flight: int, now: float) -> None:
        self._reduce()
        super().on_rto(flight, now)


ALGORITHMS = {"reno": Reno, "cubic": Cubic}
