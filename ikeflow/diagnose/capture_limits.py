"""What the capture cannot show, and the gate that keeps the diagnosis to what it can.

A capture is one point's view, over one stretch of time, through the admin's own filter.
`judge()` finds its limits once per analysis; the stall diagnosis (`stalls`) names on every stall
the limits that bear on it (`Stall.limits`), and its ranking leaves out the cause rules a limit voids:

=========== ========================================================== ================================
limit       the capture ...                                            voids (of the stall's cause rules)
=========== ========================================================== ================================
one-way     holds one direction of an IKE SA only: the other side's    all
            answers are proven by what this side sent, not seen
filtered    lost to its own filter what the diagnosis needs: non-first all, for stalls between the peers
            IP fragments                                               whose datagrams were cut
snaplen     cut frames short (capture-snaplen): a missing message may  all, for stalls waiting for a
            be one of them                                             message
no-time     has no usable timestamps (capture-no-time)                 all, for stalls judged by time
ends-early  stops before the request had time to be answered           all
mid-session starts inside the IKE SA: its opening exchange is missing  rules reading what only the
                                                                       opening shows
=========== ========================================================== ================================

A stall left without causes is a warning that says so.  Besides, each limit found here is a
finding of its own (`capture-one-way`, `capture-mid-session`, `capture-filtered`; `stalls` reports
`capture-ends-early`), with its evidence and what the admin does about it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from ipaddress import ip_address

from ikeflow.diagnose import capture_quality
from ikeflow.diagnose.finding import WARNING, Finding, duration
from ikeflow.model import sequences
from ikeflow.model.analysis import Analyzer
from ikeflow.model.events import pair_key
from ikeflow.model.ikesa import ZERO_SPI, IkeSa, Seen
from ikeflow.sources.capture import split_ref

# A request is owed one retransmission interval before silence means "unanswered".  The daemons'
# defaults: strongSwan re-sends after charon.retransmit_timeout = 4 s (then x1.8 each time, 5 times,
# giving up after about 165 s); libreswan after retransmit-interval = 0.5 s, doubling, for
# retransmit-timeout = 60 s.  The longer one, so that no daemon's first re-send is missed.
RETRANSMIT_INTERVAL = 4.0
INF = float("inf")

ONE_WAY, FILTERED, SNAPLEN, NO_TIME, ENDS_EARLY, MID_SESSION = (
    "one-way", "filtered", "snaplen", "no-time", "ends-early", "mid-session")
OPENING = ("MM1", "AM1", "IKE_SA_INIT")

# What to capture so that the diagnosis sees what it needs: ICMP errors (they quote the IKE packet they
# are about) and non-first IP fragments (no UDP header, so a port filter drops them), IPv4 and IPv6.
CAPTURE_FILTER = ("udp port 500 or udp port 4500 or esp or icmp or icmp6 or (ip[6:2] & 0x1fff != 0) "
                  "or (ip6 and ip6[6] == 44)")


@dataclass(frozen=True)
class Limit:
    """A capture limit: the Facts whose cause rules it voids (None: every rule), and what to do about it."""

    voids: frozenset[str] | None
    todo: str


LIMITS: dict[str, Limit] = {  # in the order a stall names them
    ONE_WAY: Limit(None, "Capture where both directions pass (on the gateway itself, or with -i any): "
                         "asymmetric routing sends the answers another way, a capture filter on 'src host' keeps one "
                         "direction, and a SPAN / mirror port may copy one direction only"),
    FILTERED: Limit(None, f"Capture with the fragments and ICMP errors too: tcpdump -i eth0 -s 0 -w tun.pcap "
                          f"'{CAPTURE_FILTER}'"),
    SNAPLEN: Limit(None, "Capture whole frames: tcpdump -s 0 (or a snap length above the MTU)"),
    NO_TIME: Limit(None, "Capture with timestamps (tcpdump -w writes them; some exports and converters zero them)"),
    ENDS_EARLY: Limit(None, f"Keep capturing until the negotiation succeeds or the initiator gives up: strongSwan "
                            f"re-sends after {RETRANSMIT_INTERVAL:.0f} s, 7 s, 13 s, 23 s and 42 s and gives up after "
                            f"about 165 s; libreswan re-sends from 0.5 s on, doubling, for 60 s"),
    MID_SESSION: Limit(frozenset({"ike_fragmentation"}),
                       "Start the capture before the negotiation, or re-initiate the SA while capturing "
                       "(swanctl --terminate --ike NAME, then swanctl --initiate; ipsec down / ipsec up NAME)"),
}


def voided(limits: dict[str, str]) -> frozenset[str] | None:
    """The Facts whose cause rules these limits void; None: every rule."""
    if any(LIMITS[name].voids is None for name in limits):
        return None
    return frozenset().union(*(LIMITS[name].voids for name in limits))


@dataclass
class CaptureLimits:
    """What this capture cannot show, judged once per analysis (see the module docstring)."""

    one_way: dict[IkeSa, tuple[Seen, Seen, str]] = field(default_factory=dict)  # SA -> the proof of a missing answer
    mid_session: dict[IkeSa, Seen] = field(default_factory=dict)  # SA -> its first message in the capture
    # peer pair -> the datagrams the capture filter cut to their first fragment (Reassembler.incomplete entries)
    cut: dict[tuple[bytes, bytes], list[dict]] = field(default_factory=dict)
    cut_answered: tuple[dict, Seen | dict] | None = None  # one of them, and what its receiver sent back after it
    # from capture_quality: the stalls they bear on name them and rank no cause
    no_time: bool = False  # the timestamps are unusable (capture-no-time)
    snaplen: bool = False  # frames cut by the snap length that no IKE SA could take: one may be a missing message

    def cut_between(self, sa: IkeSa) -> list[dict]:
        """The cut datagrams between this SA's peers, from its first message on."""
        since = sa.messages[0].time
        return [d for d in self.cut.get(pair_key(sa.initiator[0], sa.responder[0]), ()) if d["first_time"] >= since]


