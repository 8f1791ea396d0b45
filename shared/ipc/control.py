"""A blocking control call to a service or the supervisor (CLI, tests, tools)."""

from __future__ import annotations

import errno

import zmq

from shared.ipc.codec import BadMessage, decode_reply, encode


def call(endpoint: str, code: int, *fields: object, timeout: float = 2.0) -> object:
    """Send one control request; return the result or raise OSError."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(endpoint)
        s.send(encode(code, *fields))
        if not s.poll(int(timeout * 1000)):
            raise TimeoutError(errno.ETIMEDOUT, f"no answer from {endpoint}")
        try:
            status, result = decode_reply(s.recv())
        except BadMessage as exc:
            raise OSError(errno.EPROTO, str(exc)) from None
        if status:
            raise OSError(status, str(result))
        return result
    finally:
        s.close(0)
