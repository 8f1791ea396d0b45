"""TCP- and IP-level socket options: sockopt_transcript.py HOST PORT -> a transcript.

Defaults, values kept, and the errors of misuse (out of range, unknown
algorithm, TCP options on a UDP socket), then on a connection to an echo
server at HOST:PORT: TCP_INFO (size, state, options, counters), TCP_MAXSEG,
TCP_CONGESTION switched while connected. Run on mkstack and on the kernel,
the transcripts must match.
"""
import select
import socket
import struct
import sys
import time

from transcript import dump, err, note

host, port = sys.argv[1], int(sys.argv[2])
T, IP = socket.IPPROTO_TCP, socket.IPPROTO_IP
INFO = struct.Struct("=8B24I4Q6I")    # the head of struct tcp_info, up to data_segs_out

s = socket.socket()
for name in ("IP_TTL", "IP_TOS"):
    note(f"default {name}", s.getsockopt(IP, getattr(socket, name)))
for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_MAXSEG"):
    note(f"default {name}", s.getsockopt(T, getattr(socket, name)))
note("TCP_INFO of a new socket (int)", s.getsockopt(T, socket.TCP_INFO))
note("TCP_INFO size", len(s.getsockopt(T, socket.TCP_INFO, 1024)))
note("TCP_INFO 8 bytes", s.getsockopt(T, socket.TCP_INFO, 8))
for name, values in (("IP_TTL", (0, 256, -1, 100)), ("IP_TOS", (0x10, 0x13, 300, -1))):
    for v in values:
        note(f"set {name} {v}", err(lambda: s.setsockopt(IP, getattr(socket, name), v)))
        note(f"  -> {name}", s.getsockopt(IP, getattr(socket, name)))
for name, values in (("TCP_KEEPIDLE", (0, 32768, 60)), ("TCP_KEEPINTVL", (0, 32768, 5)),
                     ("TCP_KEEPCNT", (0, 128, 3)), ("TCP_MAXSEG", (50, 40000, 1000))):
    for v in values:
        note(f"set {name} {v}", err(lambda: s.setsockopt(T, getattr(socket, name), v)))
        note(f"  -> {name}", s.getsockopt(T, getattr(socket, name)))
for cc in (b"reno", b"no-such-thing", b"cubic", b"reno"):
    note(f"set TCP_CONGESTION {cc}", err(lambda: s.setsockopt(T, socket.TCP_CONGESTION, cc)))
    note("  -> TCP_CONGESTION", s.getsockopt(T, socket.TCP_CONGESTION, 16))
note("TCP_CONGESTION 3 bytes", s.getsockopt(T, socket.TCP_CONGESTION, 3))
note("TCP_CONGESTION as int", s.getsockopt(T, socket.TCP_CONGESTION))
note("setsockopt TCP_INFO", err(lambda: s.setsockopt(T, socket.TCP_INFO, 1)))
for v in (2 ** 31, -2 ** 31 - 1, 2 ** 64):
    try:
        s.setsockopt(IP, socket.IP_TTL, v)
        note(f"set IP_TTL {v}", "accepted?!")
    except (TypeError, OverflowError) as exc:
        note(f"set IP_TTL {v}", f"{type(exc).__name__} {exc}")
note("set IP_TTL as bytes", err(lambda: s.setsockopt(IP, socket.IP_TTL, (77).to_bytes(4, sys.byteorder))))
note("  -> IP_TTL", s.getsockopt(IP, socket.IP_TTL))
note("getsockopt buflen 0", err(lambda: s.getsockopt(T, socket.TCP_INFO, 0)))

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
note("UDP TCP_KEEPIDLE", err(lambda: u.setsockopt(T, socket.TCP_KEEPIDLE, 5)))
note("UDP get TCP_MAXSEG", err(lambda: u.getsockopt(T, socket.TCP_MAXSEG)))
note("UDP set IP_TOS 0x13", err(lambda: u.setsockopt(IP, socket.IP_TOS, 0x13)))
note("  -> IP_TOS", u.getsockopt(IP, socket.IP_TOS))
u.close()

s.settimeout(10)
s.connect((host, port))
s.sendall(b"x" * 5000)
got = 0
while got < 5000:
    got += len(s.recv(65536))
f = INFO.unpack_from(s.getsockopt(T, socket.TCP_INFO, 1024))
note("connected TCP_INFO (int)", s.getsockopt(T, socket.TCP_INFO))
note("state", f[0])
note("options ts|sack|wscale", f[5] & 7)
note("rto > 0", f[8] > 0)
note("snd_mss <= 1000", 0 < f[10] <= 1000)
note("rtt > 0", f[23] > 0)
note("snd_cwnd > 0", f[26] > 0)
note("total_retrans", f[31])
note("bytes_acked", f[34])
note("bytes_received", f[35])
note("segs_out > 0", f[36] > 0)
note("connected TCP_MAXSEG <= 1000", 0 < s.getsockopt(T, socket.TCP_MAXSEG) <= 1000)
note("connected TCP_MAXSEG = snd_mss", s.getsockopt(T, socket.TCP_MAXSEG) == f[10])
note("connected TCP_CONGESTION", s.getsockopt(T, socket.TCP_CONGESTION, 16))
note("switch to cubic", err(lambda: s.setsockopt(T, socket.TCP_CONGESTION, b"cubic")))
note("  -> TCP_CONGESTION", s.getsockopt(T, socket.TCP_CONGESTION, 16))
s.sendall(b"y" * 1000)
got = 0
while got < 1000:
    got += len(s.recv(65536))
note("still echoes", got)

# SO_RCVLOWAT: a read (and readiness) waits for that many bytes; a short read when time is up
for v in (0, 100000, 10):              # (a larger one is capped at half the largest receive buffer)
    note(f"set SO_RCVLOWAT {v}", err(lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, v)))
    note("  -> SO_RCVLOWAT", s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))
s.sendall(b"abc")
time.sleep(0.3)
note("3 of 10 bytes: readable", bool(select.select([s], [], [], 0.2)[0]))
s.setblocking(False)
note("non-blocking read takes them", s.recv(100))
s.settimeout(0.5)
s.sendall(b"abcd")
t0 = time.monotonic()
note("read with a timeout, 4 of 10 bytes", "")
try:
    note("  got", s.recv(100))
except TimeoutError:
    note("  got", f"TimeoutError after {time.monotonic() - t0 > 0.4}")
s.setblocking(False)
note("  then non-blocking", s.recv(100))
s.settimeout(5)
s.sendall(b"0123456789AB")
note("12 of 10 bytes: readable", bool(select.select([s], [], [], 2)[0]))
note("read", s.recv(100))
s.sendall(b"xyz")
s.settimeout(0.5)
note("recv(2) with a timeout, 3 of 10 bytes", "")
try:
    note("  got", s.recv(2))
except TimeoutError:
    note("  got", "TimeoutError")
s.settimeout(None)
note("blocking recv(2) waits for min(lowat, 2)", s.recv(2))
note("then", s.recv(1))
s.close()
note("closed TCP_INFO state", err(lambda: s.getsockopt(T, socket.TCP_INFO)))
dump()