def judge(an: Analyzer, files) -> CaptureLimits:
    """The limits of this capture (`files`, the readers' FileInfo, is where capture_quality's come from)."""
    out = CaptureLimits(no_time=capture_quality.no_time(files))
    cut = [ref for f in files for ref in f.quality.cut_decoded]
    if cut:
        lost = {ref for ref, _ in an.malformed} | {r for d in an.reassembler.incomplete for r in d["frames"]}
        taken = {m.ref for sa in an.sas.values() for m in sa.messages}
        out.snaplen = any(ref in lost and ref not in taken for ref in cut)
    cut, out.cut_answered = _cut_datagrams(an, files)
    for d in cut:
        out.cut.setdefault(pair_key(d["src"], d["dst"]), []).append(d)
    for sa in an.sas.values():
        if not sa.messages:
            continue
        proof = _one_way(sa)
        if proof:
            out.one_way[sa] = proof
        if sa.opening_missing():
            out.mid_session[sa] = sa.messages[0]
    return out


def ends_early(waited: float) -> bool:
    """Silence this short after a message sent once is no answer yet, only a capture that stopped."""
    return waited < RETRANSMIT_INTERVAL


# -- the judgements ----------------------------------------------------------------------------------

def _one_way(sa: IkeSa) -> tuple[Seen, Seen, str] | None:
    """All of this SA's messages come from one side, and two of them prove that the other side answered in
    between (with why): the capture misses that direction.  A side that only repeats itself (a peer that
    never answers, a DPD to a dead peer) proves nothing."""
    if len({m.sender for m in sa.messages}) != 1:
        return None
    fresh = [m for m in sa.messages if not m.retransmission]
    for a, b in zip(fresh, fresh[1:]):
        why = _answered_between(sa, a, b)
        if why:
            return a, b, why
    return None


def _answered_between(sa: IkeSa, a: Seen, b: Seen) -> str | None:
    """Why `b` could only be sent after the other side answered `a` (or something after it); None if it could."""
    if a.msg.rspi == ZERO_SPI and b.msg.rspi != ZERO_SPI:
        return f"{b.label} carries the responder's SPI, which only its answer to {a.label} tells"
    if sa.version == 2:  # a requester's next message ID waits for the answer to the last one (window size 1)
        if a.request == b.request and b.msg.message_id > a.msg.message_id:
            what = "request" if a.request else "response"
            return f"the {what} with message ID {b.msg.message_id} follows the one with {a.msg.message_id}"
        return None
    if (a.msg.exchange_type, a.msg.message_id) != (b.msg.exchange_type, b.msg.message_id):
        return None
    ex = sequences.exchange(1, a.msg.exchange_type)
    labels = [s.label for s in ex.steps] if ex else []
    if a.label in labels and b.label in labels and labels.index(b.label) > labels.index(a.label) + 1:
        between = labels[labels.index(a.label) + 1]
        return f"{b.label} follows {a.label} in the same exchange, so {between} came in between"
    return None


def _cut_datagrams(an: Analyzer, files) -> tuple[list[dict], tuple[dict, Seen | dict] | None]:
    """The datagrams cut to their first fragment by the capture's own filter, and one that its receiver
    answered, when the evidence is strong: every fragmented datagram in the capture holds its first fragment
    and nothing else, none completed, and the peers went on as if one arrived (its receiver sent a new
    message, or a first fragment of its own, back after it).  A path that drops non-first fragments looks
    the same until the receiver shows it got the datagram."""
    ra = an.reassembler
    held = ra.incomplete
    if files and any(capture_quality.cut(files, d["frames"]) for d in held):
        return [], None  # the snap length cut them (capture-snaplen), not the filter
    if not held or ra.overlaps or ra.given_up != len(held) or an.stats.fragments != len(held):
        return [], None  # no fragments, more than listed, or some datagram completed: later fragments do get in
    if any(d["fragments"] != 1 or not d["has_first"] for d in held):
        return [], None
    sent: dict[tuple[bytes, bytes], list[tuple[float, int, Seen | dict]]] = {}  # by direction, in time order
    for sa in an.sas.values():
        for m in sa.messages:
            if not m.retransmission:
                sent.setdefault((m.src, m.dst), []).append((m.time, m.ref, m))
    for d in held:
        sent.setdefault((d["src"], d["dst"]), []).append((d["first_time"], d["frames"][0], d))
    for way in sent.values():
        way.sort(key=lambda x: x[:2])
    for d in held:
        back = sent.get((d["dst"], d["src"]), [])
        i = bisect.bisect_right(back, d["first_time"], key=lambda x: x[0])
        if i < len(back):
            return held, (d, back[i][2])
    return [], None


