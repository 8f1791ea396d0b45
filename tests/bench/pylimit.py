"""The Python limit: one bare process on a TAP doing the least a stack must do.

pylimit.py TAP MAC IP MODE SECONDS, run inside the namespace that holds TAP:
  echo    answer ARP and ICMP echo for IP by rewriting each frame in place and
          writing it back (what a ping responder costs at best in Python)
  sink    read frames as fast as they come; report frames and bytes per second
  source  write one prebuilt 1514-byte UDP frame as fast as the TAP takes it
Prints one JSON line when SECONDS are over. No parsing beyond the bytes it must
look at, no copies beyond the read: the ceiling any Python stack on this path
can reach.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time

import pytun


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def main() -> int:
    name, mac_text, ip_text, mode, seconds = sys.argv[1:6]
    mac, ip = bytes.fromhex(mac_text.replace(":", "")), socket.inet_aton(ip_text)
    tap = pytun.TunTapDevice(name=name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
    fd = tap.fileno()
    end = time.monotonic() + float(seconds)
    frames = nbytes = 0
    print("ready", flush=True)
    if mode == "source":
        peer_mac = bytes.fromhex(sys.argv[6].replace(":", ""))
        dst = socket.inet_aton(sys.argv[7])
        payload = bytes(1472)
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1500, 0, 0x4000, 64, 17, 0, ip, dst)
        iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
        frame = peer_mac + mac + b"\x08\x00" + iph + struct.pack("!HHHH", 40000, 9, 1480, 0) + payload
        while time.monotonic() < end:
            for _ in range(256):
                os.write(fd, frame)
            frames += 256
        nbytes = frames * len(frame)
    else:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        buf = bytearray(65536)
        view = memoryview(buf)
        while time.monotonic() < end:
            if not poller.poll(100):
                continue
            n = os.readv(fd, [buf])
            frames += 1
            nbytes += n
            if mode != "echo" or n < 42:
                continue
            if buf[12:14] == b"\x08\x06" and buf[21] == 1 and buf[38:42] == ip:        # ARP request for us
                buf[0:6], buf[6:12] = buf[6:12], mac
                buf[21] = 2
                buf[32:42], buf[22:32] = buf[22:32], mac + ip
                os.write(fd, view[:n])
            elif buf[12:14] == b"\x08\x00" and buf[23] == 1 and buf[30:34] == ip and buf[34] == 8:
                hl = (buf[14] & 0xF) * 4
                buf[0:6], buf[6:12] = buf[6:12], mac
                buf[26:30], buf[30:34] = buf[30:34], buf[26:30]                          # swap addresses
                buf[14 + hl] = 0                                                       # echo reply
                c = struct.unpack_from("!H", buf, 16 + hl)[0] + 0x0800                 # RFC 1624 update
                struct.pack_into("!H", buf, 16 + hl, (c & 0xFFFF) + (c >> 16))
                os.write(fd, view[:n])
    el = float(seconds)
    print(json.dumps({"mode": mode, "frames_per_s": round(frames / el), "mb_per_s": round(nbytes / el / 1e6, 1)}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
