"""The sans-I/O core: takes captured frames, keeps per-peer and per-SA state.

Capture sources (files, live sniffing) feed `Analyzer.record()`; renderers
read the state after `finish()`.  Memory grows with peers, IKE SAs, their
messages and ESP SPIs, not with ESP packets.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from ikeflow.decode import packet as pk
from ikeflow.sources.capture import Record
from ikeflow.model import attribution, lifecycle
from ikeflow.model.esp import EspTable, esp_key
from ikeflow.model.esp_inner import EspInner
from ikeflow.model.events import EspSeen, IcmpError, MessageSeen, pair_key
from ikeflow.decode.ike import IkeMessage, decode_isakmp
from ikeflow.decode.names import AUTHIP_EXCHANGES
from ikeflow.model.decryption import Decryption
from ikeflow.model.ikesa import NOTIFY_REDIRECT, ZERO_SPI, IkeSa
from ikeflow.model.sequences import CREATE_CHILD_SA, IKE_SA_INIT
from ikeflow.limits import DEFAULT, Limits

MAX_LISTED = 1000  # malformed frames listed one by one; the rest are counted
DECODE_AHEAD = 256  # frames decoded at a time before the model takes them (Analyzer.records)
NOTIFY_REDIRECTED_FROM = 16408  # RFC 5685 10: the original responder's address, in the redirected IKE_SA_INIT
AUTHIP = "not IKE: AuthIP (Microsoft, ISAKMP exchange types 243-246, [MS-AIPS] 2.2.1)"  # a `skipped` reason
ICMP_TEXT = {
    (4, 3, 0): "network unreachable", (4, 3, 1): "host unreachable", (4, 3, 2): "protocol unreachable",
    (4, 3, 3): "port unreachable", (4, 3, 4): "fragmentation needed", (4, 3, 9): "network prohibited",
    (4, 3, 10): "host prohibited", (4, 3, 13): "administratively prohibited", (4, 11, 0): "TTL exceeded",
    (4, 11, 1): "fragment reassembly time exceeded", (6, 1, 0): "no route", (6, 1, 1): "administratively prohibited",
    (6, 1, 3): "address unreachable", (6, 1, 4): "port unreachable", (6, 2, 0): "packet too big",
    (6, 3, 0): "hop limit exceeded", (6, 3, 1): "fragment reassembly time exceeded",
}


@dataclass(slots=True)
class PeerPair:
    """Two addresses that talk IKE/ESP; `a` is the one seen first."""

    a: bytes
    b: bytes
    first_time: float
    sas: list[IkeSa] = field(default_factory=list)  # in the order first seen (IkeSa.index)
    waiting: list[IkeSa] = field(default_factory=list)  # IKEv2 SAs that a retry may follow (see _link_retry)
    opened: int = 0  # IKE SAs ever kept (IkeSa.index)
    forgotten: int = 0  # of `sas`, how many were forgotten since the list was last swept (see _forget_half_open)
    last_up: IkeSa | None = None  # the latest SA (by index) that came up
    child_answered: float | None = None  # when a CREATE_CHILD_SA between them was first answered
    alive: IkeSa | None = None  # the latest SA that came up and was not closed (set by finish, model.lifecycle)
    keepalives: Counter = field(default_factory=Counter)  # sender address -> count
    keepalive_frames: list[int] = field(default_factory=list)  # first few
    keepalive_last: dict = field(default_factory=dict)  # sender address -> time of its latest keepalive
    icmp: list[IcmpError] = field(default_factory=list)  # the first `Limits.icmp_per_pair`
    icmp_errors: int = 0  # all of them


@dataclass
class Stats:
    packets: int = 0
    ike: int = 0
    esp: int = 0
    ah: int = 0  # frames with AH and neither IKE nor ESP inside (AH around ESP counts as esp)
    keepalives: int = 0
    icmp: int = 0
    fragments: int = 0  # IP fragments held for reassembly (the last one counts as what it completes)
    malformed: int = 0
    skipped: int = 0
    overflow: dict = field(default_factory=dict)  # limits.Limits field -> entries turned away (not frames)


class Analyzer:
    """Feed it frames in capture order; read `pairs`, `sas`, `esp` afterwards."""

    def __init__(self, ike_port: int = 500, natt_port: int = 4500, limits: Limits = DEFAULT, keys=None):
        self.ike_port, self.natt_port = ike_port, natt_port
        self.keys = keys  # a keys.KeyRing to decrypt IKE messages with, or None
        self.rekeys: dict = {}  # see model.decryption.Decryption.rekeys
        # ESP opened with the keys' ESP SAs (inner hosts per SPI), or None without ESP keys
        self.esp_inner = EspInner(keys) if keys and keys.counts["esp"] else None
        self.limits = limits
        self.stats = Stats()
        self.esp = EspTable.of(natt_port, limits, self.stats.overflow)
        self.ah = EspTable.of(natt_port, limits, self.stats.overflow)  # AH SAs, alike
        self.sas: dict[tuple[int, bytes], IkeSa] = {}
        self.half_open: OrderedDict[tuple, IkeSa] = OrderedDict()  # kept SAs not yet answered, oldest first
        self.pairs: dict[tuple[bytes, bytes], PeerPair] = {}
        self.last_sent: dict[bytes, list] = {}  # address -> see _sent
        self.malformed: list[tuple[int, str]] = []
        self.skipped: Counter = Counter()  # reason -> count
        self.reassembler = pk.Reassembler(limits, self.stats.overflow)
        # callables(event) for live views, compare and the JSON spool: see model.events
        self.listeners: list = []
        self.last_time = 0.0  # latest timestamp seen (captures are not always in time order)
        self.owners: attribution.Owners | None = None  # the IKE SA of each ESP/AH flow, set by finish()

    # -- input -----------------------------------------------------------------

    def record(self, rec: Record) -> None:
        """One captured frame that the reader did not count as plain ESP itself."""
        pkt = pk.decode(rec.linktype, rec.data, self.ike_port, self.natt_port)
        self.packet(rec.ref, rec.time, pkt, ())

    def records(self, recs: list[Record]) -> None:
        """Frames as `record`, in order: the decoders (pure functions of the bytes) run over DECODE_AHEAD of
        them at a time before the model takes them, which costs less than running the two by turns."""
        ike_port, natt_port, decode, packet = self.ike_port, self.natt_port, pk.decode, self.packet
        for i in range(0, len(recs), DECODE_AHEAD):
            part = recs[i : i + DECODE_AHEAD]
            pkts = [decode(r.linktype, r.data, ike_port, natt_port) for r in part]
            msgs = [decode_isakmp(p.payload) if p.kind == pk.IKE else None for p in pkts]
            for r, p, m in zip(part, pkts, msgs):
                packet(r.ref, r.time, p, (), m)

    def packet(self, ref: int, ts: float, pkt: pk.Packet, fragments: list[int],
               msg: IkeMessage | None = None) -> None:
        """One decoded frame (`msg`: its IKE message, if decoded already)."""
        if ts > self.last_time:
            self.last_time = ts
        kind = pkt.kind
        if pkt.ah:
            self._ah(ref, ts, pkt)
        if kind == pk.ESP:
            self._esp(ref, ts, pkt)
        elif kind == pk.AH:
            self.stats.ah += 1
        elif kind == pk.IKE:
            self._ike(ref, ts, pkt, fragments, msg)
        elif kind == pk.KEEPALIVE:
            self.stats.keepalives += 1
            pair = self._pair(pkt.src, pkt.dst, ts)
            pair.keepalives[pkt.src] += 1
            pair.keepalive_last[pkt.src] = ts
            if len(pair.keepalive_frames) < 5:
                pair.keepalive_frames.append(ref)
        elif kind == pk.FRAGMENT:
            datagram = self.reassembler.add(pkt, ts, ref)
            if datagram is None:
                self.stats.fragments += 1
            elif isinstance(datagram, str):
                self._malformed(ref, datagram)
            else:
                whole, frames = datagram
                inner = pk.decode_ip(whole, self.ike_port, self.natt_port)
                if inner.kind == pk.FRAGMENT:  # fragmented twice: not IP (RFC 8200 4.5), and a loop to refuse
                    self._malformed(ref, "IP fragment inside a reassembled IP datagram")
                else:
                    self.packet(ref, ts, inner, frames)
        elif kind == pk.ICMP:
            self._icmp(ref, ts, pkt)
        elif kind == pk.MALFORMED:
            self._malformed(ref, pkt.reason)
        else:
            self.stats.skipped += 1
            self.skipped[pkt.reason] += 1

    def _malformed(self, ref: int, reason: str) -> None:
        self.stats.malformed += 1
        if len(self.malformed) < MAX_LISTED:
            self.malformed.append((ref, reason))

    def _esp(self, ref: int, ts: float, pkt: pk.Packet) -> None:
        body = pkt.payload
        spi = int.from_bytes(body[:4], "big")
        seq = int.from_bytes(body[4:8], "big")
        encap = "udp" if pkt.sport else "esp"
        self.esp.add(esp_key(pkt.dst, spi), encap, pkt.sport, pkt.dport, pkt.src, pkt.dst, seq, pkt.size, ts, ref)
        if self.esp_inner is not None and esp_key(pkt.dst, spi) in self.esp.flows:  # kept flows only: bounded
            self.esp_inner.add(pkt.src, pkt.dst, body, ts)
        if self.listeners:
            self._emit(EspSeen(spi, seq, ts, ref, pkt.size))
        self._pair(pkt.src, pkt.dst, ts)

    def _ah(self, ref: int, ts: float, pkt: pk.Packet) -> None:
        spi = int.from_bytes(pkt.ah[:4], "big")
        self.ah.add(esp_key(pkt.dst, spi), "ah", 0, 0, pkt.src, pkt.dst, int.from_bytes(pkt.ah[4:8], "big"), pkt.size,
                    ts, ref)
        self._pair(pkt.src, pkt.dst, ts)

    def _ike(self, ref: int, ts: float, pkt: pk.Packet, fragments: list[int], msg: IkeMessage | None) -> None:
        if msg is None:
            msg = decode_isakmp(pkt.payload)
        if pkt.truncated and not msg.malformed:
            msg.malformed = f"cut short by the capture's snap length ({len(pkt.payload)} bytes captured)"
        if len(pkt.payload) < 28 or msg.version not in (1, 2):
            why = msg.malformed or f"ISAKMP version {msg.version}.{msg.minor_version}"
            self._malformed(ref, why)
            return
        if msg.version == 1 and msg.exchange_type in AUTHIP_EXCHANGES:
            self.stats.skipped += 1
            self.skipped[AUTHIP] += 1
            return
        if msg.malformed:
            self._malformed(ref, msg.malformed)
        else:
            self.stats.ike += 1
        key = (msg.version, msg.ispi)
        sa = self.sas.get((*key, msg.rspi)) or self.sas.get(key)  # (version, ispi, rspi): an SA started over
        if sa is not None and self._starts_over(sa, msg):
            self._retire(key, sa)
            sa = None
        kept = sa is not None or self._new_sa(key, pkt, ts)
        if sa is None:
            sa = self.sas[key] if kept else IkeSa(*key)  # past a cap: this message is analysed, the SA not kept
        up = sa.up_time
        seen = sa.add(msg, pkt.payload, ref, ts, pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.natt, fragments)
        if kept:
            if seen.sender == "R":
                self.half_open.pop(key, None)
            self._sent(pkt.src, sa, ts)
            pair = self.pair_of(sa)
            if up is None and sa.up_time is not None:
                if pair.last_up is None or pair.last_up.index < sa.index:
                    pair.last_up = sa
            elif up is not None and sa.up_time is None and pair.last_up is sa:  # IkeSa._mm6_heard
                pair.last_up = max((o for o in pair.sas if o.up_time is not None), key=lambda o: o.index, default=None)
            if msg.version == 2 and msg.exchange_type == CREATE_CHILD_SA and not seen.request \
                    and pair.child_answered is None:
                pair.child_answered = ts
        if msg.version == 2 and msg.exchange_type == IKE_SA_INIT and seen.request and not seen.retransmission and not seen.retry:
            self._link_retry(self._pair(pkt.src, pkt.dst, ts), sa)
            self._link_redirect(msg, pkt.src, pkt.dst)
        if self.listeners:
            self._emit(MessageSeen(sa, seen))

    def _new_sa(self, key: tuple[int, bytes], pkt: pk.Packet, ts: float) -> bool:
        """Keep a new IKE SA in `sas` and its peer pair's list, unless a cap says no."""
        pair = self._pair(pkt.src, pkt.dst, ts)
        if len(self.sas) >= self.limits.ike_sas:
            self.overflow("ike_sas")
            return False
        if self.pairs.get(pair_key(pkt.src, pkt.dst)) is not pair:
            return False  # the pair is past its cap (counted there)
        sa = self.sas[key] = self.half_open[key] = IkeSa(*key)
        if self.keys:
            sa.decryption = Decryption(self.keys, self.rekeys)
        sa.after_child = sa.version == 2 and pair.child_answered is not None
        sa.index = pair.opened
        pair.opened += 1
        pair.sas.append(sa)
        if sa.version == 2:
            pair.waiting.append(sa)
        if len(self.half_open) > self.limits.half_open_sas:
            self._forget_half_open()
        return True

    @staticmethod
    def _starts_over(sa: IkeSa, msg: IkeMessage) -> bool:
        """An IKEv2 IKE_SA_INIT request with responder SPI 0 under the SPI of an SA that is up starts another
        SA (RFC 7296 2.6: a new initiator SPI is due, but unit-test fixtures reuse theirs)."""
        return (msg.version == 2 and msg.exchange_type == IKE_SA_INIT and msg.initiator and not msg.response
                and msg.rspi == ZERO_SPI and sa.up_time is not None)

    def _retire(self, key: tuple[int, bytes], sa: IkeSa) -> None:
        """Keep `sa` under (version, ispi, rspi), in its place, so that `key` names the new SA and the
        messages with the old responder SPI still find the old one."""
        self.sas = {(*k, sa.rspi) if k == key else k: v for k, v in self.sas.items()}

    def _kept(self, sa: IkeSa) -> bool:
        """`sa` is in `sas` (not forgotten, not turned away by a cap)."""
        return self.sas.get((sa.version, sa.ispi)) is sa or self.sas.get((sa.version, sa.ispi, sa.rspi)) is sa

    def _forget_half_open(self) -> None:
        """More IKE SAs than `half_open_sas` that their responder never answered (a flood of IKE_SA_INIT or
        MM1 with new SPIs, not tunnels): forget the oldest, as a responder drops its oldest half-open SAs."""
        while len(self.half_open) > self.limits.half_open_sas:
            key, sa = self.half_open.popitem(last=False)  # O(1), unlike a plain dict's first item
            del self.sas[key]
            self.overflow("half_open_sas")
            pair = self.pairs.get(pair_key(sa.initiator[0], sa.responder[0])) if sa.initiator else None
            if pair is not None:
                pair.forgotten += 1
                if 8 * pair.forgotten > len(pair.sas):
                    self._sweep(pair)

    def _sweep(self, pair: PeerPair) -> None:
        """Take the forgotten SAs out of the pair's lists."""
        pair.sas = [sa for sa in pair.sas if self._kept(sa)]
        pair.waiting = [sa for sa in pair.waiting if self._kept(sa)]
        pair.forgotten = 0

    def _sent(self, src: bytes, sa: IkeSa, ts: float) -> None:
        """Keep `last_sent[src]` = [time, sa, time', sa']: the latest IKE message from `src` and the latest
        one from any other SA, which answers "did `src` send anything later outside SA x" at once."""
        last = self.last_sent.get(src)
        if last is None:
            self.last_sent[src] = [ts, sa, float("-inf"), None]
        elif last[1] is sa:
            last[0] = max(last[0], ts)
        elif ts > last[0]:
            last[2:] = last[:2]
            last[:2] = ts, sa
        elif ts > last[2]:
            last[2:] = ts, sa

    def sent_after(self, src: bytes, ts: float, besides: IkeSa) -> bool:
        """`src` sent an IKE message after `ts` in a kept IKE SA other than `besides`."""
        last = self.last_sent.get(src)
        return last is not None and (last[0] if last[1] is not besides else last[2]) > ts

    def _link_retry(self, pair: PeerPair, sa: IkeSa) -> None:
        """A fresh IKE_SA_INIT after a COOKIE/INVALID_KE answer on another SA is that SA's retry."""
        waiting = pair.waiting
        k = len(waiting) - 1
        while k >= 0:
            old = waiting[k]
            k -= 1
            if old.ike_sa_up() or old.retried_by or not self._kept(old):
                del waiting[k + 1]  # for good: none of these comes undone
            elif old is not sa:
                answers = [m for m in old.messages if m.msg.exchange_type == IKE_SA_INIT and not m.request]
                # its latest answer: a COOKIE already retried under the same SPI and answered is no reason
                names = [n for _, n in answers[-1].msg.notifies if n in ("COOKIE", "INVALID_KE_PAYLOAD")] \
                    if answers else []
                if names:
                    old.retried_by = names[-1]
                return

    def _link_redirect(self, msg: IkeMessage, src: bytes, dst: bytes) -> None:
        """An IKE_SA_INIT request with N(REDIRECTED_FROM) follows a REDIRECT (RFC 5685 5): the latest IKE SA
        from `src` to the address it names whose IKE_SA_INIT answer was N(REDIRECT) was redirected to `dst`."""
        data = next((p.info.get("data", b"") for p in msg.payloads
                     if p.name == "N" and p.info.get("notify_type") == NOTIFY_REDIRECTED_FROM), b"")
        if len(data) < 2 or data[0] not in (1, 2) or len(data) < 2 + data[1] or data[1] not in (4, 16):
            return
        pair = self.pairs.get(pair_key(src, data[2:2 + data[1]]))
        for old in reversed(pair.sas if pair else ()):
            if old.initiator and old.initiator[0] == src and old.redirected_to is None and any(
                    not m.request and any(t == NOTIFY_REDIRECT for t, _ in m.msg.notifies) for m in old.messages):
                old.redirected_to = dst
                return

    def _icmp(self, ref: int, ts: float, pkt: pk.Packet) -> None:
        self.stats.icmp += 1
        inner = pk.decode_ip(pkt.payload, self.ike_port, self.natt_port, quoted=True)
        version, itype, code = pkt.icmp
        text = ICMP_TEXT.get((version, itype, code), f"ICMP type {itype} code {code}")
        sa = None
        if inner.kind == pk.IKE and len(inner.payload) >= 8:
            for v in (1, 2):
                if (v, inner.payload[:8]) in self.sas:
                    sa = (v, inner.payload[:8])
        event = IcmpError(ref, ts, pkt.src, text, (inner.src, inner.sport, inner.dst, inner.dport), sa)
        pair = self._pair(inner.src, inner.dst, ts)
        pair.icmp_errors += 1
        if len(pair.icmp) < self.limits.icmp_per_pair:
            pair.icmp.append(event)
        else:
            self.overflow("icmp_per_pair")
        self._emit(event)

    def _pair(self, src: bytes, dst: bytes, ts: float) -> PeerPair:
        """The pair's state; past the `peer_pairs` cap a fresh one that is not kept."""
        key = pair_key(src, dst)
        pair = self.pairs.get(key)
        if pair is None:
            pair = PeerPair(src, dst, ts)
            if len(self.pairs) < self.limits.peer_pairs:
                self.pairs[key] = pair
            else:
                self.overflow("peer_pairs")
        return pair

    def overflow(self, cap: str, n: int = 1) -> None:
        """Count what the `cap` (a Limits field) turned away."""
        self.stats.overflow[cap] = self.stats.overflow.get(cap, 0) + n

    def _emit(self, event) -> None:
        for listener in self.listeners:
            listener(event)

    # -- end ---------------------------------------------------------------------

    def finish(self, frames: int) -> None:
        """Close the books: `frames` is the number of frames read in all."""
        self.reassembler.finish()
        for pair in self.pairs.values():
            if pair.forgotten:
                self._sweep(pair)
            lifecycle.close(pair)
        held = self.reassembler.incomplete + self.reassembler.overlaps
        for src, dst in dict.fromkeys((d["src"], d["dst"]) for d in held):  # in order: the peers' order is stable
            self._pair(src, dst, 0.0)
        self.stats.packets = frames
        self.stats.esp = self.esp.packets
        self.esp.in_frame_order()
        self.ah.in_frame_order()
        for f in (*self.esp.flows.values(), *self.ah.flows.values()):
            self._pair(f.src, f.dst, f.first_time)
            self.last_time = max(self.last_time, f.last_time)
        self.owners = attribution.Owners(self)

    def pair_of(self, sa: IkeSa) -> PeerPair:
        return self.pairs[pair_key(sa.initiator[0], sa.responder[0])]

