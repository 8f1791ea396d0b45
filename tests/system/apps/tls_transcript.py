"""TLS through the socket module: tls_transcript.py CERT KEY -> a transcript.

A TLS server and client over loopback in one program, through the stdlib's ssl
module on whatever sockets it has: blocking handshakes with certificate
checks, SNI and ALPN, 2 MB echoed through makefile/sendall/recv_into, a
non-blocking handshake driven by selectors, a session resumed, unwrap back to
plain text, and the errors of a bad peer certificate. Run on mkstack and on
the kernel, the transcripts must match.
"""
import hashlib
import selectors
import socket
import ssl
import sys
import threading

from transcript import dump, note

cert, key = sys.argv[1], sys.argv[2]
NAME = "mkstack.test"
BIG = bytes(range(256)) * 8192          # 2 MB


def server_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    seen = []
    ctx.sni_callback = lambda sslobj, name, c: seen.append(name)
    return ctx, seen


def client_ctx():
    ctx = ssl.create_default_context(cafile=cert)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


failures = []


def echo_server(srv, ctx, rounds):
    """Accept on a wrapped listener; echo until EOF; then unwrap if asked."""
    with ctx.wrap_socket(srv, server_side=True) as wrapped:
        for _ in range(rounds):
            try:
                conn, _ = wrapped.accept()
            except (ssl.SSLError, OSError) as exc:       # a client that refused our certificate
                failures.append(type(exc).__name__)
                continue
            f = conn.makefile("rwb")
            while True:
                line = f.readline()
                if not line or line == b"bye\n":
                    break
                if line == b"unwrap\n":
                    f.write(b"ok\n")
                    f.flush()
                    plain = conn.unwrap()
                    plain.sendall(plain.recv(100).upper())
                    plain.close()
                    break
                n = int(line)
                data = f.read(n)
                f.write(hashlib.sha256(data).hexdigest().encode() + b"\n")
                f.write(data)
                f.flush()
            f.close()
            conn.close()


def main():
    sctx, seen = server_ctx()
    srv = listener()
    port = srv.getsockname()[1]
    t = threading.Thread(target=echo_server, args=(srv, sctx, 5), daemon=True)
    t.start()
    cctx = client_ctx()

    # 1: blocking, with certificate and host name checks, SNI, ALPN, 2 MB both ways
    c = cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=NAME)
    note("version", c.version())
    note("alpn", c.selected_alpn_protocol())
    note("sni seen by the server", seen)
    note("peer subject", dict(x[0] for x in c.getpeercert()["subject"]))
    note("cipher protocol", c.cipher()[1])
    note("is SSLSocket", isinstance(c, ssl.SSLSocket))
    c.sendall(b"%d\n" % len(BIG) + BIG)
    got = bytearray(65 + len(BIG))
    view, at = memoryview(got), 0
    while at < len(got):
        n = c.recv_into(view[at:], 65536)
        if not n:
            break
        at += n
    note("digest matches", bytes(got[:64]).decode() == hashlib.sha256(BIG).hexdigest())
    note("2 MB back byte-exact", bytes(got[65:]) == BIG)
    note("pending after", c.pending())
    session = c.session
    c.sendall(b"bye\n")
    c.close()

    # 2: a non-blocking handshake driven by a selector, then a resumed session
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setblocking(False)
    c = cctx.wrap_socket(raw, server_hostname=NAME, do_handshake_on_connect=False, session=session)
    sel = selectors.DefaultSelector()
    sel.register(c, selectors.EVENT_READ | selectors.EVENT_WRITE)
    wants = set()
    while True:
        try:
            c.do_handshake()
            break
        except ssl.SSLWantReadError:
            wants.add("read")
            sel.modify(c, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            wants.add("write")
            sel.modify(c, selectors.EVENT_WRITE)
        sel.select(5)
    note("non-blocking handshake wanted read", "read" in wants)
    note("non-blocking version", c.version())
    sel.modify(c, selectors.EVENT_READ)
    c.setblocking(True)
    c.sendall(b"5\nhello")
    c.settimeout(5)
    reply = b""
    while len(reply) < 65 + 5:
        reply += c.recv(100)
    note("non-blocking echo", reply[65:])
    note("resumed", c.session_reused)
    c.sendall(b"bye\n")
    sel.close()
    c.close()

    # 3: unwrap back to plain text
    c = cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=NAME)
    c.sendall(b"unwrap\n")
    note("before unwrap", c.recv(3))
    plain = c.unwrap()
    note("unwrapped type", type(plain).__name__)
    plain.sendall(b"plain text")
    note("after unwrap", plain.recv(100))
    plain.close()

    # 4: a client that does not trust the server's certificate
    bad = ssl.create_default_context()
    try:
        bad.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=NAME)
        note("untrusted", "accepted?!")
    except ssl.SSLCertVerificationError as exc:
        note("untrusted", f"SSLCertVerificationError {exc.verify_message}")
    # 5: the wrong host name
    try:
        cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="other.test")
        note("wrong name", "accepted?!")
    except ssl.SSLCertVerificationError as exc:
        note("wrong name", f"SSLCertVerificationError {exc.verify_message}")
    # a UDP socket cannot be wrapped
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        cctx.wrap_socket(u)
    except NotImplementedError as exc:
        note("udp", f"NotImplementedError {exc}")
    note("udp socket still usable", u.getsockname()[0])
    u.close()
    t.join(10)
    note("handshakes the server saw fail", failures)
    srv.close()
    dump()


main()
