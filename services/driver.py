"""The device driver: owns one TAP file descriptor; frames in, frames out.

Receive is adaptive NAPI: in interrupt mode the driver blocks until the TAP is
readable; a poll reads up to ``budget`` frames straight into skb slots and hands
them up in one message. A poll that used its whole budget switches to polling
mode: the next poll runs at once, without waiting on the device, for as long as
polls keep filling their budget (napi_schedule); the first one that does not
goes back to interrupt mode (napi_complete_done). Counters: napi_irq_polls,
napi_busy_polls, napi_to_poll / napi_to_irq switches, napi_mode now. The TAP is
persistent (TUNSETPERSIST), so a restarted driver re-attaches and the kernel
side keeps its configuration.
"""

from __future__ import annotations

import errno
import os

import pytun

from services.base import Service, main
from shared import netns
from shared.ipc.messages import DEV_XMIT, NETIF_RX
from shared.skb import NoBuffers
from shared.wire.ethernet import ETH_HLEN

RX_HEADROOM = 64
VLAN_HLEN = 4


class Driver(Service):
    kind = "driver"

    def __init__(self) -> None:
        super().__init__()
        self.dev = next(d for d in self.cfg.devices if self.cfg.driver_name(d) == self.name)
        self.budget = self.cfg.driver_budget
        self.frame_max = self.dev.mtu + ETH_HLEN + VLAN_HLEN
        self.scratch = bytearray(65536)   # where a frame goes when no skb is free
        with netns.inside(self.dev.netns(self.instance)):
            self.tap = pytun.TunTapDevice(name=self.dev.name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
        self.fd = self.tap.fileno()
        os.set_blocking(self.fd, False)
        self._more = False
        self.peer("netdev")  # connect now: the first frame must not find no route up
        self.watch_fd(self.fd, self.napi_poll)
        self.log.info("attached to %s in netns %s", self.dev.name, self.dev.netns(self.instance))

    def busy(self) -> bool:
        return self._more

    def napi_poll(self) -> None:
        self.counters["napi_busy_polls" if self._more else "napi_irq_polls"] += 1
        was_polling = self._more
        self._poll_once()
        if self._more != was_polling:
            self.counters["napi_to_poll" if self._more else "napi_to_irq"] += 1

    def _poll_once(self) -> None:
        batch = []
        fd = self.fd
        for _ in range(self.budget):
            try:
                skb = self.pool.alloc(self.frame_max, RX_HEADROOM)
            except NoBuffers:
                skb = None
            try:
                n = os.readv(fd, [skb.room() if skb is not None else self.scratch])
            except BlockingIOError:
                if skb is not None:
                    self.pool.free(skb)
                self._more = False
                break
            except OSError as exc:
                if skb is not None:
                    self.pool.free(skb)
                self.counters["rx_errors"] += 1
                self._more = False
                if exc.errno != errno.EINTR:
                    self.fault("tap_read", exc)
                break
            if skb is None:
                self.counters["rx_dropped"] += 1
                continue
            skb.set_len(n)
            skb.dev = self.dev.ifindex
            batch.append(skb)
        else:
            self._more = True  # budget used up: more frames are probably waiting
        if batch:
            self.counters["rx_packets"] += len(batch)
            self.send_skbs("netdev", NETIF_RX, self.dev.ifindex, batch)

    def stats(self) -> dict:
        out = super().stats()
        out["napi_mode"] = "poll" if self._more else "irq"
        return out

    def on_message(self, code: int, fields: list) -> None:
        if code != DEV_XMIT:
            self.counters["unexpected_messages"] += 1
            return
        for skb in self.pool.take_many(fields[1]):
            try:
                os.write(self.fd, skb.data)
                self.counters["tx_packets"] += 1
            except BlockingIOError:
                self.counters["tx_busy_drops"] += 1
            except OSError as exc:
                self.counters["tx_errors"] += 1
                if exc.errno not in (errno.EIO, errno.EINVAL):
                    self.fault("tap_write", exc)
            finally:
                self.pool.free(skb)

    def close(self) -> None:
        self.tap.close()  # the TAP stays: it is persistent
        super().close()


if __name__ == "__main__":
    main(Driver)
