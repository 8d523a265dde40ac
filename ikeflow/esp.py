"""ESP accounting per SPI and direction: packets, bytes, times, sequence gaps.

Memory is bounded per flow: duplicates and reordering are judged within an
anti-replay style window of the last `WINDOW` sequence numbers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

WINDOW = 128
MASK = (1 << WINDOW) - 1


@dataclass(slots=True)
class EspFlow:
    """One ESP SA as seen on the wire: one SPI towards one destination (from the source first seen)."""

    src: bytes
    dst: bytes
    spi: int
    encap: str  # "esp" (IP protocol 50) or "udp" (RFC 3948, UDP 4500)
    sport: int
    dport: int
    packets: int
    bytes: int
    first_time: float
    last_time: float
    first_frame: int  # frame_ref
    last_frame: int
    seq_first: int
    seq_min: int
    seq_max: int
    seen: int  # bit i set: seen_top - i was received; all of seen_top+1..seq_max arrived in order
    seen_top: int
    duplicates: int = 0
    reordered: int = 0

    @property
    def lost(self) -> int:
        """Sequence numbers between the lowest and highest seen that never arrived."""
        return max(0, (self.seq_max - self.seq_min + 1) - (self.packets - self.duplicates))

    @property
    def src_ip(self) -> str:
        return str(ipaddress.ip_address(self.src))

    @property
    def dst_ip(self) -> str:
        return str(ipaddress.ip_address(self.dst))


def esp_key(dst: bytes, spi: int) -> int:
    """The key of an ESP SA: its destination and SPI, as IPsec itself tells SAs apart (RFC 4301 4.1).

    IPv4: dst << 32 | spi, which the fast path in capture.py computes the same way.
    """
    if len(dst) == 4:
        return int.from_bytes(dst, "big") << 32 | spi
    return ((1 << 128) | int.from_bytes(dst, "big")) << 32 | spi


class EspTable:
    """All ESP flows of a capture, keyed by esp_key()."""

    def __init__(self, natt_port: int = 4500):
        self.natt_port = natt_port
        self.flows: dict[int, EspFlow] = {}

    @property
    def packets(self) -> int:
        """ESP packets counted so far."""
        return sum(f.packets for f in self.flows.values())

    def add(self, key: int, encap: str, sport: int, dport: int, src: bytes, dst: bytes,
            seq: int, size: int, ts: float, ref: int) -> None:
        """Count one ESP packet; `key` is esp_key(dst, spi), `size` the IP datagram length."""
        f = self.flows.get(key)
        if f is None:
            self.flows[key] = EspFlow(src, dst, key & 0xFFFFFFFF, encap, sport, dport,
                                      1, size, ts, ts, ref, ref, seq, seq, seq, 1, seq)
            return
        f.packets += 1
        f.bytes += size
        f.last_time = ts
        f.last_frame = ref
        top = f.seq_max
        if seq == top + 1:  # the common case; the fast path in capture.py does the same inline
            f.seq_max = seq
            return
        if top != f.seen_top:  # fold the in-order run into the window
            d = top - f.seen_top
            f.seen = ((f.seen << d) | ((1 << d) - 1)) & MASK if d < WINDOW else MASK
            f.seen_top = top
        if seq > top:
            d = seq - top
            f.seen = ((f.seen << d) | 1) & MASK if d < WINDOW else 1
            f.seq_max = f.seen_top = seq
        else:
            i = top - seq
            if i < WINDOW and (f.seen >> i) & 1:
                f.duplicates += 1
            else:
                if i < WINDOW:
                    f.seen |= 1 << i
                f.reordered += 1
                if seq < f.seq_min:
                    f.seq_min = seq
