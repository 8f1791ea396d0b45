"""Names of the ZeroMQ endpoints and shared-memory files of one instance."""

from __future__ import annotations

import os

import zmq

RECONNECT_MS = 5    # a restarted service is connected to within this, not after a doubling backoff


def connect_fast(sock: zmq.Socket, endpoint: str) -> None:
    """Connect, retrying every RECONNECT_MS for as long as the other end is gone:
    ZeroMQ's default doubles the interval, so a peer back after 150 ms was only
    found up to 200 ms later. An ipc connect attempt costs one syscall."""
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)
    sock.connect(endpoint)


def run_dir(base: str, instance: str) -> str:
    return os.path.join(base, instance)


def inbox(rundir: str, service: str) -> str:
    """PULL endpoint where ``service`` receives packet batches."""
    return f"ipc://{rundir}/{service}.in"


def control(rundir: str, service: str) -> str:
    """ROUTER endpoint where ``service`` answers control requests."""
    return f"ipc://{rundir}/{service}.ctl"


def public_dir(rundir: str) -> str:
    """Beside the root-only run directory, the one every local user may enter: it
    holds only the syscall endpoint and the hello socket (instance names have no dot)."""
    return f"{rundir}.public"


def syscalls(rundir: str) -> str:
    """ROUTER endpoint where applications' client libraries make socket calls."""
    return f"ipc://{public_dir(rundir)}/syscall"


def hello(rundir: str) -> str:
    """Kernel AF_UNIX socket where a client process gets its client id; the socket
    server learns who it is from the kernel (SO_PEERCRED), not from what it says."""
    return f"{public_dir(rundir)}/hello"


def hello_of(syscall_endpoint: str) -> str:
    """The hello socket beside a syscall endpoint (what a client is given)."""
    return os.path.join(os.path.dirname(syscall_endpoint.removeprefix("ipc://")), "hello")


def capture(rundir: str) -> str:
    """PUB endpoint where netdev publishes copies of tapped frames."""
    return f"ipc://{rundir}/capture"


def shm_prefix(instance: str) -> str:
    return f"mkstack-{instance}-"


def slab_path(instance: str) -> str:
    return f"/dev/shm/{shm_prefix(instance)}skb"


def state_dir(instance: str, service: str) -> str:
    """tmpfs directory where ``service`` keeps state for its next incarnation."""
    return f"/dev/shm/{shm_prefix(instance)}{service}.state"


def netns_name(instance: str) -> str:
    return f"mkstack-{instance}"
