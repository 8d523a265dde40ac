"""ESP accounting per SA (destination and SPI): packets, bytes, times, sequence gaps.

Memory is bounded per flow: duplicates and reordering are judged within an
anti-replay style window of the last `WINDOW` sequence numbers.

The counters every packet touches live in a plain list (`EspTable.hot[key]`,
indexed PACKETS..SEQ_MAX): the reader's fast path updates list items, which
costs a quarter less than updating attributes.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from ikeflow.limits import DEFAULT

WINDOW = 128
MASK = (1 << WINDOW) - 1
SEAM = 2 * WINDOW  # a flow notes its out-of-order packets until its sequence numbers pass its first by this
EARLY = 64  # out-of-order packets noted at most (see EspFlow.early)
# The hot list of a flow: what the fast path in capture.py updates for an in-sequence packet,
# and the destination (an int) it checks the SPI against.
PACKETS, BYTES, LAST_TIME, LAST_FRAME, SEQ_MAX, DST = range(6)


def esp_key(dst: bytes, spi: int) -> int:
    """The key of an ESP SA: its destination and SPI, as IPsec itself tells SAs apart (RFC 4301 4.1).

    IPv4: dst << 32 | spi, which the fast path in capture.py computes the same way.
    """
    if len(dst) == 4:
        return int.from_bytes(dst, "big") << 32 | spi
    return ((1 << 128) | int.from_bytes(dst, "big")) << 32 | spi


class EspFlow:
    """One ESP SA as seen on the wire: one SPI towards one destination (from the source first seen)."""

    __slots__ = ("src", "dst", "spi", "encap", "sport", "dport", "first_time", "first_frame", "seq_first",
                 "seq_min", "seen", "seen_top", "duplicates", "reordered", "hot", "early")

    def __init__(self, src: bytes, dst: bytes, spi: int, encap: str, sport: int, dport: int,
                 size: int, ts: float, ref: int, seq: int):
        self.src, self.dst, self.spi, self.encap, self.sport, self.dport = src, dst, spi, encap, sport, dport
        self.first_time, self.first_frame = ts, ref  # ref: capture.frame_ref
        self.seq_first = self.seq_min = self.seen_top = seq
        self.seen = 1  # bit i set: seen_top - i was received; all of seen_top+1..seq_max arrived in order
        self.duplicates = self.reordered = 0
        self.hot = [1, size, ts, ref, seq, int.from_bytes(dst, "big")]
        # (index, sequence number) of each packet not next in sequence while the highest sequence number was
        # below seq_first + SEAM, in order (False: more than EARLY): with seq_first they give the flow's first
        # sequence numbers, which a two-core read needs to judge them after the other reader's (EspTable.merge)
        self.early: list[tuple[int, int]] | tuple | bool = ()

    packets = property(lambda self: self.hot[PACKETS])
    bytes = property(lambda self: self.hot[BYTES])
    last_time = property(lambda self: self.hot[LAST_TIME])
    last_frame = property(lambda self: self.hot[LAST_FRAME])
    seq_max = property(lambda self: self.hot[SEQ_MAX])

    def sequence(self, seq: int) -> None:
        """Judge one more packet's sequence number (its packet already counted): the highest so far, a
        duplicate or reordered within the window."""
        h = self.hot
        top = h[SEQ_MAX]
        if seq == top + 1:  # the common case; the fast path in capture.py does the same inline
            h[SEQ_MAX] = seq
            return
        if top != self.seen_top:  # fold the in-order run into the window
            d = top - self.seen_top
            self.seen = ((self.seen << d) | ((1 << d) - 1)) & MASK if d < WINDOW else MASK
            self.seen_top = top
        if seq > top:
            d = seq - top
            self.seen = ((self.seen << d) | 1) & MASK if d < WINDOW else 1
            h[SEQ_MAX] = self.seen_top = seq
        else:
            i = top - seq
            if i < WINDOW and (self.seen >> i) & 1:
                self.duplicates += 1
            else:
                if i < WINDOW:
                    self.seen |= 1 << i
                self.reordered += 1
                if seq < self.seq_min:
                    self.seq_min = seq

    def window(self) -> tuple[int, int]:
        """(highest sequence number, the window below it with the in-order run folded in)."""
        top, d = self.hot[SEQ_MAX], self.hot[SEQ_MAX] - self.seen_top
        return top, (((self.seen << d) | ((1 << d) - 1)) & MASK if d < WINDOW else MASK) if d else self.seen

    def first_sequence(self) -> list[int]:
        """The sequence numbers of its first packets, in order, until the highest reaches seq_first + SEAM
        (or its last packet): the packets in sequence between those noted in `early` fill the gaps."""
        out, top, n = [self.seq_first], self.seq_first, 1
        for index, seq in self.early:
            while n < index:
                top += 1
                out.append(top)
                n += 1
            out.append(seq)
            n += 1
            top = max(top, seq)
        while n < self.packets and top < self.seq_first + SEAM:
            top += 1
            out.append(top)
            n += 1
        return out

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


class Flows(dict):
    """ESP flows by esp_key(), with the packets of the flows a cap turned away, by cap (pickled along)."""

    uncounted = 0
    overflow: dict = {}  # the table's own overflow counts, set by EspTable


class EspTable:
    """All ESP flows of a capture, keyed by esp_key()."""

    def __init__(self, natt_port: int = 4500, max_flows: int = DEFAULT.esp_flows, overflow: dict | None = None,
                 max_new: int = DEFAULT.new_esp_flows):
        self.natt_port = natt_port
        self.flows = Flows()
        self.hot: dict[int, list] = {}  # SPI -> hot list of the first flow with that SPI, for the fast path
        self.max_flows, self.max_new = max_flows, max_new
        # cap -> packets of the flows it turned away; the flows carry it when pickled (two-core read)
        self.overflow = self.flows.overflow = {} if overflow is None else overflow
        self.new: OrderedDict[int, EspFlow] = OrderedDict()  # flows that had one packet when added, oldest first
        self.held: list[tuple] = []  # packets added while held (`hold`)

    @classmethod
    def of(cls, natt_port: int, limits, overflow: dict | None = None) -> EspTable:
        """The table an analysis with these settings counts into (`limits`: a limits.Limits)."""
        return cls(natt_port, limits.esp_flows, overflow, limits.new_esp_flows)

    @property
    def settings(self) -> tuple[int, int, int]:
        """What `fresh` copies: the NAT-T port, the cap on flows and the cap on new one-packet flows."""
        return self.natt_port, self.max_flows, self.max_new

    def fresh(self) -> EspTable:
        """An empty table with the same settings, for a second reader of the same capture."""
        natt_port, max_flows, max_new = self.settings
        return EspTable(natt_port, max_flows, max_new=max_new)

    @property
    def packets(self) -> int:
        """ESP packets counted so far."""
        return sum(f.packets for f in self.flows.values()) + self.flows.uncounted

    def directions(self) -> dict[tuple[bytes, bytes], list[EspFlow]]:
        """The flows grouped by (source, destination)."""
        out: dict[tuple[bytes, bytes], list[EspFlow]] = {}
        for f in self.flows.values():
            out.setdefault((f.src, f.dst), []).append(f)
        return out

    def in_frame_order(self) -> None:
        """Order the flows by their first frame: the order in which readers counted them depends on how
        the capture was cut into batches and between cores, the report's must not."""
        ordered = sorted(self.flows.items(), key=lambda kv: kv[1].first_frame)
        self.flows.clear()
        self.flows.update(ordered)

    def _turn_away(self, packets: int, cap: str = "esp_flows") -> None:
        """Past a cap: the packets of a flow are counted, the flow is not kept."""
        self.flows.uncounted += packets
        self.overflow[cap] = self.overflow.get(cap, 0) + packets

    def _forget_new(self) -> None:
        """More than `max_new` flows with a single packet (an SPI scan or flood, not SAs in use): forget
        the oldest of them, as a kernel drops the oldest half-open connections; flows that went on stay."""
        new = self.new
        while len(new) > self.max_new:
            key, f = new.popitem(last=False)  # O(1): a plain dict's first item is found past every deleted one
            if f.packets == 1:
                del self.flows[key]
                if self.hot.get(f.spi) is f.hot:
                    del self.hot[f.spi]
                self._turn_away(1, "new_esp_flows")

    def add(self, key: int, encap: str, sport: int, dport: int, src: bytes, dst: bytes,
            seq: int, size: int, ts: float, ref: int) -> None:
        """Count one ESP packet; `key` is esp_key(dst, spi), `size` the IP datagram length."""
        f = self.flows.get(key)
        if f is None:
            if len(self.flows) >= self.max_flows:
                self._turn_away(1)
                return
            f = self.flows[key] = EspFlow(src, dst, key & 0xFFFFFFFF, encap, sport, dport, size, ts, ref, seq)
            self.hot.setdefault(f.spi, f.hot)
            self.new[key] = f
            if len(self.new) > self.max_new:
                self._forget_new()
            return
        h = f.hot
        h[PACKETS] += 1
        h[BYTES] += size
        h[LAST_TIME] = ts
        h[LAST_FRAME] = ref
        top = h[SEQ_MAX]
        if seq == top + 1:  # the common case; the fast path in capture.py does the same inline
            h[SEQ_MAX] = seq
            return
        if f.early is not False and top < f.seq_first + SEAM:
            if len(f.early) >= EARLY:
                f.early = False
            else:
                f.early = [*f.early, (h[PACKETS] - 1, seq)]
        f.sequence(seq)

    def hold(self) -> None:
        """Keep the packets added from now on, in order, instead of counting them (until `release`): a two-core
        read merges its helper's flows first, as they come before them, and only has them at the helper's end."""
        held = self.held = []
        self.add = lambda *packet: held.append(packet)  # shadows the method: nothing to check on the way

    def release(self) -> None:
        """Count the packets held, in order, and count each one as it comes again."""
        del self.add
        held, self.held = self.held, []
        for packet in held:
            self.add(*packet)

    def merge(self, later: Flows, shift: int) -> None:
        """Add the flows counted over the next stretch of the same capture (frame refs `shift` short).

        The later flow's first sequence numbers are judged after the earlier flow's (`seam`), so that
        duplicates and reordering across the seam count as one reader counts them."""
        self.flows.uncounted += later.uncounted
        for cap, n in later.overflow.items():
            self.overflow[cap] = self.overflow.get(cap, 0) + n
        for key, g in later.items():
            g.first_frame += shift
            gh = g.hot
            gh[LAST_FRAME] += shift
            f = self.flows.get(key)
            if f is None:
                if len(self.flows) >= self.max_flows:
                    self._turn_away(gh[PACKETS])
                    continue
                self.flows[key] = g
                self.hot.setdefault(g.spi, g.hot)
                continue
            h = f.hot
            if not _seam(f, g):  # duplicates or reordering that straddle the seam are not seen
                f.duplicates += g.duplicates
                f.reordered += g.reordered
                f.seq_min = min(f.seq_min, g.seq_min)
                if gh[SEQ_MAX] >= h[SEQ_MAX]:
                    h[SEQ_MAX], f.seen, f.seen_top = gh[SEQ_MAX], g.seen, g.seen_top
            h[PACKETS] += gh[PACKETS]
            h[BYTES] += gh[BYTES]
            h[LAST_TIME], h[LAST_FRAME] = gh[LAST_TIME], gh[LAST_FRAME]


