from shared.proto.tcp.cc import Cubic, Reno
from shared.proto.tcp.rtt import RttEstimator

MSS = 1000


def test_reno_slow_start_then_one_segment_per_window():
    r = Reno(MSS)
    assert r.cwnd == 10 * MSS
    r.on_ack(MSS, 0, 0.1)
    assert r.cwnd == 11 * MSS                       # slow start: +1 MSS per ACK (ABC, L=1)
    r.ssthresh = r.cwnd
    for _ in range(11):
        r.on_ack(MSS, 0, 0.1)
    assert r.cwnd == 12 * MSS                       # avoidance: +1 MSS per window
    r.on_loss(flight=12 * MSS, now=1)
    assert r.cwnd == r.ssthresh == 6 * MSS
    r.on_rto(flight=6 * MSS, now=2)
    assert r.cwnd == MSS and r.ssthresh == 3 * MSS


def test_cubic_reduces_by_beta_and_regrows_to_wmax_around_k():
    c = Cubic(MSS)
    c.cwnd = c.ssthresh = 100 * MSS
    c.on_ack(MSS, 0.0, 0.05)                        # start an epoch in avoidance
    c.on_loss(flight=100 * MSS, now=1.0)
    assert c.cwnd == 70 * MSS and c.w_max == 100
    # a long RTT (250 ms), where the cubic curve, not the Reno-friendly estimate, leads
    now, grown_at = 1.0, None
    while now < 10:
        now += 0.25
        for _ in range(int(c.cwnd / MSS)):
            c.on_ack(MSS, now, 0.25)
        if grown_at is None and c.cwnd >= 100 * MSS:
            grown_at = now - 1.0
    # K = cbrt(W_max (1 - beta) / C) = cbrt(100 * 0.3 / 0.4) ~ 4.2 s
    assert 3.9 < grown_at < 5.5, grown_at            # W_max again near K (Reno would need ~7.5 s)
    assert c.cwnd > 100 * MSS                       # and then probes beyond W_max


def test_rto_estimator_rfc6298():
    r = RttEstimator()
    assert r.rto == 1.0
    r.sample(0.1)
    assert r.srtt == 0.1 and r.rttvar == 0.05 and abs(r.rto - 0.3) < 1e-9
    r.back_off()
    r.back_off()
    assert abs(r.rto - 1.2) < 1e-9
    for _ in range(20):
        r.back_off()
    assert r.rto == 120.0
    for _ in range(60):
        r.sample(0.0001)
    assert r.rto == 0.2 and r.backoff == 0           # the 200 ms floor, as Linux
