"""What the comparison of two neighbouring capture points holds: the clock offset, the
conversations (peer pairs seen at both points) and their directions, ESP per SPI, NAT
mappings, incomplete IP fragments, one-sided ICMP errors, the findings, and whether the two
captures could be compared at all.  The steps that
fill it in are in clock, matching, esp, between and findings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ikeflow.compare.points import Msg, Point
from ikeflow.diagnose.finding import Finding
from ikeflow.model.esp import EspFlow
from ikeflow.model.events import IcmpError

EDGE = 0.5  # s: slack at the start and end of the other capture


@dataclass(frozen=True)
class Clock:
    """The clock of the second point minus the clock of the first, and how it was found."""

    offset: float = 0.0
    method: str = "none"  # "ike": matched IKE messages, "esp": ESP first/last times, "none": assumed 0
    matches: int = 0  # matched IKE messages it was refined from
    one_way: bool = False  # matches in one direction only: the offset includes the transit time


@dataclass
class EspSa:
    """One ESP SA (SPI) across the segment: sent at the upstream point, arriving downstream."""

    spi: int
    flow_up: EspFlow  # at the upstream point
    flow_down: EspFlow | None  # the flow with that SPI downstream
    sent: int
    arrived: int
    duplicated: int = 0
    reordered: int = 0
    lost: int = 0
    judged: bool = True  # False: sent while the other point was not capturing
    note: str = ""
    lost_seq: list[int] | None = None  # packet by packet (both points kept every sequence number): the first 20
    lost_frames: list[int] | None = None
    transit: list[float] | None = None
    lost_smallest: int | None = None  # bytes: the smallest packet lost, packet by packet
    arrived_largest: int | None = None  # bytes: the largest packet that arrived


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
    esp: list[EspSa] = field(default_factory=list)


@dataclass
class Conversation:
    """One peer pair as seen at both points of a segment (addresses differ across NAT)."""

    pairs: dict[int, list[tuple]]  # point -> core peer-pair keys
    sas: list[tuple]
    flows: dict[int, list[EspFlow]]  # point -> its flows
    initiator: dict[int, bytes] = field(default_factory=dict)  # point -> initiator address there
    responder: dict[int, bytes] = field(default_factory=dict)
    init_side: int = 0  # the point nearer the initiator
    orientation: str = "assumed"  # how init_side was decided: "timing", "loss", "assumed"
    matches: list[tuple[Msg, Msg]] = field(default_factory=list)  # (at x, at y)
    only: dict[int, list[Msg]] = field(default_factory=dict)  # point -> unmatched records
    directions: dict[str, Direction] = field(default_factory=dict)


@dataclass
class Sighting:
    """One outside address:port of a NAT mapping: when and how often it was seen."""

    first_time: float
    last_time: float
    count: int
    frames: list[int]  # the first message's frame_refs: inside, outside


@dataclass
class NatMapping:
    """One end's address:port at the point nearer to it (inside) and what the other point saw."""

    conv: int  # index in Segment.convs
    endpoint: str  # "I" / "R"
    inside: tuple[bytes, int]
    kind: int | None  # 500, 4500 (the IKE / NAT-T port) or None
    outside: list[tuple[tuple[bytes, int], Sighting]]  # in order of first sighting


@dataclass
class Incomplete:
    """An IP datagram whose fragments never all arrived at a point, and the IKE message it most likely was."""

    point: int
    frames: list[int]
    src: bytes
    dst: bytes
    bytes: int
    has_first: bool
    fragments: int
    first_time: float
    message: Msg | None


@dataclass
class IcmpOneSide:
    """An ICMP error seen at one point with no counterpart at the other."""

    point: int
    event: IcmpError


@dataclass
class CompareFinding(Finding):
    segment: tuple[int, int] | None = None  # the two points it is about


class Segment:
    """Two neighbouring capture points and everything that went between them."""

    def __init__(self, x: Point, y: Point, ike_port: int, natt_port: int):
        self.x, self.y = x, y
        self.ike_port, self.natt_port = ike_port, natt_port
        self.clock = Clock()
        self.convs: list[Conversation] = []
        self.elsewhere: list[Conversation] = []  # seen at one point only, sent by both ends: not through the other
        self.nat: list[NatMapping] = []
        self.icmp_one_side: list[IcmpOneSide] = []
        self.fragments: list[Incomplete] = []
        self.findings: list[CompareFinding] = []
        self.compared = True  # False: the same capture twice, or unrelated ones; nothing was judged between them

    @property
    def points(self) -> tuple[int, int]:
        return self.x.index, self.y.index

    def other(self, p: int) -> Point:
        return self.y if p == self.x.index else self.x

    def point(self, p: int) -> Point:
        return self.x if p == self.x.index else self.y

    def to_y(self, p: int, t: float) -> float:
        """A time taken at point p, on the clock of y."""
        return t + self.clock.offset if p == self.x.index else t

    def judged(self, m: Msg) -> bool:
        """Could the other point have seen this message? (It was capturing then, and that
        stretch of the IKE SA is not elided at either point.)"""
        q = self.other(m.point)
        t = m.time + self.clock.offset if m.point == self.x.index else m.time - self.clock.offset  # on q's clock
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

    def flow_judged(self, p: int, f) -> bool:
        """Could the other point have seen some of this ESP flow of point p?"""
        q = self.other(p)
        if q.empty():
            return True
        t0, t1 = self.to_y(p, f.first_time), self.to_y(p, f.last_time)
        return not (t1 < self.to_y(q.index, q.first_time) - EDGE or t0 > self.to_y(q.index, q.last_time) + EDGE)

    def _resent(self, m: Msg) -> bool:
        lst = self.point(m.point).msgs.get(m.sa, [])
        return any(o.key == m.key and o.time > m.time for o in lst[-64:])
