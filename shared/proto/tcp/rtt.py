"""Retransmission timeout (RFC 6298), with Linux's bounds: 200 ms to 120 s, 1 s initially."""

from __future__ import annotations

RTO_MIN, RTO_MAX, RTO_INIT = 0.2, 120.0, 1.0
CLOCK_G = 0.001          # clock granularity (timestamps are in milliseconds)


class RttEstimator:
    def __init__(self, rto_min: float = RTO_MIN, rto_max: float = RTO_MAX) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto_min, self.rto_max = rto_min, rto_max
        self.base_rto = RTO_INIT
        self.backoff = 0

    def sample(self, r: float) -> None:
        """A new round-trip measurement (never from a retransmitted segment: Karn)."""
        r = max(r, 0.0)
        if self.srtt is None:
            self.srtt, self.rttvar = r, r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.base_rto = min(self.rto_max, max(self.rto_min, self.srtt + max(CLOCK_G, 4 * self.rttvar)))
        self.backoff = 0

    @property
    def rto(self) -> float:
        return min(self.rto_max, self.base_rto * (1 << self.backoff))

    def back_off(self) -> None:
        """A retransmission timed out: double the timer (5.5), up to the maximum."""
        if self.base_rto * (1 << self.backoff) < self.rto_max:
            self.backoff += 1
