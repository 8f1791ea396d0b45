"""Packet representation: pure parse/emit per protocol, no I/O and no clock.

Every parser checks lengths (and checksums where the protocol has one) before
it reads a field, and raises :class:`WireError` naming the protocol.
"""


class WireError(ValueError):
    """A frame that cannot be parsed; the message starts with ``[PROTO]``."""
