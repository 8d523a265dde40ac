"""What the ESP carries, with keys: per SPI and direction, the inner hosts, protocols and ports.

"Do packets reach the peer" at the level the admin asks it: which hosts, which pings.  Each ESP
packet whose SA has a key is opened (decode.decrypt.open_esp, ICV checked) and summarised
(decode.decrypt.inner_summary); only counts and times are kept, never payloads, and at most
`MAX_INNER` inner flows per SPI (the rest are counted together).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ikeflow.decode.decrypt import inner_summary, open_esp
from ikeflow.keys import EspKey, KeyRing

MAX_INNER = 16  # inner flows listed per SPI and direction; more are counted as `other`
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6", 132: "SCTP"}


@dataclass
class InnerFlow:
    src: str
    dst: str
    proto: int
    sport: int | None
    dport: int | None
    packets: int = 0
    bytes: int = 0
    first: float = 0.0
    last: float = 0.0


@dataclass
class InnerTraffic:
    """One ESP SA's (SPI and outer addresses) opened packets."""
    spi: int
    key_source: str
    opened: int = 0
    failed: int = 0
    reason: str = ""  # why the first packet that did not open failed
    flows: dict[tuple, InnerFlow] = field(default_factory=dict)
    other: int = 0  # opened packets of inner flows beyond MAX_INNER

    @property
    def verified(self) -> bool | None:
        """True: every packet opened; False: the key does not fit any; None: some did, some did not."""
        return True if not self.failed else False if not self.opened else None


class EspInner:
    """Opens the ESP packets that `keys` has keys for; `traffic` maps (outer src, dst, SPI) to what was seen."""

    def __init__(self, keys: KeyRing):
        self.keys = keys
        self.traffic: dict[tuple[bytes, bytes, int], InnerTraffic] = {}
        self._key: dict[tuple[bytes, bytes, int], EspKey | None] = {}

    def add(self, src: bytes, dst: bytes, esp: bytes, ts: float) -> None:
        """One ESP packet (from its SPI on, UDP encapsulation removed)."""
        spi = int.from_bytes(esp[:4], "big")
        sa = (src, dst, spi)
        key = self._key.get(sa, False)
        if key is False:
            key = self._key[sa] = self.keys.esp(spi, _text(src), _text(dst))
        if key is None:
            return
        seen = self.traffic.get(sa)
        if seen is None:
            seen = self.traffic[sa] = InnerTraffic(spi, key.source)
        opened = open_esp(esp, key)
        if not opened.ok:
            seen.failed += 1
            seen.reason = seen.reason or opened.reason
            return
        seen.opened += 1
        src_in, dst_in, proto, sport, dport = inner_summary(opened.next_header, opened.inner)
        flow_key = (src_in, dst_in, proto, sport, dport)
        flow = seen.flows.get(flow_key)
        if flow is None:
            if len(seen.flows) >= MAX_INNER:
                seen.other += 1
                return
            flow = seen.flows[flow_key] = InnerFlow(*flow_key, first=ts)
        flow.packets += 1
        flow.bytes += len(opened.inner)
        flow.last = ts


def _text(address: bytes) -> str:
    return str(ipaddress.ip_address(address))


def protocol_name(proto: int) -> str:
    return PROTOCOLS.get(proto, f"protocol {proto}")