# -- the findings ------------------------------------------------------------------------------------

def one_way(an: Analyzer, files):
    """capture-one-way: an IKE SA of which only one side's messages are in the capture, though they prove
    the other side answered."""
    proven = judge(an, files).one_way
    heard = senders(an) if proven else set()
    for sa, (a, b, why) in proven.items():
        side, other = _roles(a.sender)
        summary = (f"only the {side}'s messages of this IKE SA are in the capture ({sa.count}), yet the {other} "
                   f"answered: {why} ({a.label} frame {_frame(a.ref)}, {b.label} frame {_frame(b.ref)}, "
                   f"{duration(b.time - a.time)} later)")
        silent = _addr(sa, other)
        if silent not in heard:
            summary += f"; nothing at all from {_ip(silent)} is in the capture"
        summary += ": the capture holds one direction only, so what looks unanswered here is not diagnosed"
        yield Finding(WARNING, "capture-one-way", b.label, summary, LIMITS[ONE_WAY].todo + ".", [a.ref, b.ref], [], sa)


def mid_session(an: Analyzer, files):
    """capture-mid-session: an IKE SA whose opening exchange is not in the capture."""
    for sa, first in judge(an, files).mid_session.items():
        opening = "the IKE_SA_INIT request" if sa.version == 2 else "MM1 / AM1"
        what = first.label + ((" request" if first.request else " response") if sa.version == 2 else "")
        summary = (f"the capture holds this IKE SA from the {_roles(first.sender)[0]}'s {what} on (frame "
                   f"{_frame(first.ref)}): {opening} that opened it is not in the capture (the SA began before it, "
                   f"or the capture missed it), so what only the opening shows -- proposals, NAT-D, the NAT-T "
                   f"float, IKE fragmentation support -- is unknown, and no NAT or float conclusion is drawn")
        if first.natt:
            summary += (f"; it is on UDP {an.natt_port} from that first message: NAT-T is in use, and the float, if "
                        f"there was one, predates the capture")
        yield Finding(WARNING, "capture-mid-session", first.label, summary, LIMITS[MID_SESSION].todo + ".",
                      [first.ref], [], sa)


def filtered(an: Analyzer, files):
    """capture-filtered: the capture's own filter dropped the non-first IP fragments."""
    view = judge(an, files)
    if not view.cut:
        return
    cut, (d, back) = [d for ds in view.cut.values() for d in ds], view.cut_answered
    what = f"{back.label} in frame {_frame(back.ref)}" if isinstance(back, Seen) else \
        f"a datagram of its own in frame {_frame(back['frames'][0])}"
    n = len(cut)
    summary = (f"{n} IP datagram{'s are' if n > 1 else ' is'} in the capture as {'their' if n > 1 else 'its'} first "
               f"fragment only -- every fragmented datagram in it -- and the peers went on as if they arrived "
               f"({_ip(d['dst'])} answered the one of frame {_frame(d['frames'][0])} with {what}): the capture's "
               f"filter dropped the non-first fragments (they carry no UDP header, so 'udp port 500' or 'udp port "
               f"4500' does not match them); fragment loss on the path cannot be judged from this capture")
    yield Finding(WARNING, "capture-filtered", "IP", summary, LIMITS[FILTERED].todo + ".",
                  [x["frames"][0] for x in cut[:10]], [])


RULES = [one_way, mid_session, filtered]


# -- wording -----------------------------------------------------------------------------------------

def _roles(sender: str) -> tuple[str, str]:
    return ("initiator", "responder") if sender == "I" else ("responder", "initiator")


def _addr(sa: IkeSa, role: str) -> bytes:
    return (sa.initiator if role == "initiator" else sa.responder)[0]


def senders(an: Analyzer) -> set[bytes]:
    """Every address that sent an IKE message, a NAT-T keepalive or an ESP packet in the capture."""
    out = {m.src for sa in an.sas.values() for m in sa.messages}
    out.update(f.src for f in an.esp.flows.values())
    out.update(a for pair in an.pairs.values() for a in pair.keepalives)
    return out


def _frame(ref: int) -> int:
    return split_ref(ref)[1]


def _ip(addr: bytes) -> str:
    return str(ip_address(addr))
