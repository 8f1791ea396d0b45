"""Loaded by Python at start-up under ``launcher.py run``: the program's ``socket``
module becomes mkstack's client library, so unmodified programs use the stack."""

import os
import sys

if os.environ.get("MKSTACK_ENDPOINT"):
    import socket as _kernel_socket

    sys.modules["_mkstack_kernel_socket"] = _kernel_socket
    try:
        import msgpack  # noqa: F401  (loaded while `socket` is still the kernel's)
        import zmq  # noqa: F401

        from shared.client import mksocket
    except Exception as exc:
        # never run the program on the kernel's sockets by accident
        raise SystemExit(f"mkstack: cannot load the client library: {exc}") from None
    sys.modules["socket"] = mksocket
    mksocket.install_ioctl()
    mksocket.install_ssl_hook()
