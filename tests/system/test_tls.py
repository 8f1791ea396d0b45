"""TLS on mkstack sockets through the unmodified ssl module (shared/client/mkssl.py),
both ways against the Linux peer, and the same transcript as on the kernel."""
import hashlib
import os
import subprocess

import pytest

from tests.system.conftest import ROOT, start_on_mkstack

APPS = os.path.join(ROOT, "tests", "system", "apps")


@pytest.fixture
def cert(stack, tmp_path):
    """A self-signed certificate for mkstack.test and both ends' addresses, and a 50 MB file."""
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=mkstack.test",
                    "-addext", f"subjectAltName=DNS:mkstack.test,IP:{stack.addr},IP:{stack.peer_addr}"],
                   check=True, capture_output=True)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(50 * 1000 * 1000))
    return str(crt), str(key), str(tmp_path), hashlib.sha256(big.read_bytes()).hexdigest()


def test_tls_transcript_matches_the_kernel(stack, cert):
    """Handshakes (blocking, and non-blocking under a selector), certificate and host
    name checks, SNI, ALPN, 2 MB echoed, a resumed session, unwrap, refused peers."""
    crt, key, _, _ = cert
    script = os.path.join(APPS, "tls_transcript.py")
    ours = stack.launcher("run", "--", "python", script, crt, key, timeout=120).stdout
    kernel = stack.peer("python3", script, crt, key).stdout
    assert "2 MB back byte-exact: True" in ours and "resumed: True" in ours
    assert ours.splitlines() == kernel.splitlines()


def test_curl_from_linux_fetches_50_mb_from_an_ssl_wrapped_http_server_on_mkstack(stack, cert):
    crt, key, root, digest = cert
    server = start_on_mkstack(stack, os.path.join(APPS, "https_server.py"), crt, key, "8443", root)
    try:
        out = stack.peer("sh", "-c", f"curl -sk --max-time 60 https://{stack.addr}:8443/big.bin | sha256sum")
        assert out.stdout.split()[0] == digest
    finally:
        server.kill()
        server.wait()


def test_urllib_on_mkstack_fetches_over_https_from_the_kernel_byte_exact(stack, cert):
    crt, key, root, digest = cert
    server = stack.peer_popen("python3", os.path.join(APPS, "https_server.py"), crt, key, "8443", root)
    try:
        assert server.stdout.readline().startswith("ready")
        code = ("import hashlib, ssl, sys, urllib.request\n"
                "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
                "data = urllib.request.urlopen(sys.argv[2], context=ctx, timeout=60).read()\n"
                "print(len(data), hashlib.sha256(data).hexdigest())\n")
        out = stack.launcher("run", "--", "python", "-c", code, crt, f"https://{stack.peer_addr}:8443/big.bin",
                             timeout=120).stdout.split()
        assert out == [str(50 * 1000 * 1000), digest]
    finally:
        server.kill()
        server.wait()


READY_WHILE_HELD = """
import select, socket, ssl, sys, threading
crt, key = sys.argv[1], sys.argv[2]
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(crt, key)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
def serve():
    c = sctx.wrap_socket(srv.accept()[0], server_side=True)
    c.sendall(b"x" * 100)
    c.recv(1)
threading.Thread(target=serve, daemon=True).start()
c = ssl.create_default_context(cafile=crt).wrap_socket(socket.create_connection(srv.getsockname()),
                                                       server_hostname="mkstack.test")
first = c.recv(10)
print("held", c.pending(), "readable", bool(select.select([c], [], [], 0.5)[0]))
rest = c.recv(1000)
print("drained", len(first) + len(rest), "readable", bool(select.select([c], [], [], 0.3)[0]))
c.sendall(b"!")
"""


def test_fileno_reads_readable_while_tls_holds_decrypted_bytes(stack, cert):
    """The kernel's SSLSocket leaves a record's rest inside OpenSSL, invisible to select;
    on mkstack the socket reads readable until those bytes are taken."""
    crt, key, _, _ = cert
    out = stack.launcher("run", "--", "python", "-c", READY_WHILE_HELD, crt, key, timeout=60).stdout.splitlines()
    assert out == ["held 90 readable True", "drained 100 readable False"]


def test_programs_that_never_import_ssl_do_not_load_it(stack):
    out = stack.launcher("run", "--", "python", "-c", "import sys; print('ssl' in sys.modules)").stdout
    assert out.strip() == "False"
