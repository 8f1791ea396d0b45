"""Shared-memory sk_buff slabs: packet bytes and metadata that every service maps.

One file in /dev/shm holds a few size classes of fixed-size slots. A slot's
metadata (generation, owner, state, data/tail offsets, header offsets, device,
protocol) lives in a u32 array beside the data, so a handle — generation,
class and slot in one int — is all that crosses ZeroMQ.

Ownership rules (the reason this works without locks):
- Each service allocates only from its own partition of every class, so two
  processes never race for a free slot. Anyone may free a slot (state FREE);
  the partition's owner finds it again when its local free list runs dry.
- Only the current owner writes a slot's metadata. ``give`` hands a slot to
  another service (state TRANSIT); the receiver ``take``s it, checking the
  generation, so a stale handle is refused and never read.
- ``reclaim`` frees everything a dead service owned or had in flight, and
  bumps the generation so a late handle for it is refused. Slots handed to
  the dead service and never taken are spared for a while: a sender whose
  whole message is still there hands the same handles to the next
  incarnation. (So are the ones tcp took: it reads segments without changing
  them and frees them only once a turn's effects are saved.)
"""

from __future__ import annotations

import array
import mmap
import os
import struct
from dataclasses import dataclass

from shared import shmfiles

MAGIC = b"MKSKB001"
HEADROOM = 128          # room to push Ethernet + IP + TCP headers in place
_PAGE = 4096
_NF = 16                # u32 fields per slot
# field indexes
GEN, OWNER, STATE, FROM, DATA, TAIL, MAC, NET, TRANS, DEV, PROTO, FLAGS, CSUM_START, CSUM_OFF, GSO, AUX = range(_NF)
# states
FREE, OWNED, TRANSIT = 0, 1, 2
NO_OFFSET = 0xFFFFFFFF
# FLAGS bits
CSUM_PARTIAL = 1        # the L4 checksum at csum_offset is to be finished by ip (pseudo-header + data)
CSUM_VALID = 2          # received with a checksum the kernel vouches for (virtio NEEDS_CSUM/DATA_VALID):
                        # the L4 checksum field may hold only the pseudo-header sum; do not verify it

_SLOT_BITS = 24
_CLS_BITS = 4
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_CLS_MASK = (1 << _CLS_BITS) - 1
_GEN_SHIFT = _SLOT_BITS + _CLS_BITS


class SkbError(Exception):
    """Base class of skb errors."""


class StaleHandle(SkbError):
    """A handle whose generation, owner or state does not match the slot."""


class NoBuffers(SkbError):
    """The caller's partition of the needed size class is exhausted (ENOBUFS)."""


@dataclass(frozen=True, slots=True)
class SizeClass:
    slot_size: int
    nslots: int


def make_handle(gen: int, cls: int, slot: int) -> int:
    return (gen << _GEN_SHIFT) | (cls << _SLOT_BITS) | slot


def _retire(m: memoryview, b: int) -> None:
    """Free the slot at offset ``b`` of ``m`` for good: a new generation, so any
    handle still naming the old one is refused."""
    m[b + GEN] = (m[b + GEN] + 1) & 0xFFFFFFFF
    m[b + STATE] = FREE
    m[b + OWNER] = 0


class _Class:
    """One size class: its metadata array and data area inside the mapping."""

    __slots__ = ("idx", "slot_size", "nslots", "meta", "data")

    def __init__(self, idx: int, sc: SizeClass, meta: memoryview, data: memoryview) -> None:
        self.idx = idx
        self.slot_size = sc.slot_size
        self.nslots = sc.nslots
        self.meta = meta
        self.data = data


def _layout(classes: list[SizeClass]) -> tuple[list[tuple[int, int]], int]:
    """Offsets (meta, data) of every class and the total file size."""
    off = _PAGE
    out = []
    for sc in classes:
        meta_off = off
        off += (sc.nslots * _NF * 4 + _PAGE - 1) // _PAGE * _PAGE
        out.append((meta_off, off))
        off += (sc.nslots * sc.slot_size + _PAGE - 1) // _PAGE * _PAGE
    return out, off


