"""pyzmq's flag and option constants as plain ints, for the per-message paths.

pyzmq exposes them as enum flags, and every operation on one (``flags |
SNDMORE``, ``getsockopt(EVENTS) & POLLIN``, the enum its getsockopt builds for
EVENTS) goes through enum.py's Python code: 2-5 us each on this VM, several
times per message per service.
"""

import zmq

NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)
POLLIN = int(zmq.POLLIN)
EVENTS = int(zmq.EVENTS)
RCVMORE = int(zmq.RCVMORE)
