"""TLS on mkstack sockets: the stdlib's ``ssl.SSLSocket`` over ``ssl.SSLObject``.

The stdlib's SSLSocket hands its descriptor to OpenSSL, which reads and writes
the kernel socket itself; an mkstack socket's descriptor is only a readiness
mirror, so that cannot work. ``install()`` (run by ``launcher.py run``) keeps
every line of the stdlib's SSLSocket (accept, makefile, sendfile, unwrap,
timeouts, non-blocking handshakes, suppress_ragged_eofs, ...) and changes two
seams under it:

- ``SSLContext._wrap_socket`` on an mkstack socket returns a :class:`TlsPump`:
  an SSLObject between two MemoryBIOs, with the same methods as the C object
  the stdlib expects, that moves records between the BIOs and the socket
  (blocking as the socket's timeout says; on a non-blocking socket,
  SSLWantReadError/SSLWantWriteError as OpenSSL gives them);
- ``SSLContext.sslsocket_class._create`` detaches the mkstack socket before the
  stdlib takes it up by descriptor (mkstack adopts only detached descriptors).

Records read ahead of what the program asked for stay in the pump; while they
do, the socket's fileno() reads as readable, so select/poll/selectors see them
(the kernel variant leaves them in the kernel for the same reason).
"""

from __future__ import annotations

import ssl

from shared.client import mksocket

RECV_CHUNK = 64 * 1024       # a read of the socket: up to four full TLS records
_raw_send = mksocket.socket.send
_raw_recv = mksocket.socket.recv
_c_wrap_socket = ssl.SSLContext._wrap_socket
_stdlib_create = ssl.SSLSocket._create.__func__


class TlsPump:
    """The TLS connection of one mkstack socket: what ``SSLSocket._sslobj`` is."""

    def __init__(self, context: ssl.SSLContext, sock: mksocket.socket, server_side: bool,
                 server_hostname: str | None, owner: object, session: object) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._obj = context._wrap_bio(self._in, self._out, server_side, server_hostname, owner=owner,
                                      session=session)
        self._sock = sock
        self._unsent = b""           # records a non-blocking socket did not take yet
        self._owed: int | None = None   # a write whose records are still in _unsent: its count
        self._shown = False          # the socket's fileno() shown readable for data held here

    # the C object's other methods and attributes (cipher, version, getpeercert, ...) are the SSLObject's
    def __getattr__(self, name: str) -> object:
        return getattr(self._obj, name)

    @property
    def session(self) -> object:
        return self._obj.session

    @session.setter
    def session(self, value: object) -> None:
        self._obj.session = value

    @property
    def context(self) -> ssl.SSLContext:
        return self._obj.context

    @context.setter
    def context(self, value: ssl.SSLContext) -> None:
        self._obj.context = value

    def pending(self) -> int:
        return self._obj.pending()

    # -- the operations that move records -------------------------------------------
    def do_handshake(self) -> None:
        self._run(self._obj.do_handshake)

    def read(self, n: int = 1024, buffer: object = None) -> object:
        try:
            if buffer is None:
                return self._run(self._obj.read, n)
            return self._run(self._obj.read, n, buffer)
        finally:
            self._show_held()

    def write(self, data: object) -> int:
        if self._owed is not None:           # the retry of a write whose records were held back
            self._flush()
            n, self._owed = self._owed, None
            return n
        try:
            return self._run(self._obj.write, data)
        except _Owed as owed:
            self._owed = owed.count
            raise ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE, "The operation did not complete (write)") \
                from None

    def shutdown(self) -> object:
        """Send our close_notify and wait for the peer's (unwrap); returns the socket."""
        self._run(self._obj.shutdown)
        self._show_held(False)
        return self._sock

    def verify_client_post_handshake(self) -> None:
        self._run(self._obj.verify_client_post_handshake)

    def _run(self, op, *args):  # type: ignore[no-untyped-def]
        while True:
            try:
                result = op(*args)
            except ssl.SSLWantReadError:
                self._flush()                # our part of the exchange goes first
                self._fill()
                continue
            except ssl.SSLWantWriteError:    # not from a MemoryBIO; as OpenSSL would, send and retry
                self._flush()
                continue
            except ssl.SSLError:
                self._flush_quietly()        # the alert that says why, if the socket takes it
                raise
            try:
                self._flush()
            except ssl.SSLWantWriteError:
                if op == self._obj.write:
                    raise _Owed(result) from None
                raise
            return result

    def _flush(self) -> None:
        """Send the records the SSLObject wrote; on a non-blocking socket that cannot
        take them all, keep the rest and raise SSLWantWriteError."""
        data = self._unsent + self._out.read()
        self._unsent = b""
        view = memoryview(data)
        while view:
            try:
                n = _raw_send(self._sock, view)
            except BlockingIOError:
                self._unsent = bytes(view)
                raise ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE,
                                            "The operation did not complete (write)") from None
            view = view[n:]

    def _flush_quietly(self) -> None:
        try:
            self._flush()
        except (OSError, ssl.SSLError):
            pass

    def _fill(self) -> None:
        """One read of the socket into the incoming BIO (its end: the peer closed)."""
        try:
            data = _raw_recv(self._sock, RECV_CHUNK)
        except BlockingIOError:
            raise ssl.SSLWantReadError(ssl.SSL_ERROR_WANT_READ, "The operation did not complete (read)") from None
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    def _show_held(self, held: bool | None = None) -> None:
        """fileno() readable while records read ahead (or decrypted bytes) wait here."""
        if held is None:
            held = bool(self._in.pending or self._obj.pending())
        if held != self._shown:
            self._shown = held
            mksocket.hold_readable(self._sock, held)


class _Owed(Exception):
    """A write the SSLObject took whose records could not all be sent yet."""

    def __init__(self, count: int) -> None:
        self.count = count


class _Detached:
    """What ``SSLSocket._create`` reads of the socket it wraps, for an mkstack socket
    detached beforehand: the stdlib detaches it only after taking up its descriptor,
    and mkstack takes up only descriptors detach() returned."""

    def __init__(self, sock: mksocket.socket) -> None:
        self.family, self.type, self.proto = sock.family, sock.type, sock.proto
        self._timeout = sock.gettimeout()
        self._fd = sock.detach()

    def fileno(self) -> int:
        return self._fd

    def detach(self) -> int:
        return self._fd

    def gettimeout(self) -> float | None:
        return self._timeout

    def getsockopt(self, level: int, name: int) -> int:
        return int(self.type)


def _create(cls, sock, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not isinstance(sock, mksocket.socket):
        return _stdlib_create(cls, sock, *args, **kwargs)
    if sock.type != mksocket.SOCK_STREAM:
        raise NotImplementedError("only stream sockets are supported")
    held = _Detached(sock)
    try:
        return _stdlib_create(cls, held, *args, **kwargs)
    except BaseException:
        if mksocket.take_back(sock, held.fileno()):     # refused before it was taken up: sock is the caller's again
            sock.settimeout(held.gettimeout())
        raise


def _wrap_socket(self, sock, server_side, server_hostname=None, *,  # type: ignore[no-untyped-def]
                 owner=None, session=None):
    if isinstance(sock, mksocket.socket):
        return TlsPump(self, sock, server_side, server_hostname, owner, session)
    return _c_wrap_socket(self, sock, server_side, server_hostname, owner=owner, session=session)


def install() -> None:
    """TLS for unmodified programs: every SSLContext wraps mkstack sockets through a pump."""
    ssl.SSLContext._wrap_socket = _wrap_socket
    ssl.SSLSocket._create = classmethod(_create)
