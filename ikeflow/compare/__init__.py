"""`ikeflow compare`: did the packets get from one capture point to the other?

Each capture runs through the same core as `ikeflow read` (capture.read_files ->
Analyzer); a listener keeps a compact record of every IKE message.  Two
neighbouring capture points (a *segment*) are then compared:

- IKE messages are matched by IKE SA (version + initiator SPI), responder SPI,
  message ID, exchange type, flags and content (payload types, lengths and
  bodies: the same at both points, NAT or not, once IP fragments are
  reassembled); identical copies (retransmissions) are paired nearest in time
  once the clock offset is taken out.
- The clock offset of the second point is the densest cluster of time
  differences per direction, refined to the median of the matches; with both
  directions matched it is the midpoint of the two (transit delay assumed
  symmetric).  ESP first/last times stand in when no IKE message matches.
- ESP is compared per SPI (the core counts ESP per flow without keeping
  packets): packets, duplicates and sequence ranges at both points.
- Which point is nearer the initiator comes from the transit times (both
  directions matched), else from where packets go missing, else the order given.

Memory is bounded by peers, IKE SAs and ESP SPIs: each IKE SA keeps its first and
last KEEP message records per point; messages in the elided middle are not judged.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

import click

from ikeflow import __version__
from ikeflow.pipeline import Options, Pipeline
from ikeflow.model.events import EspSeen, MessageSeen
from ikeflow.sources.capture import CaptureError, FileInfo, frame_ref, split_ref
from ikeflow.cli import limit_options
from ikeflow.diagnose.finding import ERROR, INFO, WARNING, Finding, times
from ikeflow.limits import DEFAULT, Limits
from ikeflow.render.common import ip

KEEP = 2048  # message records kept per IKE SA and point, at each end
EDGE = 0.5  # s: slack at the start and end of the other capture
ESP_KEEP = 1 << 20  # ESP sequence numbers kept per SPI and point; past that, flows are compared by counts
CLUSTER = 0.02  # s: time differences this close belong to the same match
WINDOW = 1.0  # s: most a matched copy may sit from the expected time (after the clock offset)
MAX_PAIRS = 64  # copies of one message per point compared pairwise; beyond that nearest in order
MAX_LISTED = 1000  # matched frame pairs listed per direction in JSON
MTU_PAYLOAD = 1472  # bytes of UDP payload that fit a 1500-byte IPv4 packet
MAX_LADDER = 60  # ladder rows drawn per peer pair before eliding the middle

COMPARE_HELP = """Compare captures taken at two (or more) points of the same path.

\b
Capture at both ends (or before and after a NAT router / firewall):
  tcpdump -i eth0 -s 0 -w local.pcap 'udp port 500 or udp port 4500 or esp or icmp'
then run:
  ikeflow compare local.pcap remote.pcap
  ikeflow compare a.pcap b.pcap c.pcap     (points in order along the path)

Matches every IKE message (by SPIs, message ID and content, across NAT) and
every ESP SPI seen at one point with the other, estimates the clock offset
between the captures, and reports per peer pair and direction what was sent,
what arrived, what was lost (with the frames on both sides), duplicated or
reordered, the transit delay, the NAT mappings between the points, IP
fragments that arrived incomplete and ICMP errors seen on one side only.
Findings name the segment where packets are lost and the likely cause.

