"""What each user holds in the socket server, against the [socket] *_per_user bounds.

The kernel bounds a process (RLIMIT_NOFILE) and the whole machine (file-max, udp_mem)
and charges socket memory to the user's cgroup. One socket server serves every user
here, so without a bound per uid one user's programs could take every socket,
suspended call, buffered byte or skb slot, and the others would get nothing. Root is
not held to them (the kernel lets CAP_SYS_RESOURCE past its limits too), but what it
holds is counted alike.
"""

from __future__ import annotations

import collections

from shared.config import SocketLimits

KINDS = ("sockets", "calls", "mem", "skbs")


class UserLedger:
    def __init__(self, limits: SocketLimits, counters: collections.Counter) -> None:
        self.limit = {"sockets": limits.sockets_per_user, "calls": limits.waiting_calls_per_user,
                      "mem": limits.mem_per_user, "skbs": limits.skbs_per_user}
        self.held: dict[str, collections.Counter] = {k: collections.Counter() for k in KINDS}
        self.counters = counters

    def room(self, kind: str, uid: int, n: int = 1) -> bool:
        """Whether ``uid`` may take ``n`` more; a refusal is counted (user_<kind>_full)."""
        if uid == 0 or self.held[kind][uid] + n <= self.limit[kind]:
            return True
        self.counters[f"user_{kind}_full"] += 1
        return False

    def left(self, kind: str, uid: int) -> int:
        """How much more ``uid`` may take (root: without end)."""
        return 1 << 62 if uid == 0 else self.limit[kind] - self.held[kind][uid]

    def take(self, kind: str, uid: int, n: int = 1) -> None:
        self.held[kind][uid] += n

    def give(self, kind: str, uid: int, n: int = 1) -> None:
        held = self.held[kind]
        held[uid] -= n
        if held[uid] <= 0:
            del held[uid]

    def summary(self) -> dict[str, dict[int, int]]:
        """What each user holds now, for `stats` (users holding nothing left out)."""
        return {kind: dict(self.held[kind]) for kind in KINDS}
