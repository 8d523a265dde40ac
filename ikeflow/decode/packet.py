"""First-level decode: link layer, IPv4/IPv6, UDP 500/4500, ESP, ICMP errors.

`decode()` is a pure function of one frame's bytes.  It says what the frame
is (`Packet.kind`) and where its IKE/ESP part lies; IP fragments come back as
kind "fragment" for the `Reassembler`, whose output goes through
`decode_ip()` again.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

from ikeflow.decode import linktypes as lk, names
from ikeflow.limits import DEFAULT, Limits
from ikeflow.decode.linktypes import LINK_TYPES

# Packet kinds; every frame gets exactly one.
IKE, ESP, AH, KEEPALIVE, ICMP, FRAGMENT, MALFORMED, SKIPPED = (
    "ike", "esp", "ah", "keepalive", "icmp", "fragment", "malformed", "skipped")

ETH_IPV4, ETH_IPV6, ETH_VLAN = 0x0800, 0x86DD, (0x8100, 0x88A8, 0x9100)
IPV6_EXT = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH
NULL_AF_INET6 = (24, 28, 30)  # BSD, FreeBSD, macOS values of AF_INET6
ICMP_ABOUT_ICMP = "ICMP error about an ICMP error"  # never sent (RFC 1122 3.2.2, RFC 4443 2.4): decoded one level


@dataclass(slots=True)
class Packet:
    """What one frame (or reassembled datagram) carries."""

    kind: str
    reason: str = ""  # for malformed/skipped
    src: bytes = b""  # IP addresses as bytes (4 or 16)
    dst: bytes = b""
    sport: int = 0
    dport: int = 0
    natt: bool = False  # IKE after the non-ESP marker on the NAT-T port
    payload: bytes = b""  # ISAKMP message (ike), ESP packet (esp), quoted datagram (icmp)
    size: int = 0  # IP datagram length
    icmp: tuple[int, int, int] | None = None  # (IP version, type, code) of an ICMP error
    frag_key: tuple | None = None  # fragment: reassembly key
    frag_offset: int = 0
    frag_more: bool = False
    frag_header: bytes = b""  # fragment: what to put in front of the reassembled payload
    truncated: bool = False  # cut short by the capture's snap length
    ah: bytes = b""  # SPI and sequence number of an AH header in front (kind AH: nothing else known inside)


def decode(linktype: int, data: bytes, ike_port: int = 500, natt_port: int = 4500) -> Packet:
    """Decode one captured frame of the given pcap link type."""
    off, etype = _link(linktype, data)
    if etype is None:
        return Packet(SKIPPED, f"link type {linktype} not supported")
    if etype == -1:
        return Packet(MALFORMED, f"link-layer header cut short ({len(data)} bytes)")
    if etype not in (ETH_IPV4, ETH_IPV6):
        return Packet(SKIPPED, "not IP")
    return decode_ip(data[off:], ike_port, natt_port)


def _link(linktype: int, data: bytes) -> tuple[int, int | None]:
    """(offset of the network header, its ethertype); ethertype None = unsupported, -1 = short."""
    lt = LINK_TYPES.get(linktype)
    if lt is None:
        return 0, None
    n = len(data)
    if n < lt.ip_at:
        return 0, -1
    if linktype == lk.ETHERNET:  # any number of 802.1Q/802.1ad tags
        off = 12
        while True:
            if n < off + 2:
                return 0, -1
            etype = (data[off] << 8) | data[off + 1]
            if etype not in ETH_VLAN:
                return off + 2, etype
            off += 4
    if lt.ethertype_at is not None:
        return lt.ip_at, (data[lt.ethertype_at] << 8) | data[lt.ethertype_at + 1]
    if linktype in (lk.NULL, lk.LOOP):  # the address family, in host (NULL) or network (LOOP) byte order
        af = struct.unpack("<I" if linktype == lk.NULL and data[0] else ">I", data[:4])[0]
        return 4, ETH_IPV4 if af == 2 else ETH_IPV6 if af in NULL_AF_INET6 else 0
    if linktype in (lk.IPV4, lk.IPV6):
        return 0, ETH_IPV4 if linktype == lk.IPV4 else ETH_IPV6
    return 0, (ETH_IPV6 if n and data[0] >> 4 == 6 else ETH_IPV4)  # raw IP: the version nibble says


def decode_ip(ip: bytes, ike_port: int = 500, natt_port: int = 4500, quoted: bool = False) -> Packet:
    """Decode an IP datagram (v4 or v6) down to its IKE/ESP part.

    `quoted`: the datagram an ICMP error quotes; it may be cut short, and an ICMP
    error inside it is not decoded (no error is sent about an error, RFC 1122 3.2.2).
    """
    if not ip:
        return Packet(MALFORMED, "empty IP packet")
    version = ip[0] >> 4
    if version == 4:
        if len(ip) < 20:
            return Packet(MALFORMED, f"IPv4 header cut short ({len(ip)} bytes)")
        ihl = (ip[0] & 0x0F) * 4
        total = (ip[2] << 8) | ip[3]
        if ihl < 20 or total < ihl:
            return Packet(MALFORMED, f"bad IPv4 header (IHL {ihl}, total length {total})")
        truncated = total > len(ip)
        body = ip[ihl:total]
        src, dst, proto = ip[12:16], ip[16:20], ip[9]
        flags_frag = (ip[6] << 8) | ip[7]
        if flags_frag & 0x3FFF:
            return Packet(FRAGMENT, src=src, dst=dst, size=total, frag_key=(src, dst, ip[4:6], proto),
                          frag_offset=(flags_frag & 0x1FFF) * 8, frag_more=bool(flags_frag & 0x2000),
                          payload=body, frag_header=ip[:ihl], truncated=truncated)
        ah = b""
        if proto == 51 and len(body) >= 12:  # AH (IPv6 walks it as an extension header)
            ah, proto, body = body[4:12], body[0], body[(body[1] + 2) * 4 :]
        return _with_ah(ah, _transport(proto, src, dst, body, total, ike_port, natt_port, truncated or quoted, 4,
                                       quoted), src, dst, total)
    if version == 6:
        if len(ip) < 40:
            return Packet(MALFORMED, f"IPv6 header cut short ({len(ip)} bytes)")
        total = 40 + ((ip[4] << 8) | ip[5])
        truncated = total > len(ip)
        src, dst, proto = ip[8:24], ip[24:40], ip[6]
        p, nh = 40, 6  # nh: where the next-header field that names the header at p lies
        ah = b""
        for _ in range(9):  # at most 8 extension headers
            if proto == 44:  # fragment header
                if len(ip) < p + 8:
                    return Packet(MALFORMED, "IPv6 fragment header cut short")
                offmore = (ip[p + 2] << 8) | ip[p + 3]
                if not offmore & 0xFFF9:  # an atomic fragment (offset 0, no more): the datagram itself, RFC 6946
                    proto, nh, p = ip[p], p, p + 8
                    continue
                header = bytearray(ip[:p])  # the unfragmentable part, naming what follows the fragment header
                header[nh] = ip[p]
                return Packet(FRAGMENT, src=src, dst=dst, size=total, frag_key=(src, dst, ip[p + 4 : p + 8], ip[p]),
                              frag_offset=offmore & 0xFFF8, frag_more=bool(offmore & 1),
                              payload=ip[p + 8 : total], frag_header=bytes(header), truncated=truncated)
            if proto not in IPV6_EXT:
                break
            if len(ip) < p + 2:
                return Packet(MALFORMED, "IPv6 extension header cut short")
            if proto == 51:
                ah = ip[p + 4 : p + 12]
            step = (ip[p + 1] + 2) * 4 if proto == 51 else (ip[p + 1] + 1) * 8
            proto, nh, p = ip[p], p, p + step
        else:
            return Packet(MALFORMED, "more than 8 IPv6 extension headers", src, dst)
        return _with_ah(ah, _transport(proto, src, dst, ip[p:total], total, ike_port, natt_port, truncated or quoted,
                                       6, quoted), src, dst, total)
    return Packet(SKIPPED, f"IP version {version}")


def _with_ah(ah: bytes, pkt: Packet, src: bytes, dst: bytes, size: int) -> Packet:
    """An AH-protected datagram: IKE or ESP inside stays what it is (and carries the AH); anything
    else is counted as AH."""
    if len(ah) < 8:
        return pkt
    if pkt.kind == SKIPPED and pkt.reason != ICMP_ABOUT_ICMP:
        return Packet(AH, src=src, dst=dst, size=size, ah=ah)
    pkt.ah = ah
    return pkt


def ike_without_marker(data: bytes) -> bool:
    """A UDP payload on the NAT-T port that is an ISAKMP header, not ESP: version 1.0 or 2.0, a known exchange
    type and a length field equal to the payload's (an ESP packet matches by chance once in 2**44)."""
    if len(data) < 28 or int.from_bytes(data[24:28], "big") != len(data):
        return False
    return (data[17] == 0x10 and data[18] in names.EXCHANGES_V1) or (data[17] == 0x20 and data[18] in names.EXCHANGES_V2)


