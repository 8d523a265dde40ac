#!/usr/bin/env python3
"""Write a large synthetic IPsec gateway capture, fast, with plain `struct`.

    python tests/bench/gen_capture.py OUT.pcap --packets 1000000 [--seed N] [--format pcap|pcapng]
                                      [--peers 24] [--rate 20000] [--ipv6 SHARE]
                                      [--link ether|vlan|qinq|sll|sll2] [--manifest OUT.json]

What is in it (microsecond timestamps, about `--rate` packets per second):

* the link layer of `--link`: Ethernet, Ethernet with an 802.1Q tag (VLAN 100
  + the peer's index), QinQ (an 802.1ad tag, VLAN 10, around that 802.1Q tag),
  Linux cooked capture (SLL, `tcpdump -i any` before libpcap 1.10) or SLL2;
* `--ipv6 SHARE` of the peers (spread evenly) talk IPv6 with the gateway's
  2001:db8:6::1 (from 2001:db8:2::/64, NAT peers' NAT-D from 2001:db8:3::/64):
  the same IKE and ESP, UDP-encapsulated for the NAT peers;

* ~2 % IKE/NAT-T control traffic between one gateway (198.51.100.1) and
  `--peers` peers: half IKEv1, half IKEv2; half of each behind a NAT (seen
  from 203.0.113.0/24 on NAT-mapped ports, their NAT-D hashes computed from
  an inside address in 192.0.2.128/25), the others plain (192.0.2.0/25);
  past 120 peers from 198.18.0.0/15 (NAT: inside 100.64.0.0/10).
  IKEv1: Main Mode MM1..MM6 (SA, KE, NONCE, NAT-D, VID in MM1-MM4; MM5/MM6
  encrypted), Quick Mode QM1..QM3 (encrypted), child rekeys by new Quick Modes
  plus an encrypted Delete, periodic DPD (encrypted Informational, both ways).
  IKEv2: IKE_SA_INIT (SA, KE, Nonce, NAT-D notifies, V), IKE_AUTH (SK),
  CREATE_CHILD_SA child rekeys (SK) followed by an INFORMATIONAL Delete (SK),
  periodic INFORMATIONAL liveness checks (SK).  NAT peers float from UDP 500
  to 4500 (non-ESP marker) after the first exchange and send NAT-T
  keepalives (one 0xFF byte).  Every IKE message has correct ISAKMP and
  payload length fields and a well-formed payload chain.
* ~98 % ESP: IP protocol 50 for the plain peers, UDP 4500 (RFC 3948) for
  the NAT peers; one SPI per direction per child SA (so several SPIs per
  pair, both directions), sequence numbers from 1 upwards per SPI with a few
  planted gaps (lost packets) and one or two duplicated packets; IP lengths
  60..1400 bytes.
* a few ARP and TCP packets.

It prints what it wrote (counts by kind, the SPIs, the planted losses and
duplicates); `--manifest` also writes that as JSON for a benchmark or test to
compare with ikeflow's report.  Deterministic for a given seed and size.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import random
import struct
import sys
import time
from dataclasses import dataclass, field

GATEWAY = bytes([198, 51, 100, 1])
GATEWAY6 = bytes.fromhex("20010db8000600000000000000000001")
GW_MAC = bytes.fromhex("020000000001")
NEXTHOP_MAC = bytes.fromhex("020000000fe0")  # the router every peer is reached through
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
CONTROL_SHARE = 0.02  # IKE + keepalives
OTHER_EVERY = 4000  # one ARP or TCP packet per this many packets

# IKEv1 payload types (RFC 2408, RFC 3947)
V1_SA, V1_KE, V1_ID, V1_HASH, V1_NONCE, V1_N, V1_D, V1_VID, V1_NATD = 1, 4, 5, 8, 10, 11, 12, 13, 20
# IKEv2 payload types (RFC 7296)
V2_SA, V2_KE, V2_IDI, V2_IDR, V2_CERTREQ, V2_NONCE, V2_N, V2_D, V2_V, V2_SK = 33, 34, 35, 36, 38, 40, 41, 42, 43, 46
V2_NATD_SRC, V2_NATD_DST, V2_SIG_HASH, V2_REKEY_SA = 16388, 16389, 16431, 16393
# exchange types
MAIN, QUICK, INFO1 = 2, 32, 5
SA_INIT, AUTH, CCSA, INFO2 = 34, 35, 36, 37

VID_RFC3947 = bytes.fromhex("4a131c81070358455c5728f20e95452f")
VID_DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
VID_STRONGSWAN = bytes.fromhex("882fe56d6fd20dbc2251613b2ebe5beb")

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_ESP = struct.Struct("!II")
_PCAP_REC = struct.Struct("<IIII")
_IP6 = struct.Struct("!IHBB16s16s")
LINKS = {"ether": 1, "vlan": 1, "qinq": 1, "sll": 113, "sll2": 276}  # --link -> pcap LINKTYPE_


# --- IKE message builders ------------------------------------------------------------


def _chain(payloads: list[tuple[int, bytes]], last_next: int = 0) -> tuple[int, bytes]:
    """Generic payload headers around each body; returns (first payload type, bytes)."""
    out = []
    for i, (_ptype, body) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else last_next
        out.append(struct.pack("!BBH", nxt, 0, 4 + len(body)) + body)
    return (payloads[0][0] if payloads else 0), b"".join(out)


def _isakmp(ispi: bytes, rspi: bytes, version: int, exch: int, flags: int, msgid: int,
            payloads: list[tuple[int, bytes]]) -> bytes:
    first, body = _chain(payloads)
    return ispi + rspi + struct.pack("!BBBBII", first, version << 4, exch, flags, msgid, 28 + len(body)) + body


def _isakmp_encrypted(ispi: bytes, rspi: bytes, version: int, exch: int, flags: int, msgid: int,
                      first: int, enc: bytes) -> bytes:
    """IKEv1 message with the E flag: the body after the header is ciphertext."""
    return ispi + rspi + struct.pack("!BBBBII", first, version << 4, exch, flags | 1, msgid, 28 + len(enc)) + enc


def _tv(atype: int, value: int) -> bytes:
    return struct.pack("!HH", 0x8000 | atype, value)


def _v1_sa(rng: random.Random, offer: bool) -> bytes:
    """IKEv1 phase-1 SA: DOI IPsec, one proposal (ISAKMP) with one or three transforms."""
    suites = [(7, 256, 2, 14), (7, 128, 2, 14), (5, 0, 2, 2)]  # (enc, keylen, hash sha1, group)
    if not offer:
        suites = suites[:1]
    transforms = []
    for n, (enc, keylen, hsh, grp) in enumerate(suites, 1):
        attrs = _tv(1, enc) + (_tv(14, keylen) if keylen else b"") + _tv(2, hsh) + _tv(3, 1) + _tv(4, grp) \
            + _tv(11, 1) + _tv(12, 28800)
        nxt = 3 if n < len(suites) else 0
        transforms.append(struct.pack("!BBHBBH", nxt, 0, 8 + len(attrs), n, 1, 0) + attrs)
    tbody = b"".join(transforms)
    proposal = struct.pack("!BBHBBBB", 0, 0, 8 + len(tbody), 1, 1, 0, len(transforms)) + tbody
    return struct.pack("!II", 1, 1) + proposal


def _v2_sa(offer: bool) -> bytes:
    """IKEv2 IKE SA: one proposal, AES-CBC-256 / HMAC-SHA2-256 PRF and integrity / DH 19 (+14 offered)."""
    ts = [(1, 12, _tv(14, 256)), (2, 5, b""), (3, 12, b""), (4, 19, b"")]
    if offer:
        ts.append((4, 14, b""))
    out = []
    for i, (ttype, tid, attrs) in enumerate(ts):
        nxt = 3 if i + 1 < len(ts) else 0
        out.append(struct.pack("!BBHBBH", nxt, 0, 8 + len(attrs), ttype, 0, tid) + attrs)
    tbody = b"".join(out)
    return struct.pack("!BBHBBBB", 0, 0, 8 + len(tbody), 1, 1, 0, len(ts)) + tbody


def _natd(ispi: bytes, rspi: bytes, ip: bytes, port: int) -> bytes:
    return hashlib.sha1(ispi + rspi + ip + port.to_bytes(2, "big")).digest()


def _v2_notify(ntype: int, data: bytes = b"") -> bytes:
    return struct.pack("!BBH", 0, 0, ntype) + data


# --- the capture model -----------------------------------------------------------------


@dataclass
class Flow:
    """One ESP SPI in one direction: the frame header template and its counters."""

    pair: int
    src: bytes
    dst: bytes
    spi: int
    udp: tuple[int, int] | None  # (sport, dport) for UDP-encapsulated ESP
    v6: bool = False
    prefix: bytes = b""  # link-layer header + IPv4 version/TOS (IPv6: version, traffic class, flow label)
    csum_base: int = 0  # one's-complement sum of the constant IPv4 header words
    mid: bytes = b""  # IPv4: flags/fragment, TTL, protocol; IPv6: next header, hop limit, addresses
    addrs: bytes = b""
    seq: int = 0
    packets: int = 0
    lost: int = 0
    duplicates: int = 0


@dataclass
class Pair:
    index: int
    version: int
    nat: bool
    peer: bytes  # address seen on the wire
    inside: bytes  # the peer's own address (NAT-D hashes), == peer when not behind NAT
    ports: tuple[int, int]  # the peer's wire ports for 500 and 4500
    weight: float
    up_bias: float  # share of its ESP sent by the peer
    gateway: bytes = GATEWAY  # the gateway's address in the peer's IP version
    mac: bytes = b""
    active: tuple[Flow, Flow] | None = None  # (peer->gw, gw->peer)
    flows: list[Flow] = field(default_factory=list)


@dataclass
class Control:
    slot: int
    order: int
    frame: bytes
    kind: str
    activate: tuple[Flow, Flow] | None = None


def _csum_words(b: bytes) -> int:
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


def link_header(link: str, dst_mac: bytes, src_mac: bytes, etype: int, vlan: int) -> bytes:
    """The link-layer header of a frame from src_mac to dst_mac carrying `etype` (`vlan`: the 802.1Q id)."""
    if link == "sll":  # packet type (0 to us, 4 sent by us), ARPHRD_ETHER, address length, address, protocol
        return struct.pack("!HHH8sH", 4 if src_mac == GW_MAC else 0, 1, 6, src_mac, etype)
    if link == "sll2":  # protocol, reserved, interface index, ARPHRD_ETHER, packet type, address length, address
        return struct.pack("!HHIHBB8s", etype, 0, 2, 1, 4 if src_mac == GW_MAC else 0, 6, src_mac)
    tags = b""
    if link == "qinq":
        tags = struct.pack("!HH", 0x88A8, 10)
    if link in ("vlan", "qinq"):
        tags += struct.pack("!HH", 0x8100, vlan)
    return dst_mac + src_mac + tags + etype.to_bytes(2, "big")


def _ip_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int) -> bytes:
    if len(src) == 16:
        return _IP6.pack(0x60000000, payload_len, proto, 64, src, dst)
    hdr = bytearray(_IP.pack(0x45, 0, 20 + payload_len, ident, 0x4000, 64, proto, 0, src, dst))
    s = _csum_words(bytes(hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    hdr[10:12] = struct.pack("!H", ~s & 0xFFFF)
    return bytes(hdr)


class Generator:
    def __init__(self, packets: int, seed: int, peers: int, rate: float, ipv6: float = 0.0, link: str = "ether"):
        self.n = packets
        self.link = link
        self.ipv6 = ipv6
        self.rng = random.Random(seed)
        self.rate = rate
        self.pairs: list[Pair] = []
        self.controls: list[Control] = []
        self.counts: dict[str, int] = {}
        self.ident = 0
        self._order = 0
        self.spis: set[int] = set()
        self.ike_sas: list[dict] = []
        self._make_pairs(peers)

    # -- setup ----------------------------------------------------------------------------

    def _make_pairs(self, peers: int) -> None:
        rng = self.rng
        for i in range(peers):
            version = 1 if i % 2 == 0 else 2
            nat = (i // 2) % 2 == 1
            v6 = int((i + 1) * self.ipv6) != int(i * self.ipv6)  # `ipv6` of the peers, spread evenly
            host = i.to_bytes(2, "big")
            many = i >= 120  # past the room in the documentation networks: 198.18.0.0/15, 100.64.0.0/10
            if nat:
                peer = (bytes.fromhex("20010db8000200000000000000ff") + host if v6 else
                        bytes([198, 19]) + host if many else bytes([203, 0, 113, 10 + i]))
                inside = (bytes.fromhex("20010db8000300000000000000aa") + host if v6 else
                          bytes([100, 64]) + host if many else bytes([192, 0, 2, 130 + i]))
                base = 62000 + 2 * i  # NAT-mapped source ports above every well-known dissector port
                ports = (base, base + 1)
            else:
                peer = (bytes.fromhex("20010db8000200000000000000000000")[:14] + host if v6 else
                        bytes([198, 18]) + host if many else bytes([192, 0, 2, 10 + i]))
                inside = peer
                ports = (500, 4500)
            p = Pair(i, version, nat, peer, inside, ports, weight=rng.uniform(0.3, 3.0), up_bias=rng.uniform(0.35, 0.65),
                     gateway=GATEWAY6 if v6 else GATEWAY)
            p.mac = NEXTHOP_MAC
            self.pairs.append(p)

    def _l2(self, pair: Pair | None, from_peer: bool, etype: int) -> bytes:
        macs = (GW_MAC, NEXTHOP_MAC) if from_peer else (NEXTHOP_MAC, GW_MAC)
        return link_header(self.link, *macs, etype, 100 + (pair.index if pair else 0))

    def _ip_frame(self, pair: Pair | None, from_peer: bool, src: bytes, dst: bytes, proto: int, payload: bytes,
                  ident: int) -> bytes:
        return (self._l2(pair, from_peer, 0x86DD if len(src) == 16 else 0x0800)
                + _ip_header(src, dst, proto, len(payload), ident) + payload)

    def _udp_frame(self, pair: Pair, from_peer: bool, sport: int, dport: int, data: bytes, ident: int) -> bytes:
        src, dst = (pair.peer, pair.gateway) if from_peer else (pair.gateway, pair.peer)
        return self._ip_frame(pair, from_peer, src, dst, 17, _UDP.pack(sport, dport, 8 + len(data), 0) + data, ident)

    def _new_spi(self) -> int:
        while True:
            spi = self.rng.randrange(0x100, 0xFFFFFFFF)
            if spi not in self.spis:
                self.spis.add(spi)
                return spi

    def _flow(self, pair: Pair, src: bytes, dst: bytes, spi: int) -> Flow:
        if pair.nat:
            udp = (pair.ports[1], 4500) if src == pair.peer else (4500, pair.ports[1])
        else:
            udp = None
        proto = 17 if udp else 50
        f = Flow(pair.index, src, dst, spi, udp, v6=len(src) == 16)
        if f.v6:
            f.prefix = self._l2(pair, src == pair.peer, 0x86DD) + b"\x60\x00\x00\x00"
            f.mid = bytes([proto, 64]) + src + dst
        else:
            f.prefix = self._l2(pair, src == pair.peer, 0x0800) + b"\x45\x00"
            f.mid = struct.pack("!HBB", 0x4000, 64, proto)
            f.addrs = src + dst
            f.csum_base = 0x4500 + 0x4000 + ((64 << 8) | proto) + _csum_words(src + dst)
        pair.flows.append(f)
        return f

    def _child(self, pair: Pair) -> tuple[Flow, Flow]:
        return (self._flow(pair, pair.peer, pair.gateway, self._new_spi()),
                self._flow(pair, pair.gateway, pair.peer, self._new_spi()))

    # -- control traffic ----------------------------------------------------------------

    def _send(self, slot: float, pair: Pair, from_peer: bool, natt: bool, ike: bytes, kind: str,
              activate=None) -> None:
        """Queue one IKE message (or keepalive payload) from/to the peer at `slot`."""
        self.ident = (self.ident + 1) & 0xFFFF
        if natt:
            data = ike if kind == "keepalive" else b"\0\0\0\0" + ike
            wire_port, gw_port = pair.ports[1], 4500
        else:
            data, wire_port, gw_port = ike, pair.ports[0], 500
        if from_peer:
            frame = self._udp_frame(pair, True, wire_port, gw_port, data, self.ident)
        else:
            frame = self._udp_frame(pair, False, gw_port, wire_port, data, self.ident)
        self._order += 1
        self.controls.append(Control(int(slot), self._order, frame, kind, activate))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind.startswith("ike"):
            self.counts["ike_natt" if natt else "ike_500"] = self.counts.get("ike_natt" if natt else "ike_500", 0) + 1

    def _rtt(self) -> int:
        """Slots between a message and its answer (a few ms at the capture rate)."""
        return self.rng.randint(20, 120)

    def _v1_setup(self, pair: Pair, t: float) -> tuple[float, dict]:
        rng = self.rng
        ispi, rspi, zero = rng.randbytes(8), rng.randbytes(8), bytes(8)
        sa = {"version": 1, "ispi": ispi.hex(), "pair": pair.index, "msgs": 0}
        # NAT-D: the first hash is about the receiver (the gateway), the second about the sender.
        gw_hash = _natd(ispi, rspi, pair.gateway, 500)
        peer_hash = _natd(ispi, rspi, pair.inside, 500)
        vids = [(V1_VID, VID_RFC3947), (V1_VID, VID_DPD), (V1_VID, VID_STRONGSWAN)]
        mm1 = _isakmp(ispi, zero, 1, MAIN, 0, 0, [(V1_SA, _v1_sa(rng, True))] + vids)
        mm2 = _isakmp(ispi, rspi, 1, MAIN, 0, 0, [(V1_SA, _v1_sa(rng, False))] + vids[:2])
        mm3 = _isakmp(ispi, rspi, 1, MAIN, 0, 0, [(V1_KE, rng.randbytes(256)),  # group 14 (V1_NONCE, rng.randbytes(32)),
                                                  (V1_NATD, gw_hash), (V1_NATD, peer_hash)])
        mm4 = _isakmp(ispi, rspi, 1, MAIN, 0, 0, [(V1_KE, rng.randbytes(256)), (V1_NONCE, rng.randbytes(32)),
                                                  (V1_NATD, _natd(ispi, rspi, pair.peer, pair.ports[0])),
                                                  (V1_NATD, gw_hash)])
        float_ = pair.nat  # RFC 3947: with a NAT detected, MM5 onwards on 4500
        mm5 = _isakmp_encrypted(ispi, rspi, 1, MAIN, 0, 0, V1_ID, rng.randbytes(16 * rng.randint(4, 6)))
        mm6 = _isakmp_encrypted(ispi, rspi, 1, MAIN, 0, 0, V1_ID, rng.randbytes(16 * rng.randint(4, 6)))
        for i, (msg, from_peer, natt) in enumerate([(mm1, True, False), (mm2, False, False), (mm3, True, False),
                                                    (mm4, False, False), (mm5, True, float_), (mm6, False, float_)]):
            self._send(t, pair, from_peer, natt, msg, "ike_v1")
            t += self._rtt() if i % 2 == 0 else rng.randint(2, 10)
        sa["msgs"] += 6
        sa["rspi"] = rspi.hex()
        sa["natt"] = float_
        t = self._v1_quick(pair, t, ispi, rspi, sa)
        self.ike_sas.append(sa)
        return t, sa

    def _v1_quick(self, pair: Pair, t: float, ispi: bytes, rspi: bytes, sa: dict, old=None) -> float:
        rng = self.rng
        msgid = rng.randrange(1, 0xFFFFFFFF)
        natt = sa["natt"]
        child = self._child(pair)
        qm = [(True, 16 * rng.randint(22, 28)), (False, 16 * rng.randint(22, 28)), (True, 48)]
        for i, (from_peer, size) in enumerate(qm):
            msg = _isakmp_encrypted(ispi, rspi, 1, QUICK, 0, msgid, V1_HASH, rng.randbytes(size))
            self._send(t, pair, from_peer, natt, msg, "ike_v1", activate=child if i == 2 else None)
            t += self._rtt() if i == 0 else rng.randint(2, 10)
        sa["msgs"] += 3
        if old is not None:  # the old IPsec SA goes: encrypted Delete (Informational) from the gateway
            t += rng.randint(50, 300)
            msg = _isakmp_encrypted(ispi, rspi, 1, INFO1, 0, rng.randrange(1, 0xFFFFFFFF), V1_HASH, rng.randbytes(64))
            self._send(t, pair, False, natt, msg, "ike_v1")
            sa["msgs"] += 1
        return t

    def _v1_dpd(self, pair: Pair, t: float, sa: dict) -> None:
        ispi, rspi = bytes.fromhex(sa["ispi"]), bytes.fromhex(sa["rspi"])
        from_peer = self.rng.random() < 0.5
        for i in range(2):  # R-U-THERE, R-U-THERE-ACK: both encrypted Informational
            msg = _isakmp_encrypted(ispi, rspi, 1, INFO1, 0, self.rng.randrange(1, 0xFFFFFFFF), V1_HASH,
                                    self.rng.randbytes(80))
            self._send(t, pair, from_peer if i == 0 else not from_peer, sa["natt"], msg, "ike_v1")
            t += self._rtt()
        sa["msgs"] += 2

    def _v2_setup(self, pair: Pair, t: float) -> tuple[float, dict]:
        rng = self.rng
        ispi, rspi, zero = rng.randbytes(8), rng.randbytes(8), bytes(8)
        sa = {"version": 2, "ispi": ispi.hex(), "rspi": rspi.hex(), "pair": pair.index, "msgs": 0,
              "natt": pair.nat, "mid_i": 2, "mid_r": 0}
        sig = _v2_notify(V2_SIG_HASH, bytes.fromhex("000200030004"))
        req = _isakmp(ispi, zero, 2, SA_INIT, 0x08, 0, [
            (V2_SA, _v2_sa(True)), (V2_KE, struct.pack("!HH", 19, 0) + rng.randbytes(64)),
            (V2_NONCE, rng.randbytes(32)),
            (V2_N, _v2_notify(V2_NATD_SRC, _natd(ispi, zero, pair.inside, 500))),
            (V2_N, _v2_notify(V2_NATD_DST, _natd(ispi, zero, pair.gateway, 500))),
            (V2_N, sig), (V2_V, VID_STRONGSWAN)])
        resp = _isakmp(ispi, rspi, 2, SA_INIT, 0x20, 0, [
            (V2_SA, _v2_sa(False)), (V2_KE, struct.pack("!HH", 19, 0) + rng.randbytes(64)),
            (V2_NONCE, rng.randbytes(32)),
            (V2_N, _v2_notify(V2_NATD_SRC, _natd(ispi, rspi, pair.gateway, 500))),
            (V2_N, _v2_notify(V2_NATD_DST, _natd(ispi, rspi, pair.peer, pair.ports[0]))),
            (V2_CERTREQ, b"\x04" + rng.randbytes(20)), (V2_N, sig)])
        self._send(t, pair, True, False, req, "ike_v2")
        t += self._rtt()
        self._send(t, pair, False, False, resp, "ike_v2")
        t += rng.randint(2, 10)
        natt = pair.nat  # RFC 7296 2.23: float to 4500 for IKE_AUTH when a NAT is detected
        child = self._child(pair)
        self._send(t, pair, True, natt, self._sk_msg(ispi, rspi, AUTH, 0x08, 1, V2_IDI, rng.randint(300, 500)),
                   "ike_v2")
        t += self._rtt()
        self._send(t, pair, False, natt, self._sk_msg(ispi, rspi, AUTH, 0x20, 1, V2_IDR, rng.randint(250, 450)),
                   "ike_v2", activate=child)
        t += rng.randint(2, 10)
        sa["msgs"] += 4
        self.ike_sas.append(sa)
        return t, sa

    def _sk_msg(self, ispi: bytes, rspi: bytes, exch: int, flags: int, msgid: int, first: int, plain: int) -> bytes:
        """An IKEv2 message whose only payload is SK, announcing `first` as the first inner payload."""
        enc = (plain + 1 + 15) // 16 * 16
        body = self.rng.randbytes(16 + enc + 16)
        sk = struct.pack("!BBH", first, 0, 4 + len(body)) + body
        return ispi + rspi + struct.pack("!BBBBII", V2_SK, 0x20, exch, flags, msgid, 28 + len(sk)) + sk

    def _v2_exchange(self, pair: Pair, t: float, sa: dict, exch: int, first_req: int, first_resp: int,
                     plain: tuple[int, int], from_peer: bool, activate=None) -> float:
        """One IKEv2 request/response inside the IKE SA; the peer is the original initiator."""
        ispi, rspi = bytes.fromhex(sa["ispi"]), bytes.fromhex(sa["rspi"])
        if from_peer:
            mid = sa["mid_i"]
            sa["mid_i"] += 1
            f_req, f_resp = 0x08, 0x20
        else:
            mid = sa["mid_r"]
            sa["mid_r"] += 1
            f_req, f_resp = 0x00, 0x20 | 0x08
        self._send(t, pair, from_peer, sa["natt"], self._sk_msg(ispi, rspi, exch, f_req, mid, first_req, plain[0]),
                   "ike_v2")
        t += self._rtt()
        self._send(t, pair, not from_peer, sa["natt"],
                   self._sk_msg(ispi, rspi, exch, f_resp, mid, first_resp, plain[1]), "ike_v2", activate=activate)
        sa["msgs"] += 2
        return t + self.rng.randint(2, 10)

    def _v2_rekey(self, pair: Pair, t: float, sa: dict) -> float:
        child = self._child(pair)
        from_peer = self.rng.random() < 0.5
        t = self._v2_exchange(pair, t, sa, CCSA, V2_N, V2_SA, (300, 280), from_peer, activate=child)
        t += self.rng.randint(50, 300)
        return self._v2_exchange(pair, t, sa, INFO2, V2_D, V2_D, (12, 12), from_peer)

    def _v2_dpd(self, pair: Pair, t: float, sa: dict) -> None:
        self._v2_exchange(pair, t, sa, INFO2, 0, 0, (0, 0), self.rng.random() < 0.5)

    def schedule(self) -> None:
        """Lay out every control packet of every pair over the capture."""
        rng, n, P = self.rng, self.n, len(self.pairs)
        budget = CONTROL_SHARE * n / P  # control packets per pair
        rekeys = 3  # child SA rekeys per pair: 4 child SAs, 8 SPIs per pair
        start_span = max(1, int(0.004 * n))
        for pair in self.pairs:
            t0 = 0 if pair.index == 0 else rng.uniform(0, start_span)
            if pair.version == 1:
                t, sa = self._v1_setup(pair, t0)
                fixed = 9 + rekeys * 4
            else:
                t, sa = self._v2_setup(pair, t0)
                fixed = 4 + rekeys * 4
            spread = n - t - 1000  # keep the last rekey well before the end
            for k in range(1, rekeys + 1):
                at = t + spread * k / (rekeys + 1) + rng.uniform(-0.03, 0.03) * spread
                if pair.version == 1:
                    self._v1_quick(pair, at, bytes.fromhex(sa["ispi"]), bytes.fromhex(sa["rspi"]), sa, old=True)
                else:
                    self._v2_rekey(pair, at, sa)
            rest = max(0.0, budget - fixed)
            keepalives = int(rest * 0.3) if pair.nat else 0
            dpds = int((rest - keepalives) / 2)
            end = n - 200
            for k in range(dpds):
                at = t + 500 + (end - t - 500) * (k + rng.random()) / max(1, dpds)
                (self._v1_dpd if pair.version == 1 else self._v2_dpd)(pair, at, sa)
            for k in range(keepalives):
                at = t + (end - t) * (k + rng.random()) / max(1, keepalives)
                self._send(at, pair, True, True, b"\xff", "keepalive")
        self.controls.sort(key=lambda c: (c.slot, c.order))
        if len(self.controls) > n // 2:
            raise SystemExit(f"--packets {n} is too small for {P} peers' IKE traffic; use more packets or fewer peers")

    # -- output ---------------------------------------------------------------------------

    def write(self, out, fmt: str) -> dict:
        rng, n = self.rng, self.n
        controls = self.controls
        ci, cn = 0, len(controls)
        blob = rng.randbytes(1 << 16)
        blob_room = len(blob) - 1500
        rnd, randint = rng.random, rng.randint
        pack_rec = _PCAP_REC.pack
        esp_pack = _ESP.pack
        udp_pack = _UDP.pack
        hdr = struct.Struct("!HH4sH8s").pack  # total, ident, flags..proto, checksum, addresses
        plen = struct.Struct("!H").pack  # IPv6 payload length
        pcapng = fmt == "pcapng"
        epb = struct.Struct("<IIIIIII").pack
        # Plant the faults at fixed ESP packet numbers (from the middle of the capture on).
        esp_total = n - cn - n // OTHER_EVERY
        gap_at = set(rng.sample(range(esp_total // 10, esp_total - esp_total // 10), k=min(12, max(1, esp_total // 1000))))
        dup_at = set(rng.sample(range(esp_total // 5, esp_total - esp_total // 5), k=2 if esp_total > 100 else 0))
        gaps, dups = [], []
        cum: list[float] = []
        act: list[Pair] = []
        ts_us = 0
        ident = 0
        esp_no = 0
        counts = {"esp_ip50": 0, "esp_udp4500": 0, "arp": 0, "tcp": 0}
        parts: list[bytes] = []
        if pcapng:
            shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
            out.write(struct.pack("<II", 0x0A0D0D0A, 12 + len(shb_body)) + shb_body + struct.pack("<I", 12 + len(shb_body)))
            idb_body = struct.pack("<HHI", LINKS[self.link], 0, 0) + struct.pack("<HHB3x", 9, 1, 6) + struct.pack("<HH", 0, 0)
            out.write(struct.pack("<II", 1, 12 + len(idb_body)) + idb_body + struct.pack("<I", 12 + len(idb_body)))
        else:
            out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKS[self.link]))

        def rebuild() -> None:
            act[:] = [p for p in self.pairs if p.active]
            total = 0.0
            cum[:] = []
            for p in act:
                total += p.weight
                cum.append(total)
            for i in range(len(cum)):
                cum[i] /= total

        from bisect import bisect_left

        for i in range(n):
            ts_us += randint(1, 2 * int(1e6 / self.rate) - 1)
            if ci < cn and (controls[ci].slot <= i or not act):  # nothing to send ESP on yet: IKE first
                c = controls[ci]
                ci += 1
                frame = c.frame
                if c.activate:
                    self.pairs[c.activate[0].pair].active = c.activate
                    rebuild()
            elif not act or i % OTHER_EVERY == OTHER_EVERY // 2:  # (not act: only if no IKE at all)
                frame = self._other(i, counts)
            else:
                pair = act[bisect_left(cum, rnd())]
                f = pair.active[0] if rnd() < pair.up_bias else pair.active[1]
                esp_no += 1
                if esp_no in dup_at and f.seq:
                    f.duplicates += 1
                    dups.append((f.spi, f.seq))
                else:
                    if esp_no in gap_at and f.seq:
                        k = randint(1, 4)
                        f.seq += k
                        f.lost += k
                        gaps.append((f.spi, f.seq + 1 - k, k))
                    f.seq += 1
                f.packets += 1
                r = rnd()
                size = randint(60, 160) if r < 0.35 else randint(1300, 1400) if r < 0.8 else randint(161, 1299)
                ident = (ident + 1) & 0xFFFF
                s = f.csum_base + size + ident
                s = (s & 0xFFFF) + (s >> 16)
                s = (s & 0xFFFF) + (s >> 16)
                off = randint(0, blob_room)
                if f.v6:
                    if f.udp:
                        frame = (f.prefix + plen(size - 40) + f.mid + udp_pack(f.udp[0], f.udp[1], size - 40, 0)
                                 + esp_pack(f.spi, f.seq) + blob[off:off + size - 56])
                        counts["esp_udp4500"] += 1
                    else:
                        frame = f.prefix + plen(size - 40) + f.mid + esp_pack(f.spi, f.seq) + blob[off:off + size - 48]
                        counts["esp_ip50"] += 1
                elif f.udp:
                    frame = (f.prefix + hdr(size, ident, f.mid, ~s & 0xFFFF, f.addrs)
                             + udp_pack(f.udp[0], f.udp[1], size - 20, 0) + esp_pack(f.spi, f.seq)
                             + blob[off:off + size - 36])
                    counts["esp_udp4500"] += 1
                else:
                    frame = (f.prefix + hdr(size, ident, f.mid, ~s & 0xFFFF, f.addrs)
                             + esp_pack(f.spi, f.seq) + blob[off:off + size - 28])
                    counts["esp_ip50"] += 1
            sec = T0 + ts_us // 1_000_000
            usec = ts_us % 1_000_000
            ln = len(frame)
            if pcapng:
                pad = (-ln) & 3
                blen = 32 + ln + pad
                t = (T0 * 1_000_000 + ts_us)
                parts.append(epb(6, blen, 0, t >> 32, t & 0xFFFFFFFF, ln, ln) + frame + b"\0" * pad
                             + blen.to_bytes(4, "little"))
            else:
                parts.append(pack_rec(sec, usec, ln, ln))
                parts.append(frame)
            if len(parts) >= 65536:
                out.write(b"".join(parts))
                parts.clear()
        out.write(b"".join(parts))
        if ci != cn:
            raise RuntimeError(f"{cn - ci} control packets were not written")
        counts.update(self.counts)
        return self._summary(counts, gaps, dups, ts_us)

    def _other(self, i: int, counts: dict) -> bytes:
        """An ARP who-has or a TCP segment of an admin's SSH session to the gateway."""
        self.ident = (self.ident + 1) & 0xFFFF
        if (i // OTHER_EVERY) % 2 == 0:
            counts["arp"] += 1
            arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, NEXTHOP_MAC, bytes([198, 51, 100, 254]),
                              bytes(6), GATEWAY)
            return link_header(self.link, b"\xff" * 6, NEXTHOP_MAC, 0x0806, 100) + arp + bytes(18)
        counts["tcp"] += 1
        seg = struct.pack("!HHIIBBHHH", 51514, 22, i, 1000, 0x50, 0x18, 502, 0, 0) + self.rng.randbytes(48)
        return self._ip_frame(None, True, bytes([198, 51, 100, 200]), GATEWAY, 6, seg, self.ident)

    def _summary(self, counts: dict, gaps: list, dups: list, ts_us: int) -> dict:
        flows = [f for p in self.pairs for f in p.flows if f.packets]
        ike = counts.get("ike_v1", 0) + counts.get("ike_v2", 0)
        esp = counts["esp_ip50"] + counts["esp_udp4500"]
        return {
            "packets": self.n,
            "duration_s": round(ts_us / 1e6, 6),
            "counts": {
                "esp": esp, "esp_ip50": counts["esp_ip50"], "esp_udp4500": counts["esp_udp4500"],
                "ike": ike, "ike_v1": counts.get("ike_v1", 0), "ike_v2": counts.get("ike_v2", 0),
                "ike_udp500": counts.get("ike_500", 0), "ike_udp4500": counts.get("ike_natt", 0),
                "keepalive": counts.get("keepalive", 0), "arp": counts["arp"], "tcp": counts["tcp"],
                "other": counts["arp"] + counts["tcp"],
            },
            "peers": [{"peer": _ip(p.peer), "ike_version": p.version, "nat": p.nat,
                       "ports": list(p.ports) if p.nat else [500, 4500]} for p in self.pairs],
            "gateways": [_ip(GATEWAY), _ip(GATEWAY6)],
            "link": self.link,
            "ike_sas": [{"ispi": s["ispi"], "version": s["version"], "messages": s["msgs"],
                         "peer": _ip(self.pairs[s["pair"]].peer)} for s in self.ike_sas],
            "esp_flows": [{"src": _ip(f.src), "dst": _ip(f.dst), "spi": f"{f.spi:08x}",
                           "encap": "udp" if f.udp else "esp", "packets": f.packets, "seq_last": f.seq,
                           "lost": f.lost, "duplicates": f.duplicates} for f in flows],
            "planted": {"lost": sum(k for _, _, k in gaps), "gaps": [{"spi": f"{s:08x}", "first_missing": q, "count": k}
                                                                   for s, q, k in gaps],
                        "duplicates": [{"spi": f"{s:08x}", "seq": q} for s, q in dups]},
        }