class SkbPool:
    """A mapped slab file. ``owner`` is this process's service id (0: observer only)."""

    def __init__(self, path: str, owner: int, n_owners: int,
                 classes: list[SizeClass] | None = None, create: bool = False,
                 epoch: int = 0) -> None:
        self.path = path
        self.owner = owner
        self.n_owners = n_owners
        # FROM field value: which incarnation of which service handed a slot over
        self.token = (owner << 16) | (epoch & 0xFFFF)
        # the metadata of a slot this owner just allocated (alloc fills in GEN, DATA and TAIL)
        self._fresh = array.array("I", [0] * _NF)
        for f, v in ((OWNER, owner), (STATE, OWNED), (FROM, self.token), (MAC, NO_OFFSET), (NET, NO_OFFSET),
                     (TRANS, NO_OFFSET)):
            self._fresh[f] = v
        if create:
            if not classes:
                raise ValueError("creating a slab needs size classes")
            self._create(path, classes)
        fd = shmfiles.reopen(path)
        try:
            self._mm = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        mv = memoryview(self._mm)
        if bytes(mv[:8]) != MAGIC:
            raise SkbError(f"{path}: not an mkstack slab")
        (ncls,) = struct.unpack_from("<I", mv, 8)
        scs = [SizeClass(*struct.unpack_from("<II", mv, 16 + 8 * i)) for i in range(ncls)]
        offsets, _ = _layout(scs)
        self.classes: list[_Class] = []
        for i, (sc, (moff, doff)) in enumerate(zip(scs, offsets)):
            meta = mv[moff:moff + sc.nslots * _NF * 4].cast("I")
            data = mv[doff:doff + sc.nslots * sc.slot_size]
            self.classes.append(_Class(i, sc, meta, data))
        self._free: list[list[int]] = [[] for _ in self.classes]
        self.drops = 0       # allocations refused for lack of slots
        self.stale = 0       # handles refused as stale

    @staticmethod
    def _create(path: str, classes: list[SizeClass]) -> None:
        if len(classes) > _CLS_MASK + 1:
            raise ValueError("too many size classes")
        _, size = _layout(classes)
        fd = shmfiles.create(path)
        try:
            os.ftruncate(fd, size)
            hdr = bytearray(_PAGE)
            hdr[:8] = MAGIC
            struct.pack_into("<I", hdr, 8, len(classes))
            for i, sc in enumerate(classes):
                struct.pack_into("<II", hdr, 16 + 8 * i, sc.slot_size, sc.nslots)
            os.pwrite(fd, bytes(hdr), 0)
        finally:
            os.close(fd)

    def close(self) -> None:
        for c in self.classes:
            c.meta.release()
            c.data.release()
        self.classes = []
        try:
            self._mm.close()
        except BufferError:
            pass  # an Skb view still alive; the mapping goes with the process

    # -- allocation -------------------------------------------------------
    def _partition(self, c: _Class) -> range:
        per = c.nslots // self.n_owners
        lo = (self.owner - 1) * per
        return range(lo, lo + per)

    def _refill(self, c: _Class) -> list[int]:
        meta = c.meta
        free = [s for s in self._partition(c) if meta[s * _NF + STATE] == FREE]
        free.reverse()  # pop() then hands out the lowest slots first
        self._free[c.idx] = free
        return free

    def alloc(self, size: int, headroom: int = HEADROOM) -> "Skb":
        """An empty skb with ``headroom`` reserved and room for ``size`` bytes."""
        need = size + headroom
        for c in self.classes:
            if c.slot_size < need:
                continue
            free = self._free[c.idx] or self._refill(c)
            if not free:
                continue  # a larger class may still have room
            slot = free.pop()
            b = slot * _NF
            m = c.meta
            # every field in one slice store (a field at a time was 16 stores through the memoryview)
            fresh = self._fresh
            fresh[GEN] = (m[b + GEN] + 1) & 0xFFFFFFFF
            fresh[DATA] = fresh[TAIL] = headroom
            m[b:b + _NF] = fresh
            return Skb(self, c, slot)
        self.drops += 1
        raise NoBuffers(f"no free skb of {need} bytes for owner {self.owner}")

    def copy(self, skb: "Skb") -> "Skb":
        """A private copy of ``skb``'s data (skb_copy), for one more receiver."""
        new = self.alloc(len(skb))
        new.put(len(skb))[:] = skb.data
        new.dev, new.protocol = skb.dev, skb.protocol
        return new

    def owns(self, skb: "Skb") -> bool:
        """Whether ``skb``'s slot is in our partition (freeing it gives our room back)."""
        return skb.slot in self._partition(skb.cls)

    def free(self, skb: "Skb") -> None:
        c, slot = skb.cls, skb.slot
        c.meta[slot * _NF + STATE] = FREE
        c.meta[slot * _NF + OWNER] = 0
        if slot in self._partition(c):
            self._free[c.idx].append(slot)

    # -- handover ---------------------------------------------------------
    def give(self, skb: "Skb", to: int) -> int:
        """Hand ``skb`` to service ``to``; returns the handle to send it."""
        m, b = skb._m, skb._b
        m[b + FROM] = self.token
        m[b + OWNER] = to
        m[b + STATE] = TRANSIT
        return (m[b + GEN] << _GEN_SHIFT) | (skb.cls.idx << _SLOT_BITS) | skb.slot

    def take_back(self, skb: "Skb") -> None:
        """Undo ``give`` for an skb whose handle was never sent."""
        m, b = skb.cls.meta, skb.slot * _NF
        m[b + OWNER] = self.owner
        m[b + STATE] = OWNED

    def take(self, handle: int) -> "Skb":
        """Accept a handle given to this service; a stale one raises. (Inline
        arithmetic, no helpers: every packet crosses here in every service.)"""
        ci = (handle >> _SLOT_BITS) & _CLS_MASK
        slot = handle & _SLOT_MASK
        classes = self.classes
        if ci >= len(classes) or slot >= classes[ci].nslots:
            self.stale += 1
            raise StaleHandle(f"stale skb handle {handle:#x}")
        c = classes[ci]
        m, b = c.meta, slot * _NF
        if m[b + GEN] != handle >> _GEN_SHIFT:
            self.stale += 1
            raise StaleHandle(f"stale skb handle {handle:#x}")
        if m[b + STATE] != TRANSIT or m[b + OWNER] != self.owner:
            self.stale += 1
            raise StaleHandle(f"skb handle {handle:#x} is not in transit to owner {self.owner}")
        m[b + STATE] = OWNED
        return Skb(self, c, slot)

    def take_many(self, handles: list[int]) -> list["Skb"]:
        """``take`` each handle, skipping (and counting) stale ones."""
        out = []
        take = self.take
        for h in handles:
            try:
                out.append(take(h))
            except StaleHandle:
                pass
        return out

    def free_handles(self, handles: list[int]) -> None:
        """Free skbs given to us that we will not process (e.g. bad message)."""
        for skb in self.take_many(handles):
            self.free(skb)

    # -- supervision --------------------------------------------------------
    def reclaim(self, owner: int, token: int | None = None, spare: list[int] | None = None,
                taken: bool = False) -> int:
        """Free every slot owned by ``owner`` (and, with ``token``, every slot
        still in transit from that incarnation). With ``spare``, the slots
        given to ``owner`` and not taken (and, with ``taken``, the ones it took
        too: only for a service that reads what it receives without changing
        it, since a resent skb must be as it was sent) are kept instead, in
        transit to it, and their handles appended there: a sender whose
        message's skbs are all still in transit may hand them to the next
        incarnation (``in_transit``); the others are freed later by handle
        (``reclaim_handles``). Returns how many were freed."""
        n = 0
        for c in self.classes:
            m = c.meta
            for slot in range(c.nslots):
                b = slot * _NF
                st = m[b + STATE]
                if st == FREE:
                    continue
                if m[b + OWNER] == owner or (token is not None and st == TRANSIT and m[b + FROM] == token):
                    if spare is not None and m[b + OWNER] == owner and (taken or st == TRANSIT):
                        # in transit to it again, as when it was sent: only a sender that
                        # still has the handle (and every other of its message) resends it
                        m[b + STATE] = TRANSIT
                        spare.append((m[b + GEN] << _GEN_SHIFT) | (c.idx << _SLOT_BITS) | slot)
                        continue
                    _retire(m, b)
                    n += 1
        return n

    def _in_transit_at(self, handle: int, owner: int) -> tuple[memoryview, int] | None:
        """The metadata array and offset of ``handle``'s slot if it is still given
        to ``owner`` and not taken under that generation, else None."""
        ci, slot = (handle >> _SLOT_BITS) & _CLS_MASK, handle & _SLOT_MASK
        if ci >= len(self.classes) or slot >= self.classes[ci].nslots:
            return None
        m, b = self.classes[ci].meta, slot * _NF
        if m[b + GEN] == handle >> _GEN_SHIFT and m[b + STATE] == TRANSIT and m[b + OWNER] == owner:
            return m, b
        return None

    def in_transit(self, handle: int, owner: int) -> bool:
        """Whether ``handle`` still names a slot given to ``owner`` and not taken."""
        return self._in_transit_at(handle, owner) is not None

    def reclaim_handles(self, handles: list[int], owner: int) -> int:
        """Free the slots of ``handles`` that are still in transit to ``owner``
        (the ones ``reclaim`` spared and no new incarnation took)."""
        n = 0
        for h in handles:
            at = self._in_transit_at(h, owner)
            if at is not None:
                _retire(*at)
                n += 1
        return n

    def usage(self) -> dict:
        """Slots in use per class and per owner id (a leak shows up here)."""
        classes = []
        owners: dict[int, int] = {}
        for c in self.classes:
            used = 0
            m = c.meta
            for slot in range(c.nslots):
                b = slot * _NF
                if m[b + STATE] != FREE:
                    used += 1
                    o = m[b + OWNER]
                    owners[o] = owners.get(o, 0) + 1
            classes.append({"slot_size": c.slot_size, "slots": c.nslots, "used": used})
        return {"classes": classes, "by_owner": owners}


