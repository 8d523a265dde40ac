"""DPD and liveness probes of an IKE SA, and which of them were answered at this capture point.

  =====  ==================================================================
  IKEv2  a liveness check is an INFORMATIONAL request whose SK payload is
         empty (RFC 7296 1.4, 2.4): the SK header names no inner payload.
         The answer is a response with the same message ID; an unanswered
         check is re-sent like any request, so one probe = one message ID.
  IKEv1  DPD (RFC 3706) is R-U-THERE, an encrypted Informational with HASH
         and a Notify, answered by R-U-THERE-ACK: a new Informational of
         the same size from the peer.  Neither is re-sent; a new probe goes
         out every DPD delay.  Encrypted, so a probe is told from a Delete
         by its size: the prober's most frequent Informational size after
         phase 1, sent at least twice and not in one burst.
  =====  ==================================================================
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ikeflow.model import sequences

if TYPE_CHECKING:
    from ikeflow.model.ikesa import IkeSa, Seen

# s: R-U-THERE-ACK leaves as soon as the probe arrives; an answer later than this is the peer's own probe
V1_ANSWER_WAIT = 2.0
# s: messages closer together than this are one burst (Deletes at shutdown), not probes a DPD delay apart
BURST = 1.0


@dataclass(slots=True)
class Probe:
    """One liveness check: its sends (IKEv2: the request and its re-sends) and the answers seen here."""

    sends: list[Seen]
    answers: list[Seen] = field(default_factory=list)


def probes(sa: IkeSa, role: str) -> list[Probe]:
    """The liveness checks that `role` ("I" or "R") sent on this IKE SA, in order (found once for as long
    as the SA stays as it is: several findings rules ask)."""
    known = sa.probed.get(role)
    if known is not None and known[:2] == (sa.count, sa.up_time):
        return known[2]
    found = _v2(sa, role) if sa.version == 2 else _v1(sa, role)
    sa.probed[role] = (sa.count, sa.up_time, found)
    return found


def unanswered_tail(found: list[Probe]) -> list[Probe]:
    """The probes after the last one answered here (all of them if none was)."""
    last = max((i for i, p in enumerate(found) if p.answers), default=-1)
    return found[last + 1:]


def _v2(sa: IkeSa, role: str) -> list[Probe]:
    out = []
    for run in sa.runs.values():
        if run.exchange.type != sequences.INFORMATIONAL or run.starter != role:
            continue
        sends = [m for m in run.messages if m.request]
        if sends and sends[0].msg.encrypted_first == "NONE":
            out.append(Probe(sends, [m for m in run.messages if not m.request]))
    out.sort(key=lambda p: p.sends[0].time)
    return out


def _v1(sa: IkeSa, role: str) -> list[Probe]:
    """R-U-THERE and its ACK look alike: of two Informationals of the probe size from both ends within
    V1_ANSWER_WAIT, the first is the probe and the second its answer."""
    infos = [m for m in sa.messages if m.msg.exchange_type == sequences.INFORMATIONAL_V1 and m.msg.encrypted
             and sa.up_time is not None and m.time > sa.up_time]
    sizes = Counter(m.size for m in infos).most_common(1)
    if not sizes or sizes[0][1] < 2:
        return []
    same = [m for m in infos if m.size == sizes[0][0]]
    out, i = [], 0
    while i < len(same):
        m = same[i]
        answer = same[i + 1] if i + 1 < len(same) else None
        if answer is not None and answer.sender != m.sender and answer.time - m.time <= V1_ANSWER_WAIT:
            i += 2
        else:
            answer, i = None, i + 1
        if m.sender == role:
            out.append(Probe([m], [answer] if answer else []))
    if len(out) < 2 or out[-1].sends[0].time - out[0].sends[0].time < BURST:
        return []
    return out
