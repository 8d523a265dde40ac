"""How each IKE SA of a peer pair ended, and which one is alive at the end of the capture.

An IKEv2 Delete is encrypted, but the SK header names the first inner payload
in clear (RFC 7296 3.14).  RFC 7296 1.4.1: a Delete of the IKE SA is answered
empty and nothing follows it on that SA; a Delete of child SAs is answered with
a Delete of the paired SPIs (or empty, when both ends deleted the same child at
once), and the IKE SA talks on.  So the IKE SA's Delete is its last request, a
Delete answered empty; unanswered, it is told from a child's Delete only by its
size: an IKE SA's Delete payload is 8 bytes, a child's carries 4-byte SPIs (12
bytes at least), and with the chosen proposal known, an SK plaintext too small
for 12 bytes holds the IKE SA's (padding to a block often hides the difference).
A Delete answered with a Delete deleted a child SA only.  The context says why:

  =================  ==========================================================
  by                 what the capture shows
  =================  ==========================================================
  collision          the peers had brought up another IKE SA from the other end
                     within COLLISION_WINDOW (both initiated at once) that lives
                     on; this one was deleted, or (no Delete of it seen) fell
                     silent: frame = its Delete request, or its last message
  replaced           deleted while a newer IKE SA of the pair lives on: one
                     already in use, or one without an IKE_SA_INIT of its own
                     (a rekey)
  delete             deleted, nothing else between the peers
  delete-unanswered  its last request is a Delete that no answer follows, and
                     its size does not tell the IKE SA's from a child SA's
  superseded         it was up, no Delete of it seen; its messages stop and the
                     peers start a new negotiation (IKE_SA_INIT / MM1 / AM1):
                     a restart or reconnect, not a rekey; frame = the new
                     negotiation's first message
  =================  ==========================================================

Nothing on the wire shows an SA expiring: a lifetime ends in a rekey or a
Delete (RFC 7296 2.8), so an SA that just falls silent is never called expired.
An IKEv1 Delete is an encrypted Informational like any DPD message, so an IKEv1
SA is only ever "collision" (no Delete) or "superseded" here.

`children()` lists the child SA negotiations that completed (what ESP can
belong to, see model.attribution) and `churn()` counts a pair's rekeys,
collisions and short-lived IKE SAs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikeflow.model import sequences
from ikeflow.model.ikesa import CHILD_OK_MIN

if TYPE_CHECKING:
    from ikeflow.model.analysis import PeerPair
    from ikeflow.model.ikesa import IkeSa, Seen

COLLISION_WINDOW = 10.0  # s between two IKE SAs coming up from opposite ends: a simultaneous initiation
# An IKE SA that came up and ended within this many seconds without carrying ESP was never used: lifetimes
# and rekey margins are minutes to hours (strongSwan: rekey_time 4 h, libreswan: ikelifetime 8 h), so only a
# reconnect loop or a refused setup ends an SA this fast.
SHORT_LIFE = 60.0
# Bytes of SK plaintext (payloads, padding, pad length) that a Delete of a child SA needs at least: the Delete
# payload's 8 bytes and one 4-byte SPI (RFC 7296 3.11); an IKE SA's Delete (8 bytes, no SPI) fits in less.
CHILD_DELETE_MIN = 8 + 4 + 1


def close(pair: PeerPair) -> None:
    """Set `closed` on each IKE SA of the pair, and the pair's `alive` SA."""
    for sa in pair.sas:
        found = ike_sa_delete(sa)
        if found:
            d, sure = found
            sa.closed = (_why_deleted(pair, sa, d) if sure else "delete-unanswered", d.ref, d.time)
        elif sa.up_time is not None:
            sa.closed = _ended_silently(pair, sa)
        else:
            sa.closed = None
    up = [sa for sa in pair.sas if sa.up_time is not None and sa.closed is None]
    pair.alive = max(up, key=lambda sa: sa.up_time) if up else None