def _seam(f: EspFlow, g: EspFlow) -> bool:
    """Judge the sequence numbers of `g`, the same flow counted over the next stretch, after `f`'s, as one
    reader would have: `f` takes the duplicates, reordering, lowest and highest sequence number and window
    of the two stretches (the packets, bytes and times are left to the caller).  False leaves the sum to the
    caller: it is what one reader counts when `g` starts above `f`'s highest sequence number with its first
    SEAM in order (`f`'s window is passed by then), and the best there is when `g` noted more than EARLY
    packets out of order, or `f`'s highest sequence number passes `g`'s first by WINDOW or more."""
    if g.early is False or (not g.early and g.seq_first > f.hot[SEQ_MAX]):
        return False
    first = g.first_sequence()
    one, alone = _copy(f), EspFlow(g.src, g.dst, g.spi, g.encap, g.sport, g.dport, 0, 0.0, 0, first[0])
    one.sequence(first[0])
    for seq in first[1:]:
        one.sequence(seq)
        alone.sequence(seq)
    whole = len(first) == g.packets  # every packet of `g` judged here
    if not whole and one.window() != alone.window():
        return False
    last = one if whole else g  # past its first packets `g` went on as one reader would
    f.duplicates = one.duplicates + g.duplicates - alone.duplicates
    f.reordered = one.reordered + g.reordered - alone.reordered
    f.hot[SEQ_MAX], f.seen, f.seen_top = last.hot[SEQ_MAX], last.seen, last.seen_top
    f.seq_min = min(one.seq_min, g.seq_min)
    return True


def _copy(f: EspFlow) -> EspFlow:
    """A copy of `f` to judge sequence numbers on, apart."""
    c = EspFlow.__new__(EspFlow)
    for name in EspFlow.__slots__:
        setattr(c, name, getattr(f, name))
    c.hot = list(f.hot)
    return c
