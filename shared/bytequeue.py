"""A FIFO of bytes kept as the chunks that arrived: a socket's receive queue or
its unacknowledged send data.

A bytearray used this way (append at the end, ``del q[:n]`` at the front)
copies everything it holds whenever it grows with a consumed prefix, and at
megabytes each such copy lands on freshly mapped pages: ~300 us per 64 KB
append with a 4 MB queue. Here appending keeps the caller's bytes object, and
a read copies only what it returns.
"""

from __future__ import annotations

import collections

SMALL = 4096        # appends shorter than this join the last chunk (no deque of 1-byte chunks)


class ByteQueue:
    __slots__ = ("chunks", "head", "size")

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.head = 0            # bytes of chunks[0] already taken
        self.size = 0
        self += data

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __iadd__(self, data: bytes | bytearray | memoryview) -> "ByteQueue":
        n = len(data)
        if not n:
            return self
        if type(data) is not bytes:
            data = bytes(data)               # never keep a buffer the caller may change
        chunks = self.chunks
        if n < SMALL and chunks and len(chunks[-1]) < SMALL:
            chunks[-1] += data
        else:
            chunks.append(data)
        self.size += n
        return self

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, int):
            if not -self.size <= key < self.size:
                raise IndexError("ByteQueue index out of range")
            return self._range(key % self.size, 1)[0]
        start, stop, step = key.indices(self.size)
        if step != 1:
            raise ValueError("ByteQueue slices have no step")
        return self._range(start, max(0, stop - start))

    def __delitem__(self, key: slice) -> None:
        """Only ``del q[:n]``: the front goes."""
        if not isinstance(key, slice) or key.start not in (None, 0) or key.step is not None:
            raise ValueError("only a prefix of a ByteQueue can be deleted")
        self.drop(self.size if key.stop is None else min(max(key.stop, 0), self.size))

    def _range(self, start: int, n: int) -> bytes:
        """Bytes [start, start + n) of the queue, one copy."""
        out = []
        at = -self.head                       # queue offset of the current chunk's first byte
        for chunk in self.chunks:
            end = at + len(chunk)
            if end > start:
                lo = max(start - at, 0)
                hi = min(start + n - at, len(chunk))
                out.append(chunk if lo == 0 and hi == len(chunk) else memoryview(chunk)[lo:hi])
                if at + hi >= start + n:
                    break
            at = end
        return out[0] if len(out) == 1 and type(out[0]) is bytes else b"".join(out)

    def drop(self, n: int) -> None:
        self.size -= n
        n += self.head
        chunks = self.chunks
        while chunks and n >= len(chunks[0]):
            n -= len(chunks.popleft())
        self.head = n if chunks else 0

    def __bytes__(self) -> bytes:
        return self._range(0, self.size)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (bytes, bytearray, ByteQueue)):
            return bytes(self) == bytes(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