def _opens(sa: IkeSa) -> bool:
    """A new negotiation: the SA starts with MM1/AM1/IKE_SA_INIT or comes up (not one seen mid-session)."""
    return sa.up_time is not None or sa.messages[0].msg.exchange_type in (*sequences.PHASE1_V1, sequences.IKE_SA_INIT)


def ike_sa_delete(sa: IkeSa) -> tuple[Seen, bool] | None:
    """The IKEv2 Delete request that ends the SA, and whether it surely deleted the IKE SA (answered empty, or
    too small for a child's SPI); None when the SA's last request is no Delete or was answered with a Delete
    (a child SA's).  An IKE_SA_INIT request after the SA came up starts another SA and does not count."""
    if sa.version != 2:
        return None
    last = next((m for m in reversed(sa.messages) if m.request and not m.retransmission
                 and m.msg.exchange_type != sequences.IKE_SA_INIT), None)
    if last is None or last.msg.exchange_type != sequences.INFORMATIONAL or last.msg.encrypted_first != "D":
        return None
    answer = next((m for m in sa.messages if not m.request and m.sender != last.sender
                   and m.msg.exchange_type == sequences.INFORMATIONAL and m.msg.message_id == last.msg.message_id),
                  None)
    if answer is not None:
        return (last, True) if answer.msg.encrypted_first == "NONE" else None
    small = sa.chosen is not None and last.plaintext is not None and last.plaintext < CHILD_DELETE_MIN
    return last, small


def _why_deleted(pair: PeerPair, sa: IkeSa, d: Seen) -> str:
    after = [o for o in pair.sas if o is not sa and o.messages and o.messages[-1].time > d.time]  # live on
    if any(_collided(sa, o) for o in after):
        return "collision"
    # a newer SA already in use when this one went, or one that appears without an IKE_SA_INIT of its own
    # (rekeyed by CREATE_CHILD_SA on this one); a fresh negotiation after the Delete is not a replacement
    replaced = any(o.index > sa.index and (o.messages[0].time < d.time or o.messages[0].label != "IKE_SA_INIT")
                   for o in after)
    return "replaced" if replaced else "delete"


def _ended_silently(pair: PeerPair, sa: IkeSa) -> tuple[str, int, float] | None:
    """An SA that came up and was not deleted: a collision's loser (silent while the other lives on), or
    superseded by a new negotiation between the peers after its last message; else None (still up)."""
    last = sa.messages[-1]
    if any(_collided(sa, o) and o.messages[-1].time > last.time for o in pair.sas if o is not sa and o.messages):
        return "collision", last.ref, last.time
    later = [o.messages[0] for o in pair.sas
             if o.index > sa.index and o.messages and _opens(o) and o.messages[0].time > last.time]
    first = min(later, key=lambda m: m.time, default=None)
    return ("superseded", first.ref, first.time) if first else None


def _collided(sa: IkeSa, o: IkeSa) -> bool:
    """Both came up from opposite ends within COLLISION_WINDOW."""
    return (sa.up_time is not None and o.up_time is not None and bool(o.initiator and sa.initiator)
            and o.initiator[0] != sa.initiator[0] and abs(o.up_time - sa.up_time) <= COLLISION_WINDOW)


@dataclass(frozen=True, slots=True)
class Child:
    """A child SA negotiation that completed: the answer that built it."""

    time: float
    ref: int
    sa: IkeSa
    exchange: str  # "IKE_AUTH", "CREATE_CHILD_SA" or "Quick Mode"
    rekey: bool  # IKEv2: the request started with a Notify (N(REKEY_SA) first, RFC 7296 1.3.3)


def children(pair: PeerPair) -> list[Child]:
    """The pair's completed child SA negotiations, in time order, from the messages each SA keeps:
    IKEv1 Quick Modes (QM2 or QM3 seen), IKEv2 an IKE_AUTH answer with room for SA + TS and every
    CREATE_CHILD_SA answer that is not error-only, except the one that rekeyed an IKE SA."""
    found = [c for sa in pair.sas for c in _children(sa)]
    ike_rekeys = set()
    for new in pair.sas:  # an IKEv2 SA without IKE_SA_INIT after a replaced one: a CREATE_CHILD_SA made it
        if new.version == 2 and new.messages and all(m.msg.exchange_type != sequences.IKE_SA_INIT for m in new.messages):
            before = [c for c in found if c.exchange == "CREATE_CHILD_SA" and c.sa is not new and c.sa.closed
                      and c.sa.closed[0] == "replaced" and c.time < new.messages[0].time]
            if before:
                ike_rekeys.add(max(before, key=lambda c: c.time))
    return sorted((c for c in found if c not in ike_rekeys), key=lambda c: c.time)