\b
Exit codes: 0 nothing lost, 1 at least one error finding,
2 usage error or unreadable input, 3 internal error.
"""


# -- one capture point --------------------------------------------------------------


@dataclass(slots=True)
class Msg:
    """One IKE message as seen at one capture point."""

    point: int
    ref: int  # frame_ref in this point's own capture
    time: float
    sa: tuple  # (version, ispi)
    key: int  # content digest
    rspi: bytes
    message_id: int
    exchange_type: int
    sender: str  # "I"/"R" of the IKE SA
    request: bool
    response: bool  # IKEv2 R flag
    label: str
    size: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    natt: bool
    fragments: int  # IP fragments it was reassembled from (0: not fragmented)
    copies: int = 1  # identical copies seen at this point so far, this one included


class Point:
    """One capture file run through the core, with compact IKE message records."""

    def __init__(self, index: int, path: str, ike_port: int, natt_port: int, limits: Limits = DEFAULT):
        self.index, self.path = index, path
        self.name = "-" if path == "-" else os.path.basename(path)
        self.pipeline = Pipeline(Options(ike_port, natt_port, limits), [self._listen])
        self.an = self.pipeline.model
        self.infos: list[FileInfo] = self.pipeline.infos
        self.msgs: dict[tuple, list[Msg]] = {}  # IKE SA -> records in capture order
        self.gaps: dict[tuple, tuple[float, float]] = {}  # IKE SA -> (from, to): records elided
        self._copies: dict[tuple, int] = {}
        self.esp_seqs: dict[int, dict[int, list]] = {}  # SPI -> sequence number -> [(time, ref), ...]

    def read(self) -> None:
        """Every frame through the general decoder (no ESP fast path), so that each ESP packet's
        sequence number is seen and kept, up to ESP_KEEP per SPI."""
        self.pipeline.read([self.path], esp_fast=False)
        self.pipeline.finish()

    def _listen(self, event) -> None:
        if isinstance(event, EspSeen):
            seqs = self.esp_seqs.setdefault(event.spi, {})
            if event.seq in seqs or len(seqs) < ESP_KEEP:
                seqs.setdefault(event.seq, []).append((event.time, event.ref))
            return
        if not isinstance(event, MessageSeen):
            return
        seen = event.seen
        msg = seen.msg
        key = hash((msg.version, msg.ispi, msg.rspi, msg.message_id, msg.exchange_type, msg.flags, seen.size,
                    tuple((p.type, p.length, p.body) for p in msg.payloads)))
        sa_key = (msg.version, msg.ispi)
        ck = (sa_key, key)
        n = self._copies[ck] = self._copies.get(ck, 0) + 1
        if len(self._copies) > 64 * KEEP:
            del self._copies[next(iter(self._copies))]
        rec = Msg(self.index, seen.ref, seen.time, sa_key, key, msg.rspi, msg.message_id, msg.exchange_type,
                  seen.sender, seen.request, msg.response, seen.label, seen.size, seen.src, seen.dst, seen.sport,
                  seen.dport, seen.natt, len(seen.fragments), n)
        lst = self.msgs.setdefault(sa_key, [])
        lst.append(rec)
        if len(lst) > 2 * KEEP:
            del lst[KEEP]
            gap = self.gaps.get(sa_key)
            self.gaps[sa_key] = (gap[0] if gap else lst[KEEP - 1].time, lst[KEEP].time)

    @property
    def packets(self) -> int:
        return self.an.stats.packets

    @property
    def first_time(self) -> float | None:
        return self.infos[0].first_time if self.infos else None

    @property
    def last_time(self) -> float | None:
        return self.infos[0].last_time if self.infos else None

    def empty(self) -> bool:
        return self.first_time is None

    def pair_key(self, sa_key) -> tuple | None:
        sa = self.an.sas.get(sa_key)
        if sa is None or sa.initiator is None or sa.responder is None:
            return None
        a, b = sa.initiator[0], sa.responder[0]
        return (a, b) if a <= b else (b, a)

    def ref(self, frame: int) -> int:
        """A frame of this point as a frame_ref naming the point (file index = point index)."""
        return frame_ref(self.index, split_ref(frame)[1])


# -- comparing two neighbouring points ----------------------------------------------------


@dataclass
class CompareFinding(Finding):
    segment: tuple[int, int] | None = None  # the two points it is about


@dataclass
class Direction:
    """One direction of one conversation across one segment: sent at `up`, arriving at `down`."""

    role: str  # "I": initiator -> responder, "R": responder -> initiator
    up: int
    down: int
    src: str = ""
    dst: str = ""
    sent: int = 0
    arrived: int = 0
    lost: list[Msg] = field(default_factory=list)
    duplicated: int = 0
    reordered: int = 0
    not_seen_upstream: list[Msg] = field(default_factory=list)
    outside: int = 0  # sent while the other point was not capturing
    delays: list[float] = field(default_factory=list)
    matched: list[tuple[Msg, Msg]] = field(default_factory=list)  # (upstream, downstream)
    esp: list[dict] = field(default_factory=list)


@dataclass
class Conversation:
    """One peer pair as seen at both points of a segment (addresses differ across NAT)."""

    pairs: dict[int, list[tuple]]  # point -> core peer-pair keys
    sas: list[tuple]
    flows: dict[int, list]  # point -> EspFlow list
    initiator: dict[int, bytes] = field(default_factory=dict)  # point -> initiator address there
    responder: dict[int, bytes] = field(default_factory=dict)
    init_side: int = 0  # the point nearer the initiator
    orientation: str = "assumed"  # how init_side was decided: "timing", "loss", "assumed"
    matches: list[tuple[Msg, Msg]] = field(default_factory=list)  # (at x, at y)
    only: dict[int, list[Msg]] = field(default_factory=dict)  # point -> unmatched records
    directions: dict[str, Direction] = field(default_factory=dict)

    def name(self, point: int) -> str:
        a, b = self.initiator.get(point), self.responder.get(point)
        if a is not None and b is not None and self.pairs.get(point):
            return f"{ip(a)} ⇄ {ip(b)}"
        keys = self.pairs.get(point) or []
        return ", ".join(f"{ip(k[0])} ⇄ {ip(k[1])}" for k in keys) or "not seen"


class Segment:
    """Two neighbouring capture points and everything that went between them."""

    def __init__(self, x: Point, y: Point, ike_port: int, natt_port: int):
        self.x, self.y = x, y
        self.ike_port, self.natt_port = ike_port, natt_port
        self.offset = 0.0  # clock at y minus clock at x
        self.offset_method = "none"
        self.offset_matches = 0
        self.one_way = False
        self.convs: list[Conversation] = []
        self.nat: list[dict] = []
        self.icmp_one_side: list[dict] = []
        self.fragments: list[dict] = []
        self.findings: list[CompareFinding] = []

    @property
    def points(self) -> tuple[int, int]:
        return self.x.index, self.y.index

    def other(self, p: int) -> Point:
        return self.y if p == self.x.index else self.x

    def point(self, p: int) -> Point:
        return self.x if p == self.x.index else self.y

    def to_y(self, p: int, t: float) -> float:
        """A time taken at point p, on the clock of y."""
        return t + self.offset if p == self.x.index else t

    # -- build ---------------------------------------------------------------------

    def run(self, last_segment: bool, first_segment: bool) -> None:
        self._conversations()
        self._clock()
        for conv in self.convs:
            self._match(conv)
        self._refine_clock()
        for conv in self.convs:
            self._match(conv)
            self._orient(conv)
            self._directions(conv)
        self._nat_mappings()
        self._fragments()
        self._icmp()
        self._findings(last_segment, first_segment)

    def _conversations(self) -> None:
        """Peer pairs at the two points joined by the IKE SAs and ESP SPIs they share."""
        parent: dict = {}

        def find(n):
            while parent.setdefault(n, n) != n:
                parent[n] = parent[parent[n]]
                n = parent[n]
            return n

        def union(a, b):
            parent[find(a)] = find(b)

        x, y = self.x, self.y
        for p in (x, y):
            for key in p.an.pairs:
                find((p.index, key))
        for sa_key in set(x.msgs) & set(y.msgs):
            kx, ky = x.pair_key(sa_key), y.pair_key(sa_key)
            if kx and ky:
                union((x.index, kx), (y.index, ky))
        spis: dict[int, list] = defaultdict(list)
        for p in (x, y):
            for f in p.an.esp.flows.values():
                spis[f.spi].append((p.index, (f.src, f.dst) if f.src <= f.dst else (f.dst, f.src)))
        for nodes in spis.values():
            for n in nodes[1:]:
                union(nodes[0], n)
        groups: dict = defaultdict(list)
        for n in list(parent):
            groups[find(n)].append(n)
        for nodes in groups.values():
            pairs: dict[int, list] = {x.index: [], y.index: []}
            for p, key in nodes:
                pairs[p].append(key)
            sas: dict[tuple, float] = {}
            for p in (x, y):
                for sa_key, lst in p.msgs.items():
                    if lst and p.pair_key(sa_key) in pairs[p.index]:
                        sas[sa_key] = min(sas.get(sa_key, lst[0].time), lst[0].time)
            flows = {p.index: [f for f in p.an.esp.flows.values()
                               if ((f.src, f.dst) if f.src <= f.dst else (f.dst, f.src)) in pairs[p.index]]
                     for p in (x, y)}
            if not sas and not flows[x.index] and not flows[y.index]:
                continue
            conv = Conversation(pairs, sorted(sas, key=lambda k: sas[k]), flows)
            for p in (x, y):
                for sa_key in conv.sas:
                    sa = p.an.sas.get(sa_key)
                    if sa is not None and sa.initiator and sa.responder and p.index not in conv.initiator:
                        conv.initiator[p.index], conv.responder[p.index] = sa.initiator[0], sa.responder[0]
            self._esp_roles(conv)
            self.convs.append(conv)

        def start(c: Conversation) -> float:
            ts = [m[0].time for s in c.sas for m in (x.msgs.get(s), y.msgs.get(s)) if m]
            ts += [f.first_time for fl in c.flows.values() for f in fl]
            return min(ts, default=0.0)

        self.convs.sort(key=start)

    def _esp_roles(self, conv: Conversation) -> None:
        """Fill in the end addresses at a point that saw ESP but no IKE of the conversation."""
        x, y = self.x.index, self.y.index
        by_spi = {p: {f.spi: f for f in conv.flows[p]} for p in (x, y)}
        for p, q in ((x, y), (y, x)):
            if p in conv.initiator or not conv.flows[p]:
                continue
            for f in sorted(conv.flows[p], key=lambda h: h.first_time):
                g = by_spi[q].get(f.spi)
                if g is not None and q in conv.initiator:
                    i_to_r = g.src == conv.initiator[q] or g.dst == conv.responder[q]
                    conv.initiator[p], conv.responder[p] = (f.src, f.dst) if i_to_r else (f.dst, f.src)
                    break
            else:  # no IKE anywhere: the source of the first ESP flow plays the initiator
                f = min(conv.flows[p], key=lambda h: h.first_time)
                conv.initiator[p], conv.responder[p] = f.src, f.dst

    # -- clock -----------------------------------------------------------------------

    def _clock(self) -> None:
        diffs: dict[str, list[float]] = {"I": [], "R": []}
        for conv in self.convs:
            for sa_key in conv.sas:
                xs, ys = self.x.msgs.get(sa_key), self.y.msgs.get(sa_key)
                if not xs or not ys:
                    continue
                byy = _by_key(ys)
                for k, a in _by_key(xs).items():
                    b = byy.get(k)
                    if b:
                        a, b = a[:MAX_PAIRS], b[:MAX_PAIRS]
                        diffs[a[0].sender].extend(mb.time - ma.time for ma in a for mb in b)
        centres = {d: _densest(v) for d, v in diffs.items() if v}
        if centres:
            self.offset_method = "ike"
        else:
            centres = self._esp_clock()
            if centres:
                self.offset_method = "esp"
        if centres:
            self.offset = sum(centres.values()) / len(centres)
            self.one_way = len(centres) == 1

    def _esp_clock(self) -> dict[str, float]:
        out: dict[str, list[float]] = {"I": [], "R": []}
        ys = defaultdict(list)
        for f in self.y.an.esp.flows.values():
            ys[f.spi].append(f)
        for conv in self.convs:
            for f in conv.flows[self.x.index]:
                for g in ys.get(f.spi, []):
                    role = "I" if f.src == conv.initiator.get(self.x.index) else "R"
                    if f.seq_min == g.seq_min:
                        out[role].append(g.first_time - f.first_time)
                    if f.seq_max == g.seq_max:
                        out[role].append(g.last_time - f.last_time)
        return {d: statistics.median(v) for d, v in out.items() if v}

    def _refine_clock(self) -> None:
        diffs: dict[str, list[float]] = {"I": [], "R": []}
        for conv in self.convs:
            for a, b in conv.matches:
                diffs[a.sender].append(b.time - a.time)
        medians = {d: statistics.median(v) for d, v in diffs.items() if v}
        if medians:
            self.offset = sum(medians.values()) / len(medians)
            self.one_way = len(medians) == 1
            self.offset_method = "ike"
        self.offset_matches = sum(len(v) for v in diffs.values())

    # -- matching ------------------------------------------------------------------------

    def _match(self, conv: Conversation) -> None:
        conv.matches = []
        conv.only = {self.x.index: [], self.y.index: []}
        for sa_key in conv.sas:
            byx, byy = _by_key(self.x.msgs.get(sa_key, [])), _by_key(self.y.msgs.get(sa_key, []))
            for k in byx.keys() | byy.keys():
                a, b = byx.get(k, []), byy.get(k, [])
                pairs = _pair_copies(a, b, self.offset)
                conv.matches.extend(pairs)
                used_a = {id(p[0]) for p in pairs}
                used_b = {id(p[1]) for p in pairs}
                conv.only[self.x.index].extend(m for m in a if id(m) not in used_a)
                conv.only[self.y.index].extend(m for m in b if id(m) not in used_b)
        conv.matches.sort(key=lambda p: p[0].time)
        for lst in conv.only.values():
            lst.sort(key=lambda m: m.time)

    def _orient(self, conv: Conversation) -> None:
        """Which point is nearer the initiator: transit times, else where packets go missing."""
        x, y = self.x.index, self.y.index
        diffs: dict[str, list[float]] = {"I": [], "R": []}
        for a, b in conv.matches:
            diffs[a.sender].append(b.time - a.time)
        if diffs["I"] and diffs["R"]:
            d = statistics.median(diffs["I"]) - statistics.median(diffs["R"])
            if abs(d) > 2e-5:
                conv.init_side, conv.orientation = (x if d > 0 else y), "timing"
                return
        score = 0
        for p, sign in ((x, 1), (y, -1)):  # IKE goes missing downstream of where it is sent
            for m in conv.only[p]:
                if self._judged(m):
                    score += sign if m.sender == "I" else -sign
        for p, q, sign in ((x, y, 1), (y, x, -1)):  # and so does ESP
            theirs = {f.spi: f for f in conv.flows[q]}
            for f in conv.flows[p]:
                g = theirs.get(f.spi)
                if f.packets > (g.packets if g else 0) and (g is not None or self._flow_judged(p, f)):
                    score += sign if f.src == conv.initiator.get(p) else -sign
        if score:
            conv.init_side, conv.orientation = (x if score > 0 else y), "loss"
        else:
            conv.init_side, conv.orientation = x, "assumed"

    def _judged(self, m: Msg) -> bool:
        """Could the other point have seen this message? (It was capturing then, and that
        stretch of the IKE SA is not elided at either point.)"""
        q = self.other(m.point)
        t = m.time + self.offset if m.point == self.x.index else m.time - self.offset  # on q's clock
        own = self.point(m.point).gaps.get(m.sa)
        if own and own[0] < m.time < own[1]:
            return False
        theirs = q.gaps.get(m.sa)
        if theirs and theirs[0] - EDGE <= t <= theirs[1] + EDGE:
            return False
        if q.empty():
            return True
        if t < q.first_time - EDGE:
            return False
        if t > q.last_time + EDGE:
            return m.copies > 1 or self._resent(m)  # re-sent: its sender got no answer, so it counts
        return True

    def _flow_judged(self, p: int, f) -> bool:
        q = self.other(p)
        if q.empty():
            return True
        t0, t1 = self.to_y(p, f.first_time), self.to_y(p, f.last_time)
        return not (t1 < self.to_y(q.index, q.first_time) - EDGE or t0 > self.to_y(q.index, q.last_time) + EDGE)

    def _resent(self, m: Msg) -> bool:
        lst = self.point(m.point).msgs.get(m.sa, [])
        return any(o.key == m.key and o.time > m.time for o in lst[-64:])

    def _esp_pairs(self, conv: Conversation):
        """(role, flow at its upstream point, flow with that SPI downstream or None) per ESP SA."""
        x, y = self.x.index, self.y.index
        seen = set()
        for p in (x, y):
            q = y if p == x else x
            for f in conv.flows[p]:
                if f.spi in seen:
                    continue
                role = "I" if (f.src == conv.initiator.get(p) or f.dst == conv.responder.get(p)) else "R"
                up = conv.init_side if role == "I" else (y if conv.init_side == x else x)
                g = next((h for h in conv.flows[q] if h.spi == f.spi), None)
                if p != up:
                    if g is None:
                        continue  # seen downstream only: nothing was sent upstream to compare
                    f, g = g, f
                seen.add(f.spi)
                yield role, f, g

    def _directions(self, conv: Conversation) -> None:
        x, y = self.x.index, self.y.index
        other = {x: y, y: x}
        for role in ("I", "R"):
            up = conv.init_side if role == "I" else other[conv.init_side]
            d = Direction(role, up, other[up])
            a, b = (conv.initiator, conv.responder) if role == "I" else (conv.responder, conv.initiator)
            d.src = ip(a.get(up, a.get(other[up], b""))) or "?"
            d.dst = ip(b.get(up, b.get(other[up], b""))) or "?"
            conv.directions[role] = d
        for mx, my in conv.matches:
            d = conv.directions[mx.sender]
            u, w = (mx, my) if d.up == x else (my, mx)
            d.sent += 1
            d.arrived += 1
            d.matched.append((u, w))
            d.delays.append(self.to_y(w.point, w.time) - self.to_y(u.point, u.time))
        for p in (x, y):
            for m in conv.only[p]:
                d = conv.directions[m.sender]
                judged = self._judged(m)
                if p == d.up:
                    if judged:
                        d.sent += 1
                        d.lost.append(m)
                    else:
                        d.outside += 1
                elif judged:
                    if any(o.key == m.key for o in self.point(d.up).msgs.get(m.sa, [])):
                        d.duplicated += 1
                    else:
                        d.not_seen_upstream.append(m)
        for d in conv.directions.values():
            top = float("-inf")
            for u, _ in sorted(d.matched, key=lambda uw: uw[1].time):
                if u.time < top:
                    d.reordered += 1
                top = max(top, u.time)
            d.matched.sort(key=lambda uw: uw[0].time)
        for role, f, g in self._esp_pairs(conv):
            d = conv.directions[role]
            d.esp.append(self._esp_compare(d, f, g))

    def _esp_compare(self, d: Direction, f, g) -> dict:
        down = self.point(d.down)
        entry = {"spi": f.spi, "flow_up": f, "flow_down": g, "sent": f.packets, "arrived": g.packets if g else 0,
                 "duplicated": 0, "reordered": 0, "lost": 0, "judged": True, "note": ""}
        if down.empty():
            entry["lost"] = f.packets - f.duplicates
            return entry
        t0, t1 = self.to_y(d.up, f.first_time), self.to_y(d.up, f.last_time)
        q0, q1 = self.to_y(d.down, down.first_time), self.to_y(d.down, down.last_time)
        within = t0 >= q0 - EDGE and t1 <= q1 + EDGE
        if g is None:
            if t1 < q0 - EDGE or t0 > q1 + EDGE:
                entry["judged"], entry["note"] = False, "sent while the other point was not capturing"
            else:
                entry["lost"] = f.packets - f.duplicates
                if not within:
                    entry["note"] = "partly sent while the other point was not capturing"
            return entry
        entry["duplicated"] = max(0, g.duplicates - f.duplicates)
        entry["reordered"] = max(0, g.reordered - f.reordered)
        if within:
            entry["lost"] = max(0, (f.packets - f.duplicates) - (g.packets - g.duplicates))
        else:  # only the holes inside the range seen downstream can be judged
            entry["lost"] = max(0, g.lost - f.lost)
            entry["note"] = "the flow runs beyond the other capture: only sequence gaps within its range are judged"
        self._esp_packets(d, entry, q0, q1)
        return entry

    def _esp_packets(self, d: Direction, entry: dict, q0: float, q1: float) -> None:
        """Packet by packet, by SPI and sequence number, when both points kept every sequence number:
        which were sent and never arrived (while the other point was capturing), which arrived more
        often than they were sent, and the transit time of each."""
        up, down = self.point(d.up).esp_seqs.get(entry["spi"]), self.point(d.down).esp_seqs.get(entry["spi"], {})
        if up is None or len(up) >= ESP_KEEP or len(down) >= ESP_KEEP:
            return
        lost, transit = [], []
        for seq, copies in up.items():
            t = self.to_y(d.up, copies[0][0])
            if seq in down:
                transit.append(self.to_y(d.down, down[seq][0][0]) - t)
            elif q0 + EDGE <= t <= q1 - EDGE:  # clearly while the other point was capturing
                lost.append((seq, copies[0][1]))
        lost.sort()
        entry["lost"] = len(lost)
        entry["lost_seq"] = [s for s, _ in lost[:20]]
        entry["lost_frames"] = [split_ref(r)[1] for _, r in lost[:20]]
        entry["duplicated"] = sum(max(0, len(c) - len(up.get(s, ()))) for s, c in down.items())
        entry["transit"] = transit

    # -- NAT, fragments, ICMP --------------------------------------------------------

    def _nat_mappings(self) -> None:
        """Endpoint translations between the points: for each end, its address:port at the point
        nearer to it (inside) and at the other point (outside)."""
        seen: dict[tuple, dict] = {}
        x = self.x.index
        for ci, conv in enumerate(self.convs):
            far = self.y.index if conv.init_side == x else x
            near = {"I": conv.init_side, "R": far}

            def note(endpoint, inside, outside, t, frames):
                if inside == outside:
                    return
                m = seen.setdefault((ci, endpoint, inside), {"conv": ci, "endpoint": endpoint, "inside": inside,
                                                             "outside": {}, "kind": self._kind(inside[1])})
                o = m["outside"].setdefault(outside, {"first_time": t, "last_time": t, "count": 0, "frames": frames})
                o["first_time"], o["last_time"] = min(o["first_time"], t), max(o["last_time"], t)
                o["count"] += 1

            def src(h):
                return h.src, h.sport

            def dst(h):
                return h.dst, h.dport

            for mx, my in conv.matches:
                by = {mx.point: mx, my.point: my}
                sender = mx.sender
                for role, addr in ((sender, src), ("R" if sender == "I" else "I", dst)):
                    inner, outer = by[near[role]], by[self.other(near[role]).index]
                    note(role, addr(inner), addr(outer), self.to_y(inner.point, inner.time),
                         [self.point(inner.point).ref(inner.ref), self.point(outer.point).ref(outer.ref)])
            for role, f, g in self._esp_pairs(conv):
                if g is None or f.encap != "udp":
                    continue
                up = conv.directions[role].up
                by = {up: f, self.other(up).index: g}
                for r, addr in ((role, src), ("R" if role == "I" else "I", dst)):
                    inner, outer = by[near[r]], by[self.other(near[r]).index]
                    note(r, addr(inner), addr(outer), self.to_y(near[r], inner.first_time),
                         [self.point(near[r]).ref(inner.first_frame),
                          self.other(near[r]).ref(outer.first_frame)])
        for m in seen.values():
            m["outside"] = sorted(m["outside"].items(), key=lambda kv: kv[1]["first_time"])
            self.nat.append(m)

    def _kind(self, port: int):
        return 500 if port == self.ike_port else 4500 if port == self.natt_port else None

    def _fragments(self) -> None:
        """IP datagrams that never completed at a point, tied to the IKE message they most likely were
        (a fragmented message of about the same time at the other point that is missing here)."""
        for p in (self.x, self.y):
            q = self.other(p.index)
            for d in p.an.reassembler.incomplete:
                t = self.to_y(p.index, d["first_time"])
                cands = [m for conv in self.convs for m in conv.only.get(q.index, [])
                         if m.fragments and abs(self.to_y(q.index, m.time) - t) < WINDOW]
                best = min(cands, key=lambda m: abs(self.to_y(q.index, m.time) - t), default=None)
                self.fragments.append({"point": p.index, "frames": [p.ref(r) for r in d["frames"]], "src": d["src"],
                                       "dst": d["dst"], "bytes": d["bytes"], "has_first": d["has_first"],
                                       "fragments": d["fragments"],
                                       "first_time": d["first_time"], "message": best})

    def _icmp(self) -> None:
        """ICMP errors seen at one point with no counterpart (same error, same IKE SA, same time) at the other."""
        events = {p.index: [e for pair in p.an.pairs.values() for e in pair.icmp] for p in (self.x, self.y)}
        used: set[int] = set()
        for e in events[self.x.index]:
            best = None
            for f in events[self.y.index]:
                if id(f) in used or f.text != e.text or (e.sa and f.sa and e.sa != f.sa):
                    continue
                delta = abs(f.time - self.offset - e.time)
                if delta <= WINDOW and (best is None or delta < best[0]):
                    best = (delta, f)
            if best:
                used.add(id(best[1]))
                used.add(id(e))
        for p in (self.x, self.y):
            for e in events[p.index]:
                if id(e) not in used:
                    self.icmp_one_side.append({"point": p.index, "event": e})

    # -- findings ----------------------------------------------------------------------

    def _findings(self, last_segment: bool, first_segment: bool) -> None:
        out = self.findings
        for p in (self.x, self.y):
            if p.empty():
                out.append(CompareFinding(
                    WARNING, "capture-empty", "capture",
                    f"{p.name} holds no packets: everything sent towards it was lost before it, or it captured "
                    "the wrong interface or filter",
                    "Check the capture point with the same tcpdump filter while the peers negotiate.",
                    segment=self.points))
        for conv in self.convs:
            pair = (conv.pairs[conv.init_side] or conv.pairs[self.other(conv.init_side).index] or [None])[0]
            for d in conv.directions.values():
                self._lost_findings(d, pair)
                self._esp_findings(d, pair)
                if (d.down == self.y.index and last_segment) or (d.down == self.x.index and first_segment):
                    self._unanswered(conv, d, pair)
        for m in self.nat:
            if len(m["outside"]) > 1:
                conv = self.convs[m["conv"]]
                chain = " → ".join(f"{_ep(o)} from {_clock(v['first_time'])}" for o, v in m["outside"])
                out.append(CompareFinding(
                    WARNING, "nat-mapping-changed", "NAT-T",
                    f"the NAT between {self.x.name} and {self.y.name} changed the mapping of "
                    f"{'initiator' if m['endpoint'] == 'I' else 'responder'} {_ep(m['inside'])}: {chain}",
                    "A NAT mapping that changes mid-SA breaks NAT-T; shorten the keepalive interval "
                    "(keep_alive / nat_keepalive) below the NAT's UDP timeout.",
                    [v["frames"][0] for _, v in m["outside"]],
                    pair=(conv.pairs[conv.init_side] or [None])[0], segment=self.points))
        for e in self.icmp_one_side:
            ev, p = e["event"], self.point(e["point"])
            out.append(CompareFinding(
                WARNING, "icmp-one-side", "IP",
                f"ICMP {ev.text} from {ip(ev.src)} about {ip(ev.about[0])}:{ev.about[1]} → {ip(ev.about[2])}:"
                f"{ev.about[3]} seen at {p.name} only (frame {split_ref(ev.ref)[1]}): sent by a hop between the "
                "capture points, or lost between them",
                "An ICMP error only one capture point sees was generated by a hop between the points (a router "
                "or firewall) or dropped on its way.", [p.ref(ev.ref)], segment=self.points))
        for fr in self.fragments:
            p, m = self.point(fr["point"]), fr["message"]
            about = (f" ({m.label} frame {split_ref(m.ref)[1]} at {self.point(m.point).name}, {m.fragments} fragments)"
                     if m is not None else "")
            out.append(CompareFinding(
                ERROR if fr["has_first"] else WARNING, "fragments-incomplete", "IP",
                f"an IP-fragmented datagram {ip(fr['src'])} → {ip(fr['dst'])} arrived incomplete at {p.name}: "
                f"{fr['fragments']} fragment(s), {fr['bytes']} bytes{about}",
                "Fragments are dropped on the path; lower the MTU or enable IKE fragmentation (fragmentation=yes).",
                fr["frames"][:10], ["fragments-dropped"], segment=self.points))

    def _where(self, d: Direction) -> str:
        return f"between the capture points ({self.point(d.up).name} → {self.point(d.down).name})"

    def _lost_findings(self, d: Direction, pair) -> None:
        if not d.lost:
            return
        up, down = self.point(d.up), self.point(d.down)
        arrived_keys = {(u.sa, u.key) for u, _ in d.matched}
        groups: dict[tuple, list[Msg]] = {}
        for m in d.lost:
            groups.setdefault((m.sa, m.key), []).append(m)
        last_arrival = max((self.to_y(w.point, w.time) for _, w in d.matched), default=None)

        def natt(u: Msg) -> bool:
            return u.natt or self.natt_port in (u.dport, u.sport)

        natt_arrived = any(natt(u) for u, _ in d.matched)
        plain_arrived = any(not natt(u) for u, _ in d.matched)
        small_arrived = any(not u.fragments for u, _ in d.matched)
        whole: dict[tuple, list] = defaultdict(list)  # (causes, recovered) -> groups of which no copy arrived
        partial: list[list[Msg]] = []
        for key, ms in groups.items():
            if key in arrived_keys:
                partial.append(ms)
                continue
            m = ms[0]
            fragmented = any(x.fragments for x in ms) or m.size > MTU_PAYLOAD
            if not m.request or m.response:
                causes = ["reply-path-lost"]
            elif fragmented and (small_arrived or not d.matched):
                causes = ["fragments-dropped"] + (["udp4500-blocked"] if natt(m) and not natt_arrived else [])
            elif natt(m) and not natt_arrived and plain_arrived:
                causes = ["udp4500-blocked"]
            else:
                causes = ["path-blocked"]
            recovered = last_arrival is not None and last_arrival > self.to_y(d.up, ms[-1].time)
            whole[(tuple(causes), recovered)].append(ms)
        for (causes, recovered), gs in whole.items():
            msgs = [m for ms in gs for m in ms]
            incomplete = [f for f in self.fragments if f["point"] == d.down and f["message"] in msgs]
            extra = ""
            if "fragments-dropped" in causes:
                extra = (f"; {len(incomplete)} arrived as incomplete IP fragments" if incomplete else
                         f"; none of their IP fragments reached {down.name}")
            elif "udp4500-blocked" in causes:
                extra = f"; UDP {self.ike_port} got through, nothing on UDP {self.natt_port} did"
            kind = "answer" if causes[0] == "reply-path-lost" else "request"
            self.findings.append(CompareFinding(
                WARNING if recovered else ERROR, "lost-between-points", gs[0][0].label,
                f"{d.src} → {d.dst}: {'; '.join(self._describe(ms) for ms in gs)}, never arrived at {down.name}: "
                f"{kind}s lost {self._where(d)}{extra}{', later messages got through' if recovered else ''}",
                _HINT[causes[0]].format(up=up.name, down=down.name, natt=self.natt_port, ike=self.ike_port),
                [up.ref(m.ref) for m in msgs] + [f["frames"][0] for f in incomplete], list(causes), pair=pair,
                segment=self.points))
        if partial:
            what = "; ".join(f"{len(ms)} cop{'y' if len(ms) == 1 else 'ies'} of {ms[0].label}" for ms in partial)
            self.findings.append(CompareFinding(
                WARNING, "lost-between-points", partial[0][0].label,
                f"{d.src} → {d.dst}: {what} lost {self._where(d)}; another copy arrived",
                "Occasional loss between the points; retransmissions covered it.",
                [up.ref(m.ref) for ms in partial for m in ms], [], pair=pair, segment=self.points))

    def _describe(self, ms: list[Msg]) -> str:
        m = ms[0]
        port = f"UDP {m.dport}" + (" after the non-ESP marker" if m.natt else "")
        frag = f", {m.fragments} IP fragments" if m.fragments else ""
        return (f"{m.label} ({m.size} bytes, {port}{frag}) sent {times(len(ms))} at "
                f"{self.point(m.point).name} (frame{'s' if len(ms) > 1 else ''} "
                f"{', '.join(str(split_ref(x.ref)[1]) for x in ms[:8])}{'…' if len(ms) > 8 else ''})")

    def _esp_findings(self, d: Direction, pair) -> None:
        up, down = self.point(d.up), self.point(d.down)
        for e in d.esp:
            if not e["judged"] or not e["lost"]:
                continue
            f = e["flow_up"]
            if e["arrived"] == 0:
                self.findings.append(CompareFinding(
                    ERROR, "lost-between-points", "ESP",
                    f"ESP SPI {f.spi:08x} {d.src} → {d.dst}: {f.packets} packets sent at {up.name} "
                    f"(frames {split_ref(f.first_frame)[1]}–{split_ref(f.last_frame)[1]}), none arrived at "
                    f"{down.name}: ESP lost {self._where(d)}" + (f" ({e['note']})" if e["note"] else ""),
                    f"Allow {'UDP ' + str(f.dport) if f.encap == 'udp' else 'IP protocol 50 (ESP)'} from {d.src} "
                    f"to {d.dst} on the hops between {up.name} and {down.name}.",
                    [up.ref(f.first_frame), up.ref(f.last_frame)], ["esp-blocked"], pair=pair, segment=self.points))
            else:
                g = e["flow_down"]
                self.findings.append(CompareFinding(
                    WARNING, "lost-between-points", "ESP",
                    f"ESP SPI {f.spi:08x} {d.src} → {d.dst}: {e['lost']} of {f.packets} packets lost {self._where(d)} "
                    f"(sequence numbers {f.seq_min}–{f.seq_max} sent, {g.seq_min}–{g.seq_max} arrived)",
                    "Packet loss on the path between the points (congestion, MTU, a rate limit).",
                    [up.ref(f.first_frame), down.ref(g.first_frame)], [], pair=pair, segment=self.points))

    def _unanswered(self, conv: Conversation, d: Direction, pair) -> None:
        """Requests that reached the capture point nearest the peer, re-sent, never answered there."""
        down = self.point(d.down)
        at_down = {sa_key: down.msgs.get(sa_key, []) for sa_key in conv.sas}
        groups: dict[tuple, list[Msg]] = {}
        for _, w in d.matched:
            if w.request and not w.response:
                groups.setdefault((w.sa, w.key), []).append(w)
        for m in conv.only.get(d.down, []):
            if (m.sa, m.key) in groups:
                groups[(m.sa, m.key)].append(m)
        hits = []
        for (sa_key, _), ws in groups.items():
            ws.sort(key=lambda m: m.time)
            first = ws[0]
            if len(ws) < 2 and first.copies < 2:
                continue  # not re-sent: its sender did not wait for an answer
            answered = any(o.sender != first.sender and o.time >= first.time and
                           (o.message_id == first.message_id or first.sa[0] == 1) for o in at_down[sa_key])
            if not answered:
                hits.append(ws)
        if not hits:
            return
        peer = conv.responder.get(d.down) if d.role == "I" else conv.initiator.get(d.down)
        icmp = [e for k in conv.pairs.get(d.down, []) for e in down.an.pairs[k].icmp
                if peer is not None and e.src == peer]
        causes = ["peer-down"] if any("unreachable" in e.text for e in icmp) else ["peer-ignores"]
        first = hits[0][0]
        if causes == ["peer-ignores"] and first.label in ("INFO", "INFORMATIONAL") and any(
                o.sender != first.sender and o.time < first.time for o in at_down.get(first.sa, [])):
            causes = ["peer-dead", "peer-ignores"]  # it answered before: a liveness check nobody answers now
        what = "; ".join(f"{ws[0].label} arrived {times(len(ws))} (frame{'s' if len(ws) > 1 else ''} "
                         f"{', '.join(str(split_ref(m.ref)[1]) for m in ws[:8])})" for ws in hits)
        because = (f"; the peer's host answered with ICMP {icmp[0].text}" if causes == ["peer-down"] else
                   "; nothing came back, not even ICMP")
        self.findings.append(CompareFinding(
            ERROR, "arrived-unanswered", first.label,
            f"{d.src} → {d.dst}: {what} at {down.name}, re-sent and never answered there: the requests got through "
            f"the capture points; they are lost beyond {down.name}, or the peer does not answer{because}",
            (f"Is the IKE daemon running on {ip(peer) if peer else 'the peer'}?" if causes == ["peer-down"] else
             "Look for these messages in the peer's log, or capture on the peer itself: if they arrive there, the "
             "peer ignores them (no matching connection, a hung daemon)."),
            [down.ref(m.ref) for ws in hits for m in ws] + [down.ref(e.ref) for e in icmp[:4]], causes, pair=pair,
            segment=self.points))


_HINT = {
    "path-blocked": "Something between {up} and {down} drops these packets: check the firewall/ACL rules for "
                    "UDP {ike} and {natt} on the hops between the two capture points.",
    "udp4500-blocked": "Allow UDP {natt} (NAT-T) between {up} and {down}; UDP {ike} passes.",
    "fragments-dropped": "A hop between {up} and {down} drops IP fragments: enable IKE fragmentation "
                         "(fragmentation=yes / force), or lower the MTU, or let fragments through.",
    "reply-path-lost": "The answers are lost on the way back between {up} and {down}: check the return path "
                       "(asymmetric routing, a stateful firewall, the NAT's reverse mapping).",
}


def _by_key(msgs: list[Msg]) -> dict[int, list[Msg]]:
    out: dict[int, list[Msg]] = {}
    for m in msgs:
        out.setdefault(m.key, []).append(m)
    return out


def _densest(values: list[float]) -> float:
    """The median of the densest run of values no wider than 2 * CLUSTER."""
    v = sorted(values)
    best, start = (0, 0, 0), 0
    for end in range(len(v)):
        while v[end] - v[start] > 2 * CLUSTER:
            start += 1
        if end - start + 1 > best[0]:
            best = (end - start + 1, start, end)
    return statistics.median(v[best[1]: best[2] + 1])


def _pair_copies(a: list[Msg], b: list[Msg], offset: float) -> list[tuple[Msg, Msg]]:
    """Identical copies at the two points, paired nearest in time (after the offset), each used once."""
    if not a or not b:
        return []
    if len(a) * len(b) > MAX_PAIRS * MAX_PAIRS:  # many copies: first free one within the window
        out, used = [], set()
        bt = [m.time - offset for m in b]
        for m in a:
            for k in range(bisect_left(bt, m.time - WINDOW), bisect_right(bt, m.time + WINDOW)):
                if k not in used:
                    used.add(k)
                    out.append((m, b[k]))
                    break
        return out
    cand = sorted((abs(mb.time - offset - ma.time), i, j) for i, ma in enumerate(a) for j, mb in enumerate(b))
    ua, ub, out = set(), set(), []
    for delta, i, j in cand:
        if delta > WINDOW:
            break
        if i in ua or j in ub:
            continue
        ua.add(i)
        ub.add(j)
        out.append((a[i], b[j]))
    return out


def _ep(ep) -> str:
    a = ip(ep[0])
    return f"[{a}]:{ep[1]}" if ":" in a else f"{a}:{ep[1]}"


def _clock(t: float) -> str:
    """HH:MM:SS.mmm (UTC), or the raw epoch seconds when no date can hold `t`."""
    import time as _t

    try:
        return _t.strftime("%H:%M:%S", _t.gmtime(t)) + f".{int((t % 1) * 1000):03d}"
    except (OverflowError, OSError, ValueError):
        return f"{t:.3f} s"


# -- the whole comparison ----------------------------------------------------------------


class Comparison:
    """Captures along a path, point by point; `segments[i]` compares point i with point i+1."""

    def __init__(self, paths: list[str], ike_port: int = 500, natt_port: int = 4500, limits: Limits = DEFAULT):
        self.points = [Point(i, p, ike_port, natt_port, limits) for i, p in enumerate(paths)]
        self.ike_port, self.natt_port = ike_port, natt_port
        self.segments: list[Segment] = []

    def run(self) -> "Comparison":
        for p in self.points:
            p.read()
        n = len(self.points)
        for i in range(n - 1):
            seg = Segment(self.points[i], self.points[i + 1], self.ike_port, self.natt_port)
            seg.run(last_segment=i == n - 2, first_segment=i == 0)
            self.segments.append(seg)
        return self

    def offsets(self) -> list[float]:
        """Clock of each point minus the clock of the first."""
        out = [0.0]
        for s in self.segments:
            out.append(out[-1] + s.offset)
        return out

    def findings(self) -> list[CompareFinding]:
        seen, out = set(), []
        for f in (f for s in self.segments for f in s.findings):
            k = (f.code, f.summary)  # an empty middle point is reported by both of its segments
            if k not in seen:
                seen.add(k)
                out.append(f)
        order = {ERROR: 0, WARNING: 1, INFO: 2}
        out.sort(key=lambda f: (order[f.severity], f.segment or (0, 0), min(f.frames) if f.frames else 0))
        return out


# -- JSON ---------------------------------------------------------------------------------


def _frame(ref: int) -> list[int]:
    p, n = split_ref(ref)
    return [p, n]


def _msg_json(seg: Segment, m: Msg) -> dict:
    return {"label": m.label, "ispi": m.sa[1].hex(), "rspi": m.rspi.hex(), "message_id": m.message_id,
            "exchange_type": m.exchange_type, "sender": "initiator" if m.sender == "I" else "responder",
            "request": m.request, "size": m.size, "time": m.time, "frame": _frame(seg.point(m.point).ref(m.ref)),
            "src": ip(m.src), "sport": m.sport, "dst": ip(m.dst), "dport": m.dport, "natt": m.natt,
            "ip_fragments": m.fragments}


def _delay(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _esp_json(e: dict, ref_up, ref_down) -> dict:
    f, g = e["flow_up"], e["flow_down"]
    return {"spi": f"{e['spi']:08x}", "sent": e["sent"], "arrived": e["arrived"], "lost": e["lost"],
            "duplicated": e["duplicated"], "reordered": e["reordered"], "judged": e["judged"],
            "note": e["note"] or None, "seq_sent": [f.seq_min, f.seq_max],
            "seq_arrived": [g.seq_min, g.seq_max] if g else None,
            "frames_sent": [_frame(ref_up(f.first_frame)), _frame(ref_up(f.last_frame))],
            "frames_arrived": [_frame(ref_down(g.first_frame)), _frame(ref_down(g.last_frame))] if g else None,
            "lost_seq": e.get("lost_seq"), "lost_frames": e.get("lost_frames"),
            "transit": _delay(e["transit"]) if e.get("transit") else None}


def build(cmp: Comparison) -> dict:
    """The JSON document (schema 1, kind "compare"), documented in README.md."""
    offsets = cmp.offsets()
    doc = {
        "schema": 1,
        "kind": "compare",
        "tool": {"name": "ikeflow", "version": __version__},
        "points": [{"index": p.index, "file": p.path, "packets": p.packets, "first_time": p.first_time,
                    "last_time": p.last_time, "clock_offset": offsets[p.index],
                    "warning": p.infos[0].warning if p.infos else None, "stats": vars(p.an.stats).copy()}
                   for p in cmp.points],
        "clock_offset": cmp.segments[0].offset if cmp.segments else None,
        "segments": [{"points": list(s.points), "clock_offset": s.offset, "method": s.offset_method,
                      "matches": s.offset_matches, "one_way": s.one_way} for s in cmp.segments],
        "pairs": [],
        "nat_mappings": [],
        "fragments_incomplete": [],
        "icmp_one_side": [],
    }
    for s in cmp.segments:
        for conv in s.convs:
            dirs = []
            for d in conv.directions.values():
                ref_up, ref_down = s.point(d.up).ref, s.point(d.down).ref
                dirs.append({
                    "direction": "initiator_to_responder" if d.role == "I" else "responder_to_initiator",
                    "from": d.src, "to": d.dst, "sent_at": d.up, "arrives_at": d.down,
                    "ike": {"sent": d.sent, "arrived": d.arrived, "lost": [_msg_json(s, m) for m in d.lost],
                            "duplicated": d.duplicated, "reordered": d.reordered,
                            "not_seen_upstream": [_msg_json(s, m) for m in d.not_seen_upstream],
                            "outside_other_capture": d.outside, "delay": _delay(d.delays),
                            "matched": [[_frame(ref_up(u.ref)), _frame(ref_down(w.ref))]
                                        for u, w in d.matched[:MAX_LISTED]]},
                    "esp": [_esp_json(e, ref_up, ref_down) for e in d.esp],
                })
            doc["pairs"].append({
                "segment": list(s.points),
                "at": [{"point": p, "initiator": ip(conv.initiator[p]) if p in conv.initiator else None,
                        "responder": ip(conv.responder[p]) if p in conv.responder else None,
                        "peers": [[ip(a), ip(b)] for a, b in conv.pairs[p]]} for p in s.points],
                "initiator_side": conv.init_side, "orientation": conv.orientation,
                "ike_sas": [k[1].hex() for k in conv.sas],
                "directions": dirs,
            })
        for m in s.nat:
            conv = s.convs[m["conv"]]
            near = conv.init_side if m["endpoint"] == "I" else s.other(conv.init_side).index
            doc["nat_mappings"].append({
                "segment": list(s.points), "endpoint": "initiator" if m["endpoint"] == "I" else "responder",
                "inside_point": near, "inside": _ep(m["inside"]), "port": m["kind"],
                "outside": [{"address": _ep(o), "first_time": v["first_time"], "last_time": v["last_time"],
                             "messages": v["count"], "frames": [_frame(r) for r in v["frames"]]}
                            for o, v in m["outside"]],
                "changed": len(m["outside"]) > 1,
            })
        for fr in s.fragments:
            m = fr["message"]
            doc["fragments_incomplete"].append({
                "segment": list(s.points), "point": fr["point"], "frames": [_frame(r) for r in fr["frames"]],
                "src": ip(fr["src"]), "dst": ip(fr["dst"]), "bytes": fr["bytes"], "has_first": fr["has_first"],
                "time": fr["first_time"], "message": _msg_json(s, m) if m else None})
        for e in s.icmp_one_side:
            ev = e["event"]
            doc["icmp_one_side"].append({
                "segment": list(s.points), "point": e["point"], "frame": _frame(s.point(e["point"]).ref(ev.ref)),
                "time": ev.time, "from": ip(ev.src), "error": ev.text,
                "about": {"src": ip(ev.about[0]), "sport": ev.about[1], "dst": ip(ev.about[2]), "dport": ev.about[3]},
                "ispi": ev.sa[1].hex() if ev.sa else None})
    doc["findings"] = [{"severity": f.severity, "code": f.code, "at": f.at, "causes": f.causes,
                        "frames": [_frame(r) for r in f.frames], "summary": f.summary, "hint": f.hint,
                        "ispi": f.sa.ispi.hex() if f.sa else None,
                        "pair": [ip(a) for a in f.pair] if f.pair else None,
                        "segment": list(f.segment) if f.segment else None} for f in cmp.findings()]
    return doc


# -- terminal -------------------------------------------------------------------------------


def render(console, cmp: Comparison) -> None:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from ikeflow.render.read_terminal import STYLE

    offsets = cmp.offsets()
    console.print(Text("ikeflow compare " + " ".join(p.path for p in cmp.points), style="bold"))
    t = Table(box=None, pad_edge=False)
    for col in ("point", "file", "packets", "IKE", "ESP", "first", "last", "clock offset"):
        t.add_column(col)
    for p in cmp.points:
        s = p.an.stats
        t.add_row(f"#{p.index + 1}", p.path, str(s.packets), str(s.ike), str(s.esp),
                  _clock(p.first_time) if p.first_time is not None else "—",
                  _clock(p.last_time) if p.last_time is not None else "—",
                  "reference" if p.index == 0 else f"{offsets[p.index] * 1000:+.3f} ms")
    console.print(t)
    for seg in cmp.segments:
        how = {"ike": f"from {seg.offset_matches} matched IKE messages", "esp": "from ESP first/last times",
               "none": "nothing matched: assumed 0"}[seg.offset_method]
        console.print(Text(f"\n#{seg.x.index + 1} {seg.x.name} → #{seg.y.index + 1} {seg.y.name}: clock offset "
                           f"{seg.offset * 1000:+.3f} ms ({how}"
                           f"{'; one direction only, so it includes the transit time' if seg.one_way else ''})",
                           style="bold"))
        if not seg.convs:
            console.print("No IKE or ESP traffic at either point.")
        for conv in seg.convs:
            body = [_dir_table(seg, conv), _ladder(seg, conv)]
            nat = [m for m in seg.nat if seg.convs[m["conv"]] is conv]
            if nat:
                body.append(Text("NAT between the points: " + "; ".join(
                    f"{'initiator' if m['endpoint'] == 'I' else 'responder'} {_ep(m['inside'])} → "
                    + " then ".join(_ep(o) for o, _ in m["outside"])
                    + (f" (UDP {m['kind']})" if m["kind"] else "") for m in nat)))
            keys = conv.pairs[seg.x.index] + conv.pairs[seg.y.index]
            bad = any(f.severity == ERROR and f.pair in keys for f in seg.findings)
            title = f"#{seg.x.index + 1}: {conv.name(seg.x.index)}  |  #{seg.y.index + 1}: {conv.name(seg.y.index)}"
            console.print(Panel(Group(*body), title=Text(title, style="bold red" if bad else "bold"),
                                title_align="left"))
    found = cmp.findings()
    if not found:
        console.print(Text("No findings: everything sent at one point arrived at the other.", style="green"))
        return
    console.print(Text("Findings", style="bold"))
    for f in found:
        frames = ", ".join(f"#{split_ref(r)[0] + 1}:{split_ref(r)[1]}" for r in f.frames[:8])
        frames = f" (frames {frames}{'…' if len(f.frames) > 8 else ''})" if frames else ""
        causes = f" Causes, most likely first: {', '.join(f.causes)}." if f.causes else ""
        console.print(Text.assemble((f"{f.severity.upper():8}", STYLE[f.severity]),
                                    f"{f.code} [{f.at}]: {f.summary}{frames}.{causes}"))
        if f.hint and f.severity != INFO:
            console.print(Text(f"         → {f.hint}", style="dim"))


def _dir_table(seg: Segment, conv: Conversation):
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for col in ("direction (sent at → arrives at)", "IKE", "ESP", "transit ms (min–max)"):
        t.add_column(col)

    def counts(sent, arrived, lost, dup=0, reord=0):
        text = f"{sent} sent, {arrived} arrived" + (f", {lost} lost" if lost else "")
        return text + (f", {dup} dup" if dup else "") + (f", {reord} reordered" if reord else "")

    for d in conv.directions.values():
        delay = (f"{statistics.median(d.delays) * 1000:.2f} ({min(d.delays) * 1000:.2f}–{max(d.delays) * 1000:.2f})"
                 if d.delays else "")
        esp = counts(sum(e["sent"] for e in d.esp), sum(e["arrived"] for e in d.esp), sum(e["lost"] for e in d.esp),
                     sum(e["duplicated"] for e in d.esp), sum(e["reordered"] for e in d.esp)) if d.esp else ""
        t.add_row(f"{d.src} → {d.dst} (#{d.up + 1} → #{d.down + 1})",
                  counts(d.sent, d.arrived, len(d.lost), d.duplicated, d.reordered), esp, delay)
    return t


def _ladder(seg: Segment, conv: Conversation):
    """Two columns of arrivals: each IKE message at the first point and at the second, lost ones marked."""
    from rich.table import Table
    from rich.text import Text

    x, y = seg.x.index, seg.y.index
    lost = {id(m) for d in conv.directions.values() for m in d.lost}

    def cell(m: Msg) -> Text:
        label = (m.label + (" (again)" if m.copies > 1 else "")
                 + (f" :{m.dport}" if m.natt or m.dport != seg.ike_port else "")
                 + (f" [{m.fragments} IP frags]" if m.fragments else ""))
        arrow = f"──{label}──▶" if m.sender == "I" else f"◀──{label}──"
        return Text(f"{split_ref(m.ref)[1]:>5}  {arrow}")

    rows = []  # (time on x's clock, cell at x, cell at y, transit)
    for a, b in conv.matches:
        up = conv.directions[a.sender].up
        d = seg.to_y(b.point, b.time) - seg.to_y(a.point, a.time)
        rows.append((a.time, cell(a), cell(b), f"{(d if up == x else -d) * 1000:+.2f} ms"))
    for p in (x, y):
        for m in conv.only[p]:
            if id(m) in lost:
                miss = Text("      ✗ lost", style="bold red")
            elif conv.directions[m.sender].up == p:
                miss = Text("      · not capturing", style="dim")
            else:
                miss = Text("      ? not sent there", style="yellow")
            t = m.time if p == x else m.time - seg.offset
            rows.append((t, cell(m), miss, "") if p == x else (t, miss, cell(m), ""))
    rows.sort(key=lambda r: r[0])
    t = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    t.add_column("time", justify="right")
    t.add_column(f"at #{x + 1} {seg.x.name}")
    t.add_column(f"at #{y + 1} {seg.y.name}")
    t.add_column("transit", justify="right")
    t0 = rows[0][0] if rows else 0.0
    shown = rows if len(rows) <= MAX_LADDER else rows[: MAX_LADDER // 2] + [None] + rows[-MAX_LADDER // 2:]
    for r in shown:
        if r is None:
            t.add_row("", f"… {len(rows) - MAX_LADDER} more …", "", "")
        else:
            t.add_row(f"{r[0] - t0:.3f}", r[1], r[2], r[3])
    return t


# -- command ----------------------------------------------------------------------------------


@click.command(help=COMPARE_HELP)
@click.argument("files", nargs=-1, required=True, metavar="FILE FILE [FILE...]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (schema 1, kind compare, see README).")
@click.option("--ike-port", default=500, show_default=True, type=click.IntRange(1, 65535), help="UDP port of IKE.")
@click.option("--natt-port", default=4500, show_default=True, type=click.IntRange(1, 65535),
              help="UDP port of NAT-T (IKE and ESP in UDP).")
@click.option("--no-color", is_flag=True, help="No colours, even on a terminal.")
@limit_options
def compare(files, as_json, ike_port, natt_port, no_color, limits) -> None:
    from ikeflow.cli import run_command

    if len(files) < 2:
        raise click.UsageError("compare needs at least two captures, in order along the path")
    if list(files).count("-") > 1:
        raise click.UsageError("standard input (-) can be read only once")
    run_command(_compare, list(files), as_json, ike_port, natt_port, no_color, limits)


def _compare(files: list[str], as_json: bool, ike_port: int, natt_port: int, no_color: bool, limits: Limits) -> int:
    from ikeflow import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

    cmp = Comparison(files, ike_port, natt_port, limits)
    try:
        cmp.run()
    except CaptureError as e:
        click.echo(f"ikeflow: {e}", err=True)
        return EXIT_USAGE
    for p in cmp.points:
        for info in p.infos:
            if info.warning:
                click.echo(f"ikeflow: warning: {info.name}: {info.warning}", err=True)
    if as_json:
        json.dump(build(cmp), sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        from rich.console import Console

        render(Console(no_color=no_color, highlight=False), cmp)
    return EXIT_FINDINGS if any(f.severity == ERROR for f in cmp.findings()) else EXIT_OK
