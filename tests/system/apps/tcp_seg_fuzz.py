"""A TCP sender made by hand (run in the peer namespace): tcp_seg_fuzz.py DST PORT SPORT SIZE SEED

Opens a connection from a raw socket (the caller makes the peer kernel drop its own
RSTs for SPORT) to a digest_sink.py server and sends SIZE random bytes as a fuzzer
would: thousands of one-byte islands ahead of a gap, overlapping and duplicate
segments, segments straddling both window edges, zero-length and old ones; then
the stream in order and a FIN. Every byte sent is the stream's own, so whatever
the order the receiver must end with exactly the stream. Prints one JSON line:
the stream's digest, the sink's answer, and the segments sent per kind.
"""
import hashlib
import json
import os
import random
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
from shared.wire.checksum import checksum, pseudo_header_sum  # noqa: E402

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
SRC = "10.66.0.1"
dst, port, sport, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
stream = rng.randbytes(size)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
isn = rng.randrange(1 << 32)
peer = {"ack": None, "wnd": 0, "rcv_nxt": 0, "data": b"", "fin": False}
counts = {}


def send(seq, flags, data=b"", opts=b"", kind="order"):
    counts[kind] = counts.get(kind, 0) + 1
    hdr = struct.pack("!HHIIBBHHH", sport, port, seq & 0xFFFFFFFF, peer["rcv_nxt"] & 0xFFFFFFFF,
                      ((20 + len(opts)) // 4) << 4, flags, 65535, 0, 0)
    seg = bytearray(hdr + opts + data)
    struct.pack_into("!H", seg, 16, checksum(seg, pseudo_header_sum(socket.inet_aton(SRC), socket.inet_aton(dst),
                                                                    6, len(seg))))
    raw.sendto(bytes(seg), (dst, 0))


def drain(wait=0.0):
    """Take what mkstack sent us: its ACK, window, data and FIN."""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if not select.select([raw], [], [], max(left, 0))[0]:
            return
        pkt = raw.recv(65535)
        ihl = (pkt[0] & 0xF) * 4
        sp, dp, seq, ack, off, flags, wnd = struct.unpack_from("!HHIIBBH", pkt, ihl)
        if sp != port or dp != sport or pkt[12:16] != socket.inet_aton(dst):
            continue
        if flags & RST:
            raise SystemExit(json.dumps({"error": "reset by mkstack", "counts": counts}))
        payload = pkt[ihl + (off >> 4) * 4:]
        if flags & SYN:
            peer["rcv_nxt"] = seq + 1
        elif payload and seq == peer["rcv_nxt"]:
            peer["data"] += payload
            peer["rcv_nxt"] = seq + len(payload)
        if flags & FIN and seq + len(payload) == peer["rcv_nxt"]:
            peer["fin"] = True
            peer["rcv_nxt"] += 1
        if flags & ACK:
            rel = (ack - isn - 1) & 0xFFFFFFFF
            if peer["ack"] is None or rel > peer["ack"]:
                peer["ack"] = rel
            peer["wnd"] = wnd


def seg(start, end, kind):
    """Stream bytes [start, end) as one segment."""
    send(isn + 1 + start, ACK | PSH, stream[start:end], kind=kind)


# the handshake: MSS 1460 and SACK permitted, no window scaling (the window field is the window)
send(isn, SYN, opts=b"\x02\x04\x05\xb4\x04\x02\x01\x01", kind="syn")
for _ in range(50):
    drain(0.1)
    if peer["rcv_nxt"]:
        break
else:
    raise SystemExit(json.dumps({"error": "no SYN-ACK"}))
send(isn + 1, ACK, kind="order")
drain(0.05)
wnd = peer["wnd"]

# 1. an out-of-order flood: one-byte islands inside the window, past a 1,000-byte gap
for _ in range(3500):
    at = rng.randrange(1000, min(wnd, size) - 1)
    seg(at, at + 1, "island")
drain(0.2)
# 2. overlapping and duplicate segments within the window, still past the gap
for _ in range(600):
    at = rng.randrange(1000, min(wnd, size) - 1)
    seg(at, min(at + rng.randrange(1, 1460), size, wnd), "overlap")
drain(0.2)
seg(0, 1000, "order")                          # the gap filled: what was queued is delivered
deadline = time.monotonic() + 10               # once the receiver has worked through the flood
while (peer["ack"] or 0) < 1000 and time.monotonic() < deadline:
    drain(0.1)
# 3. the window's edges: straddling the right edge, far beyond it, zero-length, and old
for _ in range(200):
    ack = peer["ack"] or 0
    right = ack + peer["wnd"]
    k = rng.randrange(4)
    if k == 0 and right < size:
        seg(max(right - 100, ack), min(right + 400, size), "right_edge")
    elif k == 1 and right + 5000 < size:
        seg(right + 4000, right + 5000, "beyond")
    elif k == 2:
        send(isn + 1 + ack, ACK, kind="empty")
    elif ack > 10:
        seg(max(ack - 500, 0), ack, "old")
drain(0.2)

# 4. the stream in order, as the window allows, until all is acknowledged; then FIN
deadline = time.monotonic() + 60
while (peer["ack"] or 0) < size and time.monotonic() < deadline:
    ack = peer["ack"] or 0
    end = min(ack + max(peer["wnd"], 1), size)
    for at in range(ack, end, 1460):
        seg(at, min(at + 1460, end), "order")
    drain(0.05)
    if rng.random() < 0.3:                     # an overlap straddling what was acknowledged
        ack = peer["ack"] or 0
        if 100 < ack < size:
            seg(ack - 100, min(ack + 900, size), "straddle_ack")
send(isn + 1 + size, ACK | FIN, kind="fin")
deadline = time.monotonic() + 10
while b"\n" not in peer["data"] and time.monotonic() < deadline:
    drain(0.1)
    send(isn + 2 + size if (peer["ack"] or 0) > size else isn + 1 + size,
         ACK | (0 if (peer["ack"] or 0) > size else FIN), kind="fin")
answer = peer["data"].decode(errors="replace").strip()
send(isn + 2 + size, ACK | FIN if not peer["fin"] else ACK, kind="fin")
print(json.dumps({"digest": hashlib.sha256(stream).hexdigest()[:16], "answer": answer, "acked": peer["ack"],
                  "counts": counts}))