def _ip(address: bytes) -> str:
    return str(ipaddress.ip_address(address))


def generate(path: str, packets: int, seed: int = 1, fmt: str = "pcap", peers: int = 24, rate: float = 20000.0,
             ipv6: float = 0.0, link: str = "ether") -> dict:
    """Write the capture to `path` and return the summary (what `--manifest` holds)."""
    g = Generator(packets, seed, peers, rate, ipv6, link)
    g.schedule()
    with open(path, "wb", buffering=1 << 22) as out:
        summary = g.write(out, fmt)
    summary.update({"file": os.path.abspath(path), "format": fmt, "seed": seed, "bytes": os.path.getsize(path)})
    return summary


def describe(s: dict) -> str:
    c = s["counts"]
    n = s["packets"]
    pct = lambda k: f"{100 * c[k] / n:5.2f} %"
    lines = [
        f"wrote {s['file']} ({s['format']}, {s['bytes'] / 2**20:.1f} MiB, {n} packets over {s['duration_s']:.1f} s, seed {s['seed']})",
        f"  ESP        {c['esp']:>9}  {pct('esp')}   (IP proto 50: {c['esp_ip50']}, UDP 4500: {c['esp_udp4500']})",
        f"  IKE        {c['ike']:>9}  {pct('ike')}   (IKEv1: {c['ike_v1']}, IKEv2: {c['ike_v2']}; "
        f"UDP 500: {c['ike_udp500']}, UDP 4500 with marker: {c['ike_udp4500']})",
        f"  keepalive  {c['keepalive']:>9}  {pct('keepalive')}",
        f"  other      {c['other']:>9}  {pct('other')}   (ARP {c['arp']}, TCP {c['tcp']})",
        f"  peers: {len(s['peers'])} ({sum(1 for p in s['peers'] if p['nat'])} behind NAT, "
        f"{sum(1 for p in s['peers'] if ':' in p['peer'])} IPv6), link {s['link']}, "
        f"IKE SAs: {len(s['ike_sas'])}, ESP SPIs (flows): {len(s['esp_flows'])}",
        f"  planted: {s['planted']['lost']} lost ESP packets in {len(s['planted']['gaps'])} gaps, "
        f"{len(s['planted']['duplicates'])} duplicates",
    ]
    for g in s["planted"]["gaps"]:
        lines.append(f"    gap  spi {g['spi']}: seq {g['first_missing']}..{g['first_missing'] + g['count'] - 1} missing")
    for d in s["planted"]["duplicates"]:
        lines.append(f"    dup  spi {d['spi']}: seq {d['seq']} twice")
    lines.append("  SPIs (spi:packets), per peer:")
    by_peer: dict[str, list[str]] = {}
    for f in s["esp_flows"]:
        peer = f["dst"] if f["src"] in s["gateways"] else f["src"]
        arrow = "<" if f["src"] in s["gateways"] else ">"
        by_peer.setdefault(peer, []).append(f"{arrow}{f['spi']}:{f['packets']}")
    for p in s["peers"]:
        kind = f"IKEv{p['ike_version']}{', NAT' if p['nat'] else ''}, {'UDP 4500' if p['nat'] else 'ESP'}"
        lines.append(f"    {p['peer']:>14} ({kind}): " + " ".join(by_peer.get(p["peer"], [])))
    lines.append("    (> peer to gateway, < gateway to peer)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="capture file to write")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--format", choices=("pcap", "pcapng"), default="pcap")
    ap.add_argument("--peers", type=int, default=24, help="peer gateways/clients (even number; default 24)")
    ap.add_argument("--rate", type=float, default=20000.0, help="mean packets per second (default 20000)")
    ap.add_argument("--ipv6", type=float, default=0.0, metavar="SHARE",
                    help="share of the peers that talk IPv6 (0..1; default 0)")
    ap.add_argument("--link", choices=sorted(LINKS), default="ether",
                    help="link layer: Ethernet, with an 802.1Q tag or QinQ, Linux cooked v1 or v2 (default ether)")
    ap.add_argument("--manifest", help="also write the summary as JSON to this file")
    ap.add_argument("--quiet", action="store_true", help="print only the one-line header")
    a = ap.parse_args(argv)
    if a.packets < 1000:
        ap.error("--packets must be at least 1000")
    if a.peers < 2:
        ap.error("--peers must be at least 2")
    if not 0 <= a.ipv6 <= 1:
        ap.error("--ipv6 is a share between 0 and 1")
    t = time.perf_counter()
    s = generate(a.out, a.packets, a.seed, a.format, a.peers, a.rate, a.ipv6, a.link)
    took = time.perf_counter() - t
    if a.manifest:
        with open(a.manifest, "w") as fh:
            json.dump(s, fh, indent=1)
    text = describe(s)
    print(text.splitlines()[0] if a.quiet else text)
    print(f"  generated in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
