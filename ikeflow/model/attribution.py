"""Which IKE SA each ESP and AH flow belongs to, from timing alone.

ESP belongs to a child SA, and a child SA to the IKE SA that negotiated it.
Its SPIs are encrypted in the negotiation, so the wire tells only the order: a
flow (SPI + destination) belongs to the IKE SA whose child negotiation
(lifecycle.children) completed last before the flow's first packet, between
the same peers.  A flow stays unattributed (its packets count in the pair total
only) when:

  ==============  =============================================================
  why             the capture shows
  ==============  =============================================================
  no IKE          no IKE SA between the peers
  mid-session     no child negotiation completed before the flow began
  ambiguous       another IKE SA completed one within SAME_TIME of the last, or
                  the last one's IKE SA was deleted (or sent a Delete) before the flow began
  ==============  =============================================================

Computed once by Analyzer.finish() from what the model keeps (no per-packet
state) and kept as `Analyzer.owners`.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

from ikeflow.model import lifecycle
from ikeflow.model.events import pair_key

if TYPE_CHECKING:
    from ikeflow.model.analysis import Analyzer, PeerPair
    from ikeflow.model.esp import EspFlow
    from ikeflow.model.ikesa import IkeSa

SAME_TIME = 1.0  # s: child negotiations of two IKE SAs this close leave a later flow to either of them


class Owners:
    """The IKE SA of every ESP and AH flow of the analysis (None: pair total only), and the reverse."""

    def __init__(self, an: Analyzer):
        self.sa: dict[EspFlow, IkeSa | None] = {}
        self.why: dict[EspFlow, str] = {}  # unattributed flow -> why (see the table above)
        self.esp: dict[int, list[EspFlow]] = {}  # id(IkeSa) -> its ESP flows
        self.ah: dict[int, list[EspFlow]] = {}
        self.carried: set[tuple[bytes, bytes]] = set()  # pair keys with ESP or AH in the capture
        kids: dict[tuple[bytes, bytes], tuple[list[float], list[lifecycle.Child]]] = {}
        for table, by_sa in ((an.esp, self.esp), (an.ah, self.ah)):
            for f in table.flows.values():
                key = pair_key(f.src, f.dst)
                pair = an.pairs.get(key)
                self.carried.add(key)
                if key not in kids:
                    found = lifecycle.children(pair) if pair is not None else []
                    kids[key] = [c.time for c in found], found
                sa, why = _owner(*kids[key], f.first_time, pair)
                self.sa[f] = sa
                if sa is None:
                    self.why[f] = why
                else:
                    by_sa.setdefault(id(sa), []).append(f)

    def esp_of(self, sa: IkeSa) -> list[EspFlow]:
        return self.esp.get(id(sa), [])

    def ah_of(self, sa: IkeSa) -> list[EspFlow]:
        return self.ah.get(id(sa), [])

    def used(self, sa: IkeSa) -> bool:
        """ESP or AH is attributed to the SA."""
        return id(sa) in self.esp or id(sa) in self.ah

    def data_since(self, sa: IkeSa) -> float | None:
        """The first packet of the ESP or AH attributed to the SA, None without."""
        return min((f.first_time for f in (*self.esp_of(sa), *self.ah_of(sa))), default=None)

    def churn(self, pair: PeerPair) -> dict[str, int]:
        """lifecycle.churn of the pair, with the ESP and AH attributed here."""
        return lifecycle.churn(pair, self.data_since)


def _owner(times: list[float], kids: list[lifecycle.Child], start: float,
           pair: PeerPair | None) -> tuple[IkeSa | None, str]:
    """The IKE SA of a flow that began at `start`, or None and why."""
    if pair is None or not pair.sas:
        return None, "no IKE"
    k = bisect_right(times, start)
    if not k:
        return None, "mid-session"
    last = kids[k - 1]
    if any(c.sa is not last.sa and last.time - c.time < SAME_TIME for c in kids[:k]):
        return None, "ambiguous"
    closed = last.sa.closed
    if closed and closed[0] in ("delete", "delete-unanswered", "collision") and closed[2] < start:  # children gone too
        return None, "ambiguous"
    return last.sa, ""
