"""The device layer: device table, ethertype demux, tx queues and counters.

Plays netif_rx/eth_type_trans on the way up (check the Ethernet header, drop
frames for other hosts, pull the header, demux by ethertype) and
dev_queue_xmit on the way down (a tx queue of txqueuelen per device, drops
counted, flushed to the driver in batches). Packet taps (as dev_queue_xmit_nit
and packet_rcv): while a capturer holds a lease on a device, a copy of each
frame received or queued for transmit is published on the capture endpoint.
"""

from __future__ import annotations

import collections
import errno
import random
import time
from dataclasses import dataclass, field

import zmq

from services.base import Service, main
from shared.capture import RX, TX
from shared.ipc import endpoints
from shared.ipc.codec import capture_frame, encode
from shared.ipc.messages import (ANNOUNCE_ACK, CTL_CAPTURE, CTL_IMPAIR, DEV_CARRIER, DEV_QUEUE_XMIT, DEV_XMIT, IP_RCV,
                                 NETDEV_UP, NETIF_RX)
from shared.skb import Skb
from shared.wire import WireError
from shared.wire.ethernet import ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, mac_ntoa, parse_eth

TXQ_RETRY = 0.005       # seconds between attempts while a driver cannot take frames
CAPTURE_HWM = 10000     # frames queued for a slow capturer before copies are dropped
MAX_LEASE = 60.0
_COUNTERS = ("rx_packets", "rx_bytes", "rx_errors", "rx_dropped", "rx_nohandler", "rx_otherhost",
             "tx_packets", "tx_bytes", "tx_dropped", "tx_errors", "rx_impaired", "tx_impaired", "tapped",
             "tap_dropped", "carrier_up")


@dataclass(slots=True)
class NetDevice:
    name: str
    ifindex: int
    mac: bytes
    mtu: int
    txqueuelen: int
    driver: str
    txq: collections.deque = field(default_factory=collections.deque)
    rx_loss: float = 0.0             # fault injection: drop probability per frame
    tx_loss: float = 0.0
    tap_until: float = 0.0           # a capturer's lease (monotonic time)
    stats: dict = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))


