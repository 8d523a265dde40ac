"""compare's path-loss rules, as rows of the shared cause vocabulary (diagnose.causes).

Every finding of `ikeflow compare` starts from a situation the matching found between two
neighbouring capture points:

   ============ ===================================================================
   situation    what the two captures show
   ============ ===================================================================
   lost         no copy of an IKE message sent at one point arrived at the other
   copy-lost    some copies of a message never arrived, another copy did
   esp          ESP packets of one SA sent at one point never arrived at the other
   unanswered   requests reached the point nearest the peer, were re-sent there and
                never answered
   fragments    an IP datagram's fragments never all arrived at a point
   nat-changed  the NAT between the points changed an end's mapping mid-SA
   icmp         an ICMP error seen at one point only
   empty        a capture holds no packets
   captures     the two captures as a whole: the same capture twice, or two that
                share nothing (no traffic in both, or not taken at the same time);
                the last row (no finding) lets the matching go on
   ============ ===================================================================

`TABLE` holds the rules, one row each: the situation, the evidence predicate (over the
situation's evidence dataclass below), the causes (names from `diagnose.causes.CAUSES`, most
likely first), the severity, the finding code, the clause the finding's summary ends with (for
the captures as a whole: starts with) and the hint.  Clause and hint are formatted with the
finding's facts: {up} and {down}, the points where it was sent and where it should have arrived;
{where}, both in words; {ike} and {natt}, the ports; the rest per situation (compare.findings).
`pick` gives the first row of a situation whose predicate holds; the last row of each situation
always does.  A lost message that later messages got past is a warning, not an error.  Captures
that cannot be compared get one error and no other finding: no loss is judged between them.  A
new rule is a row plus a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ikeflow.diagnose.finding import ERROR, INFO, WARNING

LOST, COPY_LOST, ESP, UNANSWERED = "lost", "copy-lost", "esp", "unanswered"
FRAGMENTS, NAT_CHANGED, ICMP, EMPTY = "fragments", "nat-changed", "icmp", "empty"
CAPTURES = "captures"


# -- evidence, per situation ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Lost:
    """No copy of one IKE message arrived; what else arrived in the same direction."""

    answer: bool  # a response (or not a request)
    fragmented: bool  # it left as IP fragments, or is more than one 1500-byte packet carries
    natt: bool  # sent on the NAT-T port
    natt_arrived: bool  # some message on the NAT-T port arrived
    plain_arrived: bool  # some message not on the NAT-T port arrived
    small_arrived: bool  # some unfragmented message arrived
    none_arrived: bool  # no message of this direction arrived


@dataclass(frozen=True)
class EspLoss:
    """ESP packets of one SA lost between the points."""

    none_arrived: bool
    larger_lost: bool = False  # packet by packet: every packet lost was larger than every one that arrived (2+)


@dataclass(frozen=True)
class Unanswered:
    """Re-sent requests that reached the point nearest the peer, never answered there."""

    icmp_unreachable: bool  # the peer's address answered with an ICMP unreachable
    liveness: bool  # the first of them is an INFORMATIONAL (DPD, liveness check)
    answered_before: bool  # the peer answered earlier messages of that IKE SA


@dataclass(frozen=True)
class Icmp:
    """An ICMP error seen at one point only."""

    expired_mapping: bool  # port unreachable from a NAT's outside address about an end's NAT-T mapping on it


@dataclass(frozen=True)
class Fragments:
    """An IP datagram whose fragments never all arrived at a point."""

    has_first: bool  # its first fragment (with the UDP header) arrived


@dataclass(frozen=True)
class Captures:
    """The two captures as a whole: can they be compared at all?"""

    same: bool  # the same file, or the same packets at the same times (a copy)
    empty: bool  # one of them holds no packets (everything lost before it: capture-empty, then compared)
    shared: bool  # an IKE message or an ESP packet (SPI and sequence number) is in both
    same_ids: bool  # an IKE SA (initiator SPI) or an ESP SPI is in both
    timed: bool  # both clocks tell time: not every timestamp zero, a whole second or the same
    overlap: bool  # their time ranges overlap, on the clock the matching found (0.5 s slack)
    one_way_to_other: bool  # one point's traffic of a conversation the other never saw went one way only, to an
    #                         address the other saw while capturing: all of it lost between, loss and not unrelated


@dataclass(frozen=True)
class Row:
    """One rule: in `situation`, when `when(evidence)` holds, the finding names `causes`."""

    situation: str
    when: Callable[[object], bool]
    causes: tuple[str, ...]  # from diagnose.causes.CAUSES, most likely first
    severity: str
    code: str
    says: str  # the clause that ends the summary, formatted with the facts
    hint: str  # formatted with the facts


def always(evidence) -> bool:
    return True


LOST_CODE = "lost-between-points"
FRAGMENTS_HINT = ("A hop between {up} and {down} drops IP fragments: enable IKE fragmentation (fragmentation=yes / "
                  "force), or lower the MTU, or let fragments through.")
PEER_LOG_HINT = ("Look for these messages in the peer's log, or capture on the peer itself: if they arrive there, "
                 "the peer ignores them (no matching connection, a hung daemon).")
NOTHING_BACK = "; nothing came back, not even ICMP"
UNRELATED_HINT = ("Compare captures of the same tunnel taken at the same time at two points of its path (start both "
                  "before the negotiation, stop both after it): check the file names, and that both capture hosts' "
                  "clocks are right (NTP).")
INCOMPLETE_HINT = "Fragments are dropped on the path; lower the MTU or enable IKE fragmentation (fragmentation=yes)."

TABLE: list[Row] = [
    # -- no copy of an IKE message arrived (facts: where, fragments) ------------------------------------
    Row(LOST, lambda e: e.answer, ("reply-path-lost",), ERROR, LOST_CODE, "answers lost {where}",
        "The answers are lost on the way back between {up} and {down}: check the return path (asymmetric "
        "routing, a stateful firewall, the NAT's reverse mapping)."),
    Row(LOST, lambda e: e.fragmented and (e.small_arrived or e.none_arrived) and e.natt and not e.natt_arrived,
        ("fragments-dropped", "udp4500-blocked"), ERROR, LOST_CODE, "requests lost {where}; {fragments}",
        FRAGMENTS_HINT),
    Row(LOST, lambda e: e.fragmented and (e.small_arrived or e.none_arrived), ("fragments-dropped",), ERROR,
        LOST_CODE, "requests lost {where}; {fragments}", FRAGMENTS_HINT),
    Row(LOST, lambda e: e.natt and not e.natt_arrived and e.plain_arrived, ("udp4500-blocked",), ERROR, LOST_CODE,
        "requests lost {where}; UDP {ike} got through, nothing on UDP {natt} did",
        "Allow UDP {natt} (NAT-T) between {up} and {down}; UDP {ike} passes."),
    Row(LOST, always, ("path-blocked",), ERROR, LOST_CODE, "requests lost {where}",
        "Something between {up} and {down} drops these packets: check the firewall/ACL rules for UDP {ike} and "
        "{natt} on the hops between the two capture points."),
    # -- some copies lost, another arrived (facts: where) -----------------------------------------------
    Row(COPY_LOST, always, (), WARNING, LOST_CODE, "lost {where}; another copy arrived",
        "Occasional loss between the points; retransmissions covered it."),
    # -- ESP of one SA (facts: where, packets, frames, note, esp, src, dst, lost, sent, arrived) ----------
    Row(ESP, lambda e: e.larger_lost, ("mtu-blackhole",), ERROR, LOST_CODE,
        "{lost} packets of {lost_smallest} bytes or more sent at {up} never arrived at {down}, while every packet "
        "of at most {arrived_largest} bytes did: large packets vanish {where} (an MTU black hole)",
        "A hop between {up} and {down} drops packets above its MTU without ICMP 'fragmentation needed': clamp the "
        "TCP MSS in the tunnel, lower the tunnel or interface MTU, or let ICMP type 3 code 4 through."),
    Row(ESP, lambda e: e.none_arrived, ("esp-blocked",), ERROR, LOST_CODE,
        "{packets} packets sent at {up} (frames {frames}), none arrived at {down}: ESP lost {where}{note}",
        "Allow {esp} from {src} to {dst} on the hops between {up} and {down}."),
    Row(ESP, always, (), WARNING, LOST_CODE,
        "{lost} of {packets} packets lost {where} (sequence numbers {sent} sent, {arrived} arrived)",
        "Packet loss on the path between the points (congestion, MTU, a rate limit)."),
    # -- requests through both points, never answered (facts: icmp, peer) ---------------------------------
    Row(UNANSWERED, lambda e: e.icmp_unreachable, ("peer-down",), ERROR, "arrived-unanswered",
        "; the peer's host answered with ICMP {icmp}", "Is the IKE daemon running on {peer}?"),
    # it answered before: a liveness check nobody answers now
    Row(UNANSWERED, lambda e: e.liveness and e.answered_before, ("peer-dead", "peer-ignores"), ERROR,
        "arrived-unanswered", NOTHING_BACK, PEER_LOG_HINT),
    Row(UNANSWERED, always, ("peer-ignores",), ERROR, "arrived-unanswered", NOTHING_BACK, PEER_LOG_HINT),
    # -- IP fragments, NAT, ICMP, the captures themselves -----------------------------------------------
    Row(FRAGMENTS, lambda e: e.has_first, ("fragments-dropped",), ERROR, "fragments-incomplete", "", INCOMPLETE_HINT),
    Row(FRAGMENTS, always, ("fragments-dropped",), WARNING, "fragments-incomplete", "", INCOMPLETE_HINT),
    Row(NAT_CHANGED, always, (), WARNING, "nat-mapping-changed", "",
        "A NAT mapping that changes mid-SA breaks NAT-T; shorten the keepalive interval (keep_alive / "
        "nat_keepalive) below the NAT's UDP timeout."),
    Row(ICMP, lambda e: e.expired_mapping, ("nat-mapping-expired",), ERROR, "icmp-one-side",
        ": the NAT between the points answered for a mapping it had forgotten",
        "Keep the NAT mapping alive: NAT-T keepalives from the end behind the NAT (keep_alive / nat_keepalive) more "
        "often than the NAT's UDP timeout."),
    Row(ICMP, always, (), WARNING, "icmp-one-side", ": sent by a hop between the capture points, or lost between "
        "them",
        "An ICMP error only one capture point sees was generated by a hop between the points (a router or "
        "firewall) or dropped on its way."),
    Row(EMPTY, always, (), WARNING, "capture-empty", "",
        "Check the capture point with the same tcpdump filter while the peers negotiate."),
    # -- the captures as a whole (facts: x, y, what, gap, why): an error here replaces every other finding ------
    Row(CAPTURES, lambda e: e.same, (), ERROR, "compare-same", "{x} and {y} {what}: a capture compared with "
        "itself shows nothing lost or delayed", "Compare captures taken at two different points of the path (e.g. "
        "on both sides of a firewall or NAT) at the same time: check the file names."),
    Row(CAPTURES, lambda e: not e.empty and e.timed and not e.overlap, (), ERROR, "compare-unrelated",
        "{x} and {y} were not taken at the same time: their time ranges are {gap} apart (and no message in both "
        "tells a clock offset), so nothing sent at one could have been seen at the other", UNRELATED_HINT),
    Row(CAPTURES, lambda e: not (e.empty or e.shared or e.timed and (e.same_ids or e.one_way_to_other)), (), ERROR,
        "compare-unrelated", "{x} and {y} have no traffic in common: no IKE message or ESP packet is in both{why}",
        UNRELATED_HINT),
    Row(CAPTURES, always, (), INFO, "", "", ""),  # comparable: no finding, the matching goes on
]


def pick(situation: str, evidence=None) -> Row:
    """The first row of `situation` whose predicate holds for the evidence."""
    return next(row for row in TABLE if row.situation == situation and row.when(evidence))