def _transport(proto, src, dst, body, size, ike_port, natt_port, truncated, version, quoted) -> Packet:
    if proto == 50:
        if len(body) < 8:
            return Packet(MALFORMED, f"ESP packet of {len(body)} bytes (needs SPI and sequence)", src, dst)
        return Packet(ESP, src=src, dst=dst, payload=body, size=size, truncated=truncated)
    if proto == 17:
        if len(body) < 8:
            return Packet(MALFORMED, "UDP header cut short", src, dst)
        sport, dport, ulen = struct.unpack_from(">HHH", body)
        if ulen < 8 or (ulen > len(body) and not truncated):
            return Packet(MALFORMED, f"UDP length {ulen} does not fit the {len(body)} bytes of the IP payload",
                          src, dst, sport, dport)
        data = body[8:ulen]
        if ike_port in (sport, dport):
            return Packet(IKE, src=src, dst=dst, sport=sport, dport=dport, payload=data, size=size, truncated=truncated)
        if natt_port in (sport, dport):
            if data == b"\xff":
                return Packet(KEEPALIVE, src=src, dst=dst, sport=sport, dport=dport, size=size)
            if data[:4] == b"\0\0\0\0":
                return Packet(IKE, src=src, dst=dst, sport=sport, dport=dport, natt=True, payload=data[4:],
                              size=size, truncated=truncated)
            if ike_without_marker(data):
                return Packet(MALFORMED, f"IKE message on UDP {natt_port} without the non-ESP marker (RFC 3948 2.2): "
                                         "not ESP", src, dst, sport, dport)
            if len(data) >= 8:
                return Packet(ESP, src=src, dst=dst, sport=sport, dport=dport, payload=data, size=size,
                              truncated=truncated)
            return Packet(MALFORMED, f"{len(data)}-byte UDP {natt_port} payload: neither IKE, ESP nor keepalive",
                          src, dst, sport, dport)
        return Packet(SKIPPED, "other UDP", src, dst, sport, dport)
    if (proto == 1 and version == 4) or (proto == 58 and version == 6):
        if quoted:
            return Packet(SKIPPED, ICMP_ABOUT_ICMP, src, dst)
        return _icmp(version, body, src, dst, ike_port, natt_port)
    return Packet(SKIPPED, f"IP protocol {proto}", src, dst)