def _children(sa: IkeSa) -> list[Child]:
    out: list[Child] = []
    if sa.version == 1:
        quick: dict[int, Seen] = {}
        for m in sa.messages:
            if m.msg.exchange_type == sequences.QUICK_MODE and m.label in ("QM2", "QM3") and not m.retransmission:
                quick.setdefault(m.msg.message_id, m)
        return [Child(m.time, m.ref, sa, "Quick Mode", False) for m in quick.values()]
    answers = [m for m in sa.messages if not m.request and not m.retransmission and not sa.error_only(m)]
    auth = [m for m in answers if m.msg.exchange_type == sequences.IKE_AUTH]
    if sa.up_time is not None and auth and (auth[-1].plaintext is None or auth[-1].plaintext >= CHILD_OK_MIN):
        out.append(Child(auth[-1].time, auth[-1].ref, sa, "IKE_AUTH", False))
    for m in answers:
        if m.msg.exchange_type == sequences.CREATE_CHILD_SA:
            ask = next((q for q in sa.messages if q.request and q.msg.exchange_type == sequences.CREATE_CHILD_SA
                        and q.msg.message_id == m.msg.message_id and q.sender != m.sender), None)
            out.append(Child(m.time, m.ref, sa, "CREATE_CHILD_SA", ask is not None and ask.msg.encrypted_first == "N"))
    return out


def churn(pair: PeerPair, data_since: Callable[[IkeSa], float | None]) -> dict[str, int]:
    """The pair's rekeys, collisions and short-lived IKE SAs; `data_since(sa)`: the first packet of the ESP or
    AH attributed to it (None: none).

    rekeys: IKE SAs replaced (IKEv2 "replaced"; IKEv1 an SA still talking after a newer one came up),
    IKEv2 CREATE_CHILD_SAs that rekeyed a child (request starting with a Notify) and IKEv1 Quick Modes
    that completed after the SA's ESP began (a Quick Mode alongside the first one builds another child SA).
    short_lived: see short_lived()."""
    kids = children(pair)
    rekeys = collisions = 0
    for sa in pair.sas:
        by = sa.closed[0] if sa.closed else None
        if sa.version == 1 and sa.up_time is not None and by is None:
            newer = [o for o in pair.sas if o.version == 1 and o.up_time is not None and o.up_time > sa.up_time
                     and sa.messages[-1].time > o.up_time]  # superseded while it still talked
            by = ("collision" if any(_collided(sa, o) for o in newer) else "replaced") if newer else None
        rekeys += by == "replaced"
        collisions += by == "collision"
    quick_modes: set[int] = set()
    for c in kids:
        if c.exchange == "Quick Mode":
            since = data_since(c.sa)
            rekeys += id(c.sa) in quick_modes and since is not None and since < c.time
            quick_modes.add(id(c.sa))
        else:
            rekeys += c.rekey
    short = short_lived(pair, lambda sa: data_since(sa) is not None)
    return {"rekeys": rekeys, "collisions": collisions, "short_lived": len(short)}


def short_lived(pair: PeerPair, used: Callable[[IkeSa], bool]) -> list[IkeSa]:
    """The pair's IKE SAs that came up, ended within SHORT_LIFE and carried nothing (`used(sa)`: ESP or AH is
    attributed to it); a collision's loser is counted as a collision."""
    return [sa for sa in pair.sas if sa.up_time is not None and sa.closed is not None and sa.closed[0] != "collision"
            and sa.closed[2] - sa.up_time < SHORT_LIFE and not used(sa)]
