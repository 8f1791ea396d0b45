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

Records that must change together (a socket's read offset and the call that
read) are staged and written as one turn: the whole turn goes first into the
directory's journal (one record, so atomic), then into each file. A kill in
the middle leaves a journal the next ``replay`` writes again; a kill while the
journal itself is written leaves the previous turn, whose files are whole.
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
import zlib

import msgpack

from shared import shmfiles

JOURNAL = ".journal"                # the StateDir's last turn (keys never start with a dot)
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
        fd = shmfiles.open_private(path) if create else shmfiles.reopen(path)
        try:
            if os.fstat(fd).st_size < off:
                os.ftruncate(fd, off)       # sparse: pages appear only where written
            self.mm = mmap.mmap(fd, off)
        finally:
            os.close(fd)
        self.seq = 0
        self.write_slot = 0
        self._newest()

    # -- records --------------------------------------------------------------------
    def put(self, value: object) -> None:
        self.put_packed(self.pack(value))

    def pack(self, value: object) -> bytes:
        """The record as ``put_packed`` takes it; RecordTooBig if it does not fit the slot."""
        payload = msgpack.packb(value, use_bin_type=True)
        if len(payload) > self.slot - _HDR.size:
            raise RecordTooBig(f"{len(payload)} bytes for a {self.slot}-byte slot")
        return payload

    def put_packed(self, payload: bytes) -> None:
        self.seq += 1
        base = self.write_slot * self.slot
        self.mm[base + _HDR.size:base + _HDR.size + len(payload)] = payload
        crc = zlib.crc32(payload, zlib.crc32(self.seq.to_bytes(8, "little")))
        _HDR.pack_into(self.mm, base, len(payload), crc, self.seq)
        self.write_slot ^= 1

    def get(self) -> object | None:
        """The newest intact record, or None."""
        payload = self._newest()
        if payload is None:
            return None
        try:
            return msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException):
            return None

    def _newest(self) -> bytes | None:
        """The newest intact slot's payload; the next write goes to the other slot, numbered after it
        (so a file opened again never writes a record older than one it holds)."""
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
        return best[2]

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

    def __init__(self, path: str, slot: int, rings: tuple[int, ...] = (), journal: int = 1 << 24) -> None:
        self.path = path
        self.slot = slot
        self.rings = rings
        shmfiles.private_dir(path)
        self.open: dict[str, StateFile] = {}
        self.journal = StateFile(os.path.join(path, JOURNAL), journal, (), create=True)   # sparse
        self.staged: list[tuple[str, int, bytes | None, StateFile | None]] = []
        self.journal_skipped = 0      # turns too big for the journal (written file by file)
        self.journal_live = True      # the journal may hold a turn (cleared before an unjournaled one)

    # -- turns ----------------------------------------------------------------------
    def stage(self, key: str, value: object, slot: int | None = None,
              rings: tuple[int, ...] | None = None) -> None:
        """A record for the turn ``write_turn`` writes; RecordTooBig now if it does not fit."""
        f = self.file(key, slot, rings)
        self.staged.append((key, f.slot, f.pack(value), f))

    def stage_remove(self, key: str) -> None:
        self.staged.append((key, 0, None, None))

    def write_turn(self) -> None:
        """The staged records and removals, all or (after a kill) none, once ``replay`` has run."""
        if not self.staged:
            return
        journaled = False
        if len(self.staged) > 1:      # one record alone is atomic already
            try:
                self.journal.put_packed(self.journal.pack([[k, slot, p] for k, slot, p, _ in self.staged]))
                journaled = True
            except RecordTooBig:
                self.journal_skipped += 1
        if journaled:
            self.journal_live = True
        elif self.journal_live:       # an older turn must not be written again over this one
            self.journal.put([])
            self.journal_live = False
        for key, _, payload, f in self.staged:
            if f is None:
                self.remove(key)
            else:
                f.put_packed(payload)
        self.staged.clear()

    def replay(self) -> None:
        """Finish the last turn a kill may have cut short (before reading any record)."""
        turn = self.journal.get()
        if not isinstance(turn, list):
            return
        for entry in turn:
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                    and "/" not in entry[0] and not entry[0].startswith(".")):
                continue
            key, slot, payload = entry
            if payload is None:
                self.remove(key)
            elif isinstance(slot, int) and isinstance(payload, bytes) and 0 < len(payload) <= slot - _HDR.size:
                self.file(key, slot, ()).put_packed(payload)
                self.release(key)
        self.journal.put([])
        self.journal_live = False

    def file(self, key: str, slot: int | None = None, rings: tuple[int, ...] | None = None) -> StateFile:
        f = self.open.get(key)
        if f is None:
            f = StateFile(os.path.join(self.path, key), slot or self.slot,
                          self.rings if rings is None else rings, create=True)
            self.open[key] = f
        return f

    def keys(self) -> list[str]:
        return sorted(k for k in os.listdir(self.path) if not k.startswith("."))

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
        self.journal.close()
        for f in self.open.values():
            f.close()
        self.open.clear()
        shutil.rmtree(self.path, ignore_errors=True)
