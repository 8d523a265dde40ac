"""How each IKE SA of a peer pair ended, and which one is alive at the end of the capture.

An IKEv2 Delete is encrypted, but the SK header names the first inner payload
in clear (RFC 7296 3.14): an INFORMATIONAL request that starts with a Delete,
after which the SA carries nothing but Delete exchanges (a Delete request, its
answer: a Delete, or empty for the IKE SA itself, RFC 7296 1.4.1), deleted the
IKE SA (a deleted child SA leaves the IKE SA talking).  The context says why:

  ==========  =============================================================
  by          what the capture shows
  ==========  =============================================================
  collision   deleted, and the peers had brought up another IKE SA from the
              other end within COLLISION_WINDOW (both initiated at once,
              RFC 7296 2.8.2: one of the two goes)
  replaced    deleted while a newer IKE SA of the pair lives on: one already in
              use, or one without an IKE_SA_INIT of its own (a rekey)
  delete      deleted, nothing else between the peers
  expired     it was up, no Delete seen; its messages stop and a new IKE SA
              between the peers starts later (lifetime over, or a peer
              declared it dead)
  ==========  =============================================================

An IKEv1 Delete is an encrypted Informational like any DPD message, so an
IKEv1 SA is only ever "expired" here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeflow.model import sequences

if TYPE_CHECKING:
    from ikeflow.model.analysis import PeerPair
    from ikeflow.model.ikesa import IkeSa, Seen

COLLISION_WINDOW = 10.0  # s between two IKE SAs coming up from opposite ends: a simultaneous initiation


def close(pair: PeerPair) -> None:
    """Set `closed` on each IKE SA of the pair, and the pair's `alive` SA."""
    deletes = {id(sa): delete_request(sa) for sa in pair.sas}
    for sa in pair.sas:
        d = deletes[id(sa)]
        if d is not None:
            sa.closed = (_why_deleted(pair, sa, d), d.ref, d.time)
        else:
            later = sa.up_time is not None and any(o.index > sa.index and o.messages
                                                    and o.messages[0].time > sa.messages[-1].time for o in pair.sas)
            last = sa.messages[-1]
            sa.closed = ("expired", last.ref, last.time) if later else None
    up = [sa for sa in pair.sas if sa.up_time is not None and sa.closed is None]
    pair.alive = max(up, key=lambda sa: sa.up_time) if up else None


def delete_request(sa: IkeSa) -> Seen | None:
    """The IKEv2 Delete request that ended the SA: the first of the Delete exchanges that end its messages."""
    if sa.version != 2:
        return None
    found = None
    for m in reversed(sa.messages):
        if not _is_delete(m):
            break
        if m.request and not m.retransmission:
            found = m
    return found


def _is_delete(m: Seen) -> bool:
    """A Delete request, or an answer to one (a Delete, or empty)."""
    if m.msg.exchange_type != sequences.INFORMATIONAL:
        return False
    first = m.msg.encrypted_first
    return first == "D" or (first == "NONE" and not m.request)


def _why_deleted(pair: PeerPair, sa: IkeSa, d: Seen) -> str:
    after = [o for o in pair.sas if o is not sa and o.messages and o.messages[-1].time > d.time]  # live on
    for o in after:
        if (sa.up_time is not None and o.up_time is not None and o.initiator and sa.initiator
                and o.initiator[0] != sa.initiator[0] and abs(o.up_time - sa.up_time) <= COLLISION_WINDOW):
            return "collision"
    # a newer SA already in use when this one went, or one that appears without an IKE_SA_INIT of its own
    # (rekeyed by CREATE_CHILD_SA on this one); a fresh negotiation after the Delete is not a replacement
    replaced = any(o.index > sa.index and (o.messages[0].time < d.time or o.messages[0].label != "IKE_SA_INIT")
                   for o in after)
    return "replaced" if replaced else "delete"