class Skb:
    """A view of one slot: data lives in [data, tail) of a slot of ``end`` bytes."""

    __slots__ = ("pool", "cls", "slot", "_b", "_m")

    def __init__(self, pool: SkbPool, cls: _Class, slot: int) -> None:
        self.pool = pool
        self.cls = cls
        self.slot = slot
        self._b = slot * _NF
        self._m = cls.meta

    @property
    def handle(self) -> int:
        return make_handle(self._m[self._b + GEN], self.cls.idx, self.slot)

    @property
    def end(self) -> int:
        return self.cls.slot_size

    @property
    def buf(self) -> memoryview:
        """The whole slot (for writing headers at absolute offsets)."""
        base = self.slot * self.cls.slot_size
        return self.cls.data[base:base + self.cls.slot_size]

    @property
    def data_off(self) -> int:
        return self._m[self._b + DATA]

    @property
    def tail_off(self) -> int:
        return self._m[self._b + TAIL]

    def __len__(self) -> int:
        return self._m[self._b + TAIL] - self._m[self._b + DATA]

    @property
    def data(self) -> memoryview:
        base = self.slot * self.cls.slot_size
        return self.cls.data[base + self._m[self._b + DATA]:base + self._m[self._b + TAIL]]

    def headroom(self) -> int:
        return self._m[self._b + DATA]

    def tailroom(self) -> int:
        return self.cls.slot_size - self._m[self._b + TAIL]

    def reserve(self, n: int) -> None:
        if len(self) or n > self.tailroom():
            raise SkbError("skb_reserve on a non-empty skb or beyond its end")
        self._m[self._b + DATA] += n
        self._m[self._b + TAIL] += n

    def push(self, n: int) -> memoryview:
        """Grow the data at the front by ``n`` bytes (skb_push); returns them."""
        d = self._m[self._b + DATA]
        if n > d:
            raise SkbError(f"skb_push of {n} with {d} bytes of headroom")
        self._m[self._b + DATA] = d - n
        base = self.slot * self.cls.slot_size
        return self.cls.data[base + d - n:base + d]

    def pull(self, n: int) -> None:
        """Drop ``n`` bytes from the front (skb_pull)."""
        if n > len(self):
            raise SkbError(f"skb_pull of {n} from {len(self)} bytes")
        self._m[self._b + DATA] += n

    def put(self, n: int) -> memoryview:
        """Grow the data at the end by ``n`` bytes (skb_put); returns them."""
        t = self._m[self._b + TAIL]
        if n > self.cls.slot_size - t:
            raise SkbError(f"skb_put of {n} with {self.cls.slot_size - t} bytes of tailroom")
        self._m[self._b + TAIL] = t + n
        base = self.slot * self.cls.slot_size
        return self.cls.data[base + t:base + t + n]

    def trim(self, length: int) -> None:
        """Cut the data to ``length`` bytes (skb_trim)."""
        if length < len(self):
            self._m[self._b + TAIL] = self._m[self._b + DATA] + length

    def set_len(self, length: int) -> None:
        """Set the data length after bytes were written past tail (e.g. by readv)."""
        if self._m[self._b + DATA] + length > self.cls.slot_size:
            raise SkbError("skb length beyond its end")
        self._m[self._b + TAIL] = self._m[self._b + DATA] + length

    def room(self) -> memoryview:
        """The writable space from data to end (for reading a frame straight in)."""
        base = self.slot * self.cls.slot_size
        return self.cls.data[base + self._m[self._b + DATA]:base + self.cls.slot_size]

    def _get(self, f: int) -> int:
        return self._m[self._b + f]

    def _set(self, f: int, v: int) -> None:
        self._m[self._b + f] = v

    dev = property(lambda s: s._get(DEV), lambda s, v: s._set(DEV, v))
    protocol = property(lambda s: s._get(PROTO), lambda s, v: s._set(PROTO, v))
    flags = property(lambda s: s._get(FLAGS), lambda s, v: s._set(FLAGS, v))
    mac_header = property(lambda s: s._get(MAC), lambda s, v: s._set(MAC, v))
    network_header = property(lambda s: s._get(NET), lambda s, v: s._set(NET, v))
    transport_header = property(lambda s: s._get(TRANS), lambda s, v: s._set(TRANS, v))
    aux = property(lambda s: s._get(AUX), lambda s, v: s._set(AUX, v))
    csum_offset = property(lambda s: s._get(CSUM_OFF), lambda s, v: s._set(CSUM_OFF, v))
    gso_size = property(lambda s: s._get(GSO), lambda s, v: s._set(GSO, v))   # TSO: payload bytes per wire segment

    def ip_addrs(self) -> tuple[bytes, bytes]:
        """Source and destination of the IP header at network_header: 4 bytes each for
        IPv4, 16 for IPv6 (the version nibble says which)."""
        base = self.slot * self.cls.slot_size + self._m[self._b + NET]
        data = self.cls.data
        if data[base] >> 4 == 6:
            return bytes(data[base + 8:base + 24]), bytes(data[base + 24:base + 40])
        return bytes(data[base + 12:base + 16]), bytes(data[base + 16:base + 20])

    def reset_network_header(self) -> None:
        """Move data back to the network header (to quote the datagram in an ICMP error)."""
        self._m[self._b + DATA] = self._m[self._b + NET]