class Netdev(Service):
    kind = "netdev"

    def __init__(self) -> None:
        super().__init__()
        self.devices: dict[int, NetDevice] = {}
        self.retry_at = 0.0        # when to retry a tx queue the driver refused
        self.rng = random.Random()
        for d in self.cfg.devices:
            self.devices[d.ifindex] = NetDevice(d.name, d.ifindex, d.mac, d.mtu, d.txqueuelen,
                                                self.cfg.driver_name(d))
            self.peer(self.cfg.driver_name(d))
        self.peer("ip")
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, CAPTURE_HWM)
        self.pub.bind(endpoints.capture(self.rundir))
        if self.epoch > 1:          # restarted: what was in the old process is lost; ip tells the transports
            for ifindex in self.devices:
                self.notify("ip", encode(NETDEV_UP, ifindex))

    def tap(self, dev: NetDevice, direction: int, skbs: list[Skb]) -> None:
        """Publish copies of frames for a capturer holding a lease on ``dev``."""
        if time.monotonic() >= dev.tap_until:
            dev.tap_until = 0.0
            return
        now = time.time()
        for skb in skbs:
            try:
                self.pub.send(capture_frame(dev.ifindex, direction, now, bytes(skb.data)), zmq.NOBLOCK)
                dev.stats["tapped"] += 1
            except zmq.Again:
                dev.stats["tap_dropped"] += 1

    def on_message(self, code: int, fields: tuple) -> None:
        if code == DEV_CARRIER:
            self.carrier_up(*fields)
            return
        ifindex, handles = fields
        dev = self.devices.get(ifindex)
        if dev is None:
            self.counters["unknown_device"] += len(handles)
            self.pool.free_handles(handles)
            return
        if code == NETIF_RX:
            self.netif_rx(dev, self.pool.take_many(handles))
        elif code == DEV_QUEUE_XMIT:
            self.dev_queue_xmit(dev, self.pool.take_many(handles))
        else:
            self.counters["unexpected_messages"] += 1
            self.pool.free_handles(handles)

    def carrier_up(self, token: int, ifindex: int) -> None:
        """A driver (re)attached: tell ip (netdev_state_change), then the driver."""
        dev = self.devices.get(ifindex)
        if dev is None:
            self.counters["unknown_device"] += 1
            return
        dev.stats["carrier_up"] += 1
        self.notify("ip", encode(NETDEV_UP, ifindex))
        try:
            self.peer(dev.driver).send(encode(ANNOUNCE_ACK, DEV_CARRIER, token, 0), zmq.NOBLOCK)
        except zmq.Again:
            pass           # the driver repeats it

    def netif_rx(self, dev: NetDevice, skbs: list[Skb]) -> None:
        st = dev.stats
        up = []
        for skb in skbs:
            st["rx_packets"] += 1
            st["rx_bytes"] += len(skb)
            if dev.rx_loss and self.rng.random() < dev.rx_loss:
                st["rx_impaired"] += 1
                self.pool.free(skb)
                continue
            if dev.tap_until:
                self.tap(dev, RX, [skb])
            try:
                eth, _ = parse_eth(skb.data)
            except WireError:
                st["rx_errors"] += 1
                self.pool.free(skb)
                continue
            if eth.dst != dev.mac and not eth.dst[0] & 1:  # neither ours nor multi/broadcast
                st["rx_otherhost"] += 1
                self.pool.free(skb)
                continue
            if eth.ethertype not in (ETH_P_IP, ETH_P_ARP, ETH_P_IPV6):
                st["rx_nohandler"] += 1
                self.pool.free(skb)
                continue
            skb.mac_header = skb.data_off
            skb.pull(14)
            skb.network_header = skb.data_off
            skb.protocol = eth.ethertype
            up.append(skb)
        if up and not self.send_skbs("ip", IP_RCV, dev.ifindex, up):
            st["rx_dropped"] += len(up)

    def dev_queue_xmit(self, dev: NetDevice, skbs: list[Skb]) -> None:
        if dev.tx_loss:
            kept = []
            for skb in skbs:
                if self.rng.random() < dev.tx_loss:
                    dev.stats["tx_impaired"] += 1
                    self.pool.free(skb)
                else:
                    kept.append(skb)
            skbs = kept
        # the queue drains into the driver as it fills; it only overflows (and
        # drops, as a full qdisc does) while the driver cannot take frames
        for skb in skbs:
            if len(dev.txq) >= dev.txqueuelen:
                self.flush(dev)
                if len(dev.txq) >= dev.txqueuelen:
                    dev.stats["tx_dropped"] += 1
                    self.pool.free(skb)
                    continue
            if dev.tap_until:
                self.tap(dev, TX, [skb])
            dev.txq.append(skb)
        self.flush(dev)

    def flush(self, dev: NetDevice) -> None:
        """Move the tx queue to the driver, 64 frames a message. While the driver
        cannot take them (restarting, or busy) they stay queued, as a qdisc
        holds packets while the device queue is stopped."""
        while dev.txq:
            batch = [dev.txq[i] for i in range(min(64, len(dev.txq)))]
            if not self.send_skbs(dev.driver, DEV_XMIT, dev.ifindex, batch, keep=True):
                self.retry_at = self.retry_at or time.monotonic() + TXQ_RETRY
                return
            for _ in batch:
                dev.txq.popleft()
            dev.stats["tx_packets"] += len(batch)
            dev.stats["tx_bytes"] += sum(len(s) for s in batch)

    def timer_at(self) -> float | None:
        return self.retry_at or None

    def on_timer(self, now: float) -> None:
        self.retry_at = 0.0
        for dev in self.devices.values():
            if dev.txq:
                self.flush(dev)

    def stats(self) -> dict:
        out = super().stats()
        out["devices"] = {d.name: dict(d.stats) for d in self.devices.values()}
        return out

    def on_control(self, code: int, fields: tuple) -> object:
        if code == CTL_IMPAIR:
            name, rx, tx, seed = fields
            dev = next((d for d in self.devices.values() if d.name == name), None)
            if dev is None:
                raise OSError(errno.ENODEV, f"no device {name!r}")
            if not (0 <= rx < 1 and 0 <= tx < 1):
                raise OSError(errno.EINVAL, "loss must be in [0, 1)")
            dev.rx_loss, dev.tx_loss = rx, tx
            if seed:
                self.rng.seed(seed)
            return {"dev": name, "rx_loss": rx, "tx_loss": tx}
        if code == CTL_CAPTURE:
            name, lease = fields
            dev = next((d for d in self.devices.values() if d.name == name), None)
            if dev is None:
                raise OSError(errno.ENODEV, f"no device {name!r}")
            if not 0 <= lease <= MAX_LEASE:
                raise OSError(errno.EINVAL, f"lease must be 0-{MAX_LEASE:.0f} s")
            dev.tap_until = time.monotonic() + lease if lease else 0.0
            return {"dev": name, "ifindex": dev.ifindex, "lease": lease}
        return super().on_control(code, fields)

    def close(self) -> None:
        self.pub.close(0)
        super().close()

    def show(self, what: str) -> object:
        if what == "devices":
            return [{"name": d.name, "ifindex": d.ifindex, "mac": mac_ntoa(d.mac), "mtu": d.mtu,
                     "txqueuelen": d.txqueuelen, "txq": len(d.txq), **d.stats}
                    for d in self.devices.values()]
        return super().show(what)


if __name__ == "__main__":
    main(Netdev)
