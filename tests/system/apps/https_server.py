"""An unmodified stdlib file server behind TLS: https_server.py CERT KEY PORT DIR.

http.server's handler on a listener wrapped by ssl (what `python -m
http.server` would be with a certificate); prints "ready" once it listens.
"""
import functools
import http.server
import ssl
import sys

cert, key, port, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
httpd = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print("ready", flush=True)
httpd.serve_forever()
