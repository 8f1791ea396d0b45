"""State that outlives a service process: records and byte rings in tmpfs files.

A service killed with SIGKILL loses its heap but not what it wrote to a
shared mapping: the pages stay in /dev/shm. Each object (a TCP connection, a
service's tables) gets one sparse file there:

    [ record slot 0 | record slot 1 | ring 0 | ring 1 ... ]

A record is a msgpack value written into the older of two slots, each with
its length, a sequence number and a CRC: a write torn by the kill leaves the
other slot intact, and the reader takes the newest slot whose CRC holds.
A ring holds a byte stream by position (``pos & (size - 1)``), so data is
written once, when it enters, and never again while the record changes.
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
import zlib

import msgpack

_HDR = struct.Struct("<IIQ")       # payload length, crc32 of seq + payload, sequence number


def ring_size(n: int) -> int:
    """The smallest power of two that holds ``n`` bytes (rings index by mask)."""
    return 1 << max(n - 1, 1).bit_length()


class RecordTooBig(ValueError):
    """A record longer than its slot (the caller drops advisory parts and retries)."""


class StateFile:
    """One object's file: two record slots of ``slot`` bytes, then the rings."""

    def __init__(self, path: str, slot: int, rings: tuple[int, ...], create: bool) -> None:
        for size in rings:
            if size & (size - 1):
                raise ValueError("ring sizes must be powers of two")
        self.path = path
        self.slot = slot
        self.rings = rings
        self.ring_at = []
        off = 2 * slot
        for size in rings:
            self.ring_at.append(off)
            off += size
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if os.fstat(fd).st_size < off:
                os.ftruncate(fd, off)       # sparse: pages appear only where written
            self.mm = mmap.mmap(fd, off)
        finally:
            os.close(fd)
        self.seq = 0
        self.write_slot = 0

    # -- records --------------------------------------------------------------------
    def put(self, value: object) -> None:
        payload = msgpack.packb(value, use_bin_type=True)
        if len(payload) > self.slot - _HDR.size:
            raise RecordTooBig(f"{len(payload)} bytes for a {self.slot}-byte slot")
        self.seq += 1
        base = self.write_slot * self.slot
        self.mm[base + _HDR.size:base + _HDR.size + len(payload)] = payload
        crc = zlib.crc32(payload, zlib.crc32(self.seq.to_bytes(8, "little")))
        _HDR.pack_into(self.mm, base, len(payload), crc, self.seq)
        self.write_slot ^= 1

    def get(self) -> object | None:
        """The newest intact record, or None."""
        best = None
        for i in (0, 1):
            base = i * self.slot
            n, crc, seq = _HDR.unpack_from(self.mm, base)
            if n == 0 or n > self.slot - _HDR.size:
                continue
            payload = self.mm[base + _HDR.size:base + _HDR.size + n]
            if zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little"))) != crc:
                continue
            if best is None or seq > best[0]:
                best = (seq, i, payload)
        if best is None:
            return None
        self.seq, self.write_slot = best[0], best[1] ^ 1
        try:
            return msgpack.unpackb(best[2], raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException):
            return None

    # -- rings ----------------------------------------------------------------------
    def ring_write(self, ring: int, pos: int, data: bytes | memoryview) -> None:
        """Bytes of a stream at position ``pos``; more than the ring holds keeps the tail."""
        size, base = self.rings[ring], self.ring_at[ring]
        n = len(data)
        if n > size:
            data, pos, n = data[n - size:], pos + n - size, size
        at = pos & (size - 1)
        first = min(n, size - at)
        self.mm[base + at:base + at + first] = data[:first]
        if first < n:
            self.mm[base:base + n - first] = data[first:]

    def ring_read(self, ring: int, pos: int, n: int) -> bytes:
        size, base = self.rings[ring], self.ring_at[ring]
        if not 0 <= n <= size:
            raise ValueError(f"{n} bytes from a {size}-byte ring")
        at = pos & (size - 1)
        first = min(n, size - at)
        out = self.mm[base + at:base + at + first]
        return out + self.mm[base:base + n - first] if first < n else out

    def close(self) -> None:
        self.mm.close()


class StateDir:
    """A directory of StateFiles named by key, in tmpfs (one per service)."""

    def __init__(self, path: str, slot: int, rings: tuple[int, ...] = ()) -> None:
        self.path = path
        self.slot = slot
        self.rings = rings
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.open: dict[str, StateFile] = {}

    def file(self, key: str, slot: int | None = None, rings: tuple[int, ...] | None = None) -> StateFile:
        f = self.open.get(key)
        if f is None:
            f = StateFile(os.path.join(self.path, key), slot or self.slot,
                          self.rings if rings is None else rings, create=True)
            self.open[key] = f
        return f

    def keys(self) -> list[str]:
        return sorted(os.listdir(self.path))

    def release(self, key: str) -> None:
        """Close a file (it stays); the next ``file`` opens it again, maybe with other rings."""
        f = self.open.pop(key, None)
        if f is not None:
            f.close()

    def remove(self, key: str) -> None:
        f = self.open.pop(key, None)
        if f is not None:
            f.close()
        try:
            os.unlink(os.path.join(self.path, key))
        except FileNotFoundError:
            pass

    def destroy(self) -> None:
        for f in self.open.values():
            f.close()
        self.open.clear()
        shutil.rmtree(self.path, ignore_errors=True)