def _icmp(version, body, src, dst, ike_port, natt_port) -> Packet:
    """An ICMP error that quotes IKE or ESP; other ICMP is skipped."""
    if len(body) < 8:
        return Packet(SKIPPED, "ICMP cut short", src, dst)
    itype, code = body[0], body[1]
    errors = (3, 11, 12) if version == 4 else (1, 2, 3, 4)
    if itype not in errors:
        return Packet(SKIPPED, "ICMP", src, dst)
    inner = decode_ip(body[8:], ike_port, natt_port, quoted=True)
    if inner.reason == ICMP_ABOUT_ICMP:
        return Packet(SKIPPED, ICMP_ABOUT_ICMP, src, dst)
    if inner.kind in (IKE, ESP, KEEPALIVE, FRAGMENT) or (inner.kind == MALFORMED and inner.sport in (ike_port, natt_port)):
        return Packet(ICMP, src=src, dst=dst, payload=body[8:], size=len(body), icmp=(version, itype, code),
                      sport=inner.sport, dport=inner.dport)
    return Packet(SKIPPED, "ICMP error about other traffic", src, dst)


class _Datagram:
    """A datagram being reassembled: its fragments sorted by offset, never overlapping."""

    __slots__ = ("src", "dst", "first_time", "header", "starts", "pieces", "refs", "received", "end", "frames",
                 "fragments", "reported")

    def __init__(self, src: bytes, dst: bytes, ts: float):
        self.src, self.dst, self.first_time = src, dst, ts
        self.header: bytes | None = None  # from the fragment at offset 0
        self.starts: list[int] | None = []  # None once given up: later fragments are only counted
        self.pieces: list[bytes] = []
        self.refs: list[int] = []
        self.received = 0  # bytes held
        self.end: int | None = None  # set by the last fragment
        self.frames: list[int] = []  # the first `fragments_per_datagram`
        self.fragments = 0
        self.reported = False  # given up on and reported (overlap, past 65,535 bytes): not listed as incomplete

    def give_up(self, reported: bool) -> None:
        self.starts = self.pieces = self.refs = None
        self.reported = reported


