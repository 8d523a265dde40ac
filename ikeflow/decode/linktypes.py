"""The link types ikeflow reads, in one table (pcap LINKTYPE_ values, tcpdump.org/linktypes.html).

The decoder (`packet.decode`), the reader's inline ESP path (`capture`) and
`live` all take them from here: a new link type is a row, plus a case in
`tests/test_capture.py::test_link_types`.
"""

from __future__ import annotations

from dataclasses import dataclass

NULL, ETHERNET, RAW_BSD, RAW_OPENBSD, RAW, LOOP, SLL, IPV4, IPV6, SLL2 = 0, 1, 12, 14, 101, 108, 113, 228, 229, 276


@dataclass(frozen=True, slots=True)
class LinkType:
    name: str
    ip_at: int  # offset of the network header (Ethernet: without VLAN tags)
    ethertype_at: int | None  # offset of the ethertype naming the network layer; None: the table says
    fast: bool  # the reader's inline path counts plain ESP at these offsets (IPv4 fixed; IPv6, VLAN tags: see capture)


LINK_TYPES = {
    ETHERNET: LinkType("Ethernet (802.1Q/802.1ad tags walked by the decoder)", 14, 12, True),
    RAW: LinkType("raw IP", 0, None, True),
    RAW_BSD: LinkType("raw IP (DLT_RAW on most BSDs)", 0, None, True),
    RAW_OPENBSD: LinkType("raw IP (DLT_RAW on OpenBSD)", 0, None, True),
    IPV4: LinkType("raw IPv4", 0, None, True),
    IPV6: LinkType("raw IPv6", 0, None, True),
    SLL: LinkType("Linux cooked (tcpdump -i any)", 16, 14, True),
    SLL2: LinkType("Linux cooked v2", 20, 0, True),
    NULL: LinkType("BSD loopback (address family in host byte order)", 4, None, False),
    LOOP: LinkType("OpenBSD loopback (address family in network byte order)", 4, None, False),
}
