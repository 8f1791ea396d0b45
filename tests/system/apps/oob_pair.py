"""Urgent data across two stacks: oob_pair.py serve ADDR PORT | connect ADDR PORT.
Each side sends b"abc", b"!" with MSG_OOB, b"def" and reads the other's the same
way, printing what it read: the data before the mark, SIOCATMARK, the urgent
byte, the data after it."""
import fcntl
import select
import socket
import struct
import sys
import time

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    lst = socket.create_server((addr, port))
    print("listening", flush=True)
    s, _ = lst.accept()
else:
    s = socket.create_connection((addr, port), timeout=10)
s.settimeout(10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def send_urgent(tag):
    s.send(b"abc")
    time.sleep(0.05)
    s.send(tag, socket.MSG_OOB)
    time.sleep(0.05)
    s.send(b"def")


def read_urgent():
    # the other side sends its three pieces 50 ms apart once it has read ours: wait
    # until the first is here, then long enough for the rest (else the read can end
    # before the urgent byte arrived, and SIOCATMARK says 0: a race of the test's own)
    select.select([s], [], [], 10)
    time.sleep(0.4)
    before = s.recv(100)
    mark = struct.unpack("i", fcntl.ioctl(s.fileno(), 0x8905, b"\0" * 4))[0]
    oob = s.recv(1, socket.MSG_OOB)
    after = s.recv(100)
    print("read", before, mark, oob, after, flush=True)


if mode == "serve":
    read_urgent()
    send_urgent(b"#")
    s.recv(1)   # until the peer closes
else:
    send_urgent(b"!")
    read_urgent()
s.close()