def _frame(ref: int) -> int:
    return ref & 0xFFFFFFFFFF  # the frame number within its file (see capture.frame_ref)


class Reassembler:
    """IP fragment reassembly as Linux does it (RFC 791, RFC 8200, RFC 5722), bounded by `Limits`.

    A fragment that lies within one already held is a duplicate: the first copy is used.  Any
    other overlap, a disagreement about the end, or a datagram past 65,535 bytes drops the whole
    datagram; its later fragments are only counted until it times out.  Such overlaps and
    duplicates with different bytes go to `overlaps`, datagrams that never complete to
    `incomplete`: at most `incomplete_listed` each, with `given_up` counting every incomplete one.
    """

    def __init__(self, limits: Limits = DEFAULT, overflow: dict | None = None):
        self.limits = limits
        self.overflow = {} if overflow is None else overflow  # Stats.overflow
        self.pending: dict[tuple, _Datagram] = {}
        self.incomplete: list[dict] = []  # {"frames", "fragments", "first_time", "bytes", "src", "dst", "has_first"}
        self.given_up = 0
        self.overlaps: list[dict] = []  # {"frames", "first_time", "src", "dst", "text", "dropped"}

    def add(self, pkt: Packet, ts: float, ref: int) -> tuple[bytes, list[int]] | str | None:
        """Store a fragment.  Returns the whole datagram and its frames once complete, or why
        this fragment makes its datagram malformed (it is dropped), else None."""
        pending = self.pending
        if pending and ts - next(iter(pending.values())).first_time > self.limits.fragment_timeout:
            self._expire(ts)
        d = pending.get(pkt.frag_key)
        if d is None:
            if len(pending) >= self.limits.fragment_buffers:
                self._count("fragment_buffers")
                self._close(next(iter(pending)))
            d = pending[pkt.frag_key] = _Datagram(pkt.src, pkt.dst, ts)
        d.fragments += 1
        if d.fragments <= self.limits.fragments_per_datagram:
            d.frames.append(ref)
        elif d.starts is not None:
            self._count("fragments_per_datagram")
            d.give_up(False)
        if d.starts is None:
            return None
        start, data = pkt.frag_offset, pkt.payload
        end = start + len(data)
        top = d.starts[-1] + len(d.pieces[-1]) if d.starts else 0
        header = d.header or pkt.frag_header
        length = len(header) - (40 if header[0] >> 4 == 6 else 0) + max(end, top)  # its IP length field
        if length > 65535:
            d.give_up(True)
            return (f"IP fragment makes its datagram {length:,} bytes long, more than an IP length field can hold "
                    f"(65,535; the ping of death): the datagram ({d.fragments} fragments from frame "
                    f"{_frame(d.frames[0])}) is dropped")
        if pkt.frag_more:
            bad_end = d.end is not None and end > d.end
        else:
            bad_end = end < top or d.end not in (None, end)
        if bad_end:
            self._overlap(d, ref, f"its fragments disagree about where it ends (frame {_frame(ref)})", True)
            return None
        i = bisect.bisect_right(d.starts, start)
        if i and end <= d.starts[i - 1] + len(d.pieces[i - 1]):  # within a fragment held: a duplicate
            at = start - d.starts[i - 1]
            if d.pieces[i - 1][at : at + len(data)] != data:
                self._overlap(d, ref, f"frame {_frame(ref)} repeats bytes {start}-{end - 1} of frame "
                              f"{_frame(d.refs[i - 1])} with different bytes; the first copy is used", False)
            return None
        j = i - 1 if i and start < d.starts[i - 1] + len(d.pieces[i - 1]) else i  # the fragment it overlaps
        if j < len(d.starts) and d.starts[j] < end:
            lo, hi = max(start, d.starts[j]), min(end, d.starts[j] + len(d.pieces[j]))
            same = data[lo - start : hi - start] == d.pieces[j][lo - d.starts[j] : hi - d.starts[j]]
            self._overlap(d, ref, f"frame {_frame(ref)} overlaps bytes {lo}-{hi - 1} of frame {_frame(d.refs[j])} "
                          f"with {'the same' if same else 'different'} bytes; the whole datagram is dropped", True)
            return None
        d.starts.insert(i, start)
        d.pieces.insert(i, data)
        d.refs.insert(i, ref)
        d.received += len(data)
        if start == 0:
            d.header = pkt.frag_header
        if not pkt.frag_more:
            d.end = end
        if d.end is None or d.header is None or d.received < d.end:
            return None
        del pending[pkt.frag_key]
        body = b"".join(d.pieces)
        header = bytearray(d.header)
        if header[0] >> 4 == 4:
            header[2:4] = (len(header) + len(body)).to_bytes(2, "big")
            header[6:8] = b"\0\0"
        else:
            header[4:6] = (len(header) - 40 + len(body)).to_bytes(2, "big")
        return bytes(header) + body, d.frames

    def _overlap(self, d: _Datagram, ref: int, text: str, drop: bool) -> None:
        """List an overlap (and `drop` the datagram)."""
        if drop:
            d.give_up(True)
        if len(self.overlaps) >= self.limits.incomplete_listed:
            self._count("incomplete_listed")
            return
        self.overlaps.append({"frames": d.frames[:], "first_time": d.first_time, "src": d.src, "dst": d.dst,
                              "text": text, "dropped": drop})

    def _count(self, cap: str) -> None:
        self.overflow[cap] = self.overflow.get(cap, 0) + 1

    def _expire(self, now: float) -> None:
        while self.pending:
            key, d = next(iter(self.pending.items()))
            if now - d.first_time <= self.limits.fragment_timeout:
                break
            self._close(key)

    def _close(self, key) -> None:
        d = self.pending.pop(key)
        if d.reported:
            return
        self.given_up += 1
        if len(self.incomplete) >= self.limits.incomplete_listed:
            self._count("incomplete_listed")
            return
        self.incomplete.append({"frames": d.frames, "fragments": d.fragments, "first_time": d.first_time,
                                "src": d.src, "dst": d.dst, "bytes": d.received, "has_first": d.header is not None})

    def finish(self) -> None:
        """Give up on every datagram still waiting for fragments."""
        for key in list(self.pending):
            self._close(key)
