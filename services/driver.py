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

Offloads (``[driver] offload``, off when ip forwards): the TAP is attached with
IFF_VNET_HDR and TUNSETOFFLOAD(CSUM | TSO4 | TSO6), so the kernel hands over TCP
segments of up to 64 KB as one frame (what GRO would build) with the checksum
left partial; the skb is marked CSUM_VALID and travels the stack whole. Each
frame read or written carries a 10-byte virtio_net_hdr in front.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

import pytun

from services.base import Service, main
from shared import netns
from shared.ipc.messages import DEV_CARRIER, DEV_XMIT, NETIF_RX
from shared.skb import CSUM_PARTIAL, CSUM_VALID, NoBuffers, Skb
from shared.wire.ethernet import ETH_HLEN
from shared.wire.ipv6 import IPV6_HLEN

RX_HEADROOM = 64
VLAN_HLEN = 4
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
VNET_HLEN = 10                        # struct virtio_net_hdr
VNET_F_NEEDS_CSUM, VNET_F_DATA_VALID = 0x01, 0x02
MAX_FRAME = 65535 + ETH_HLEN + VLAN_HLEN
NO_VNET = bytes(VNET_HLEN)            # outgoing frames: complete, no segmentation asked
VNET_GSO_TCPV4, VNET_GSO_TCPV6 = 1, 4
_VNET = struct.Struct("=BBHHHH")      # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (host order)
IPPROTO_TCP = 6


class Driver(Service):
    kind = "driver"

    def __init__(self) -> None:
        super().__init__()
        self.dev = next(d for d in self.cfg.devices if self.cfg.driver_name(d) == self.name)
        self.budget = self.cfg.driver_budget
        self.frame_max = self.dev.mtu + ETH_HLEN + VLAN_HLEN
        self.scratch = bytearray(MAX_FRAME)   # where a frame goes when no skb is free
        self.offload = self.cfg.offload
        flags = pytun.IFF_TAP | pytun.IFF_NO_PI | (pytun.IFF_VNET_HDR if self.offload else 0)
        with netns.inside(self.dev.netns(self.instance)):
            self.tap = pytun.TunTapDevice(name=self.dev.name, flags=flags)
        self.fd = self.tap.fileno()
        # the device's features follow its last attach: set (or clear) them every time
        fcntl.ioctl(self.fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 if self.offload else 0)
        self.vnet = bytearray(VNET_HLEN)
        self.overflow = bytearray(MAX_FRAME)  # the part of a large frame beyond a small slot
        os.set_blocking(self.fd, False)
        self._more = False
        self.peer("netdev")  # connect now: the first frame must not find no route up
        self.announce("netdev", DEV_CARRIER).set(self.dev.ifindex)    # carrier up: ip announces us
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
        for _ in range(self.budget):
            try:
                skb = self.read_frame()
            except BlockingIOError:
                self._more = False
                break
            except OSError as exc:
                self.counters["rx_errors"] += 1
                self._more = False
                if exc.errno != errno.EINTR:
                    self.fault("tap_read", exc)
                break
            if skb is not None:
                skb.dev = self.dev.ifindex
                batch.append(skb)
        else:
            self._more = True  # budget used up: more frames are probably waiting
        if batch:
            self.counters["rx_packets"] += len(batch)
            self.send_skbs("netdev", NETIF_RX, self.dev.ifindex, batch)

    def read_frame(self) -> Skb | None:
        """One frame from the TAP into an skb: a small slot, or a large one (copied
        from the overflow buffer) for a TSO segment. None: dropped, counted."""
        try:
            skb = self.pool.alloc(self.frame_max, RX_HEADROOM)
        except NoBuffers:
            skb = None
        room = skb.room() if skb is not None else self.scratch
        iov = [self.vnet, room, self.overflow] if self.offload else [room]
        try:
            n = os.readv(self.fd, iov)
        except BaseException:
            if skb is not None:
                self.pool.free(skb)
            raise
        if self.offload:
            n -= VNET_HLEN
            if n < 0:
                n = 0
        if skb is None:
            self.counters["rx_dropped"] += 1
            return None
        if n > len(room):                      # larger than a small slot: a TSO segment
            big = self.alloc_large(n)
            if big is None:
                self.pool.free(skb)
                self.counters["rx_dropped"] += 1
                return None
            buf = big.put(n)
            buf[:len(room)] = room
            buf[len(room):] = self.overflow[:n - len(room)]
            self.pool.free(skb)
            skb = big
            self.counters["rx_large"] += 1
        else:
            skb.set_len(n)
        if self.offload and self.vnet[0] & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID):
            skb.flags = skb.flags | CSUM_VALID
        return skb

    @staticmethod
    def vnet_hdr(skb: Skb) -> bytes:
        """virtio_net_hdr for an outgoing frame: the checksum to finish (CHECKSUM_PARTIAL)
        and, for a TSO segment, the size to cut it into."""
        if not skb.flags & CSUM_PARTIAL:
            return NO_VNET
        data = skb.data
        if data[12:14] == b"\x86\xdd":            # IPv6: ours carry no extension headers when offloaded
            l4, proto, gso_type = ETH_HLEN + IPV6_HLEN, data[ETH_HLEN + 6], VNET_GSO_TCPV6
        else:
            l4, proto, gso_type = ETH_HLEN + (data[ETH_HLEN] & 0xF) * 4, data[ETH_HLEN + 9], VNET_GSO_TCPV4
        gso = skb.gso_size
        if gso and proto == IPPROTO_TCP:
            hdr_len = l4 + (data[l4 + 12] >> 4) * 4
            return _VNET.pack(VNET_F_NEEDS_CSUM, gso_type, hdr_len, gso, l4, skb.csum_offset)
        return _VNET.pack(VNET_F_NEEDS_CSUM, 0, 0, 0, l4, skb.csum_offset)

    def alloc_large(self, n: int) -> Skb | None:
        try:
            return self.pool.alloc(n, RX_HEADROOM)
        except NoBuffers:
            return None

    def stats(self) -> dict:
        out = super().stats()
        out["napi_mode"] = "poll" if self._more else "irq"
        return out

    def on_message(self, code: int, fields: tuple) -> None:
        if code != DEV_XMIT:
            self.counters["unexpected_messages"] += 1
            return
        for skb in self.pool.take_many(fields.handles):
            try:
                if self.offload:
                    os.writev(self.fd, [self.vnet_hdr(skb), skb.data])
                else:
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
