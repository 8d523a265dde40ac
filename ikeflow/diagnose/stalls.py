"""Diagnosis: where a negotiation stalls or fails, and the likely causes, ranked.

Two steps:

1. Evidence gathering.  For every IKE SA (and every peer pair's ESP) a small
   step finds the places where the negotiation stopped -- a `Stall` of one of
   the situations below -- and records what stays visible on the wire as
   `facts`: who re-sent what, ICMP errors, IP fragments, the NAT-T float, the
   size of encrypted answers, visible notifies, whether the SA lived on.

   ============== ===========================================================
   situation      what the wire shows
   ============== ===========================================================
   unanswered     a request was sent (often several times), nothing came back
   answer-lost    the peer answered, yet the requester kept re-sending
   not-followed   an answer was seen, the other side's next message never was
   rejected       the peer answered with an error (a notify, visible or
                  inferred from an encrypted answer's size or behaviour)
   liveness       DPD / liveness checks unanswered after the SA was up
   esp            the SAs are up, ESP flows one way only
   ============== ===========================================================

2. Ranking.  `TABLE` holds the cause rules, one row each: the cause, the
   situations and message labels it applies to, the evidence predicate, a
   weight and the explanation.  A cause's score is the sum of the weights of
   its matching rows; the causes are ranked by score (ties keep table order),
   and the best rows' explanations become the finding's summary.  When the top
   two are close, the summary says so and the hint says what tells them apart
   (`TELL`).  A new failure rule is a table row plus a test.

3. Gating.  What the capture cannot show (`capture_limits`: one direction only,
   an end too early, a start inside the SA, its own filter, ...) is named on
   each stall it bears on (`Stall.limits`); ranking skips the rows whose
   evidence a limit voids, and a stall left without causes is a warning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ikeflow.model import liveness, sequences
from ikeflow.model.analysis import Analyzer
from ikeflow.model.events import pair_key
from ikeflow.diagnose import capture_limits, decrypted, defaults
from ikeflow.diagnose.capture_limits import (ENDS_EARLY, FILTERED, LIMITS, MID_SESSION, NO_TIME, ONE_WAY,
                                             RETRANSMIT_INTERVAL, SNAPLEN, CaptureLimits)
from ikeflow.diagnose.causes import CHECK, NOTIFY_CAUSES, TELL
from ikeflow.diagnose.finding import ERROR, WARNING, Finding, duration, merge_alike, times
from ikeflow.model.ikesa import CHILD_OK_MIN, CHILD_PAYLOADS_MIN, ERROR_ONLY_PLAINTEXT, IkeSa, Run, Seen
from ikeflow.sources.capture import split_ref

# -- protocol facts behind the thresholds ------------------------------------------------------------

ETHERNET_MTU = 1500  # the usual path MTU; an IKE datagram above it leaves as IP fragments
IP_UDP_HEADER = {4: 28, 16: 48}  # IPv4 / IPv6 + UDP header bytes, by address length
NON_ESP_MARKER = 4  # IKE on UDP 4500 carries 4 zero bytes first (RFC 3948)
# Smallest Quick Mode message 1 without KE: HASH(1) (4 + 16) + SA (4 + 8 + proposal 8 + SPI 4 + transform 8)
# + Nonce (4 + 8) = 72 bytes after the 28-byte ISAKMP header; a QM1 at least this much larger than
# the phase-1 KE payload has room for a KE payload of that size (PFS).
QM1_MIN_WITHOUT_KE = 28 + 72
# IKEv2 CREATE_CHILD_SA request without KE: SA (36) + Nonce (4 + 16) + TSi + TSr (48) = 104 bytes.
CCSA_MIN_WITHOUT_KE = 104
# An IKEv2 IKE_AUTH request this large carries a certificate: an ECDSA P-256 certificate and signature
# alone are about 600 bytes, RSA-2048 over 1,000; a PSK request with IDs, SA and TS stays near 300.
CERT_AUTH_MIN = 700
# IKEv1 authentication methods that use a pre-shared key (RFC 2409; XAUTHInitPreShared/RespPreShared 65001/65002)
V1_PSK_METHODS = {1, 65001, 65002}
# s of silence from the side behind a NAT before its mapping can have expired (the lab's NAT forgets after
# 5 s; consumer routers after 30 s or more, so a gap this short needs the NAT's ICMP to say so)
NAT_IDLE_MIN = 5.0
# A DPD timeout is a few DPD delays: strongSwan 150 s / 30 s, libreswan dpdtimeout 120 s / dpddelay 30 s
DPD_TIMEOUT_PROBES = 6

NO_PROPOSAL = {"NO-PROPOSAL-CHOSEN", "NO_PROPOSAL_CHOSEN"}
AUTH_FAILED = {"AUTHENTICATION-FAILED", "AUTHENTICATION_FAILED"}
BAD_ID = {"INVALID-ID-INFORMATION"}
BAD_TS = {"TS_UNACCEPTABLE", "INVALID-ID-INFORMATION"}
BAD_HASH = {"INVALID-HASH-INFORMATION", "PAYLOAD-MALFORMED", "INVALID-SIGNATURE"}
BAD_VERSION = {"INVALID-MAJOR-VERSION", "INVALID_MAJOR_VERSION"}


TIE_MARGIN = 2  # causes this close to the best are named together, with what tells them apart
DECIDED = 40  # weight of a cause the decrypted payloads prove: more than any sum of the other rows


# -- evidence ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class Facts:
    """The evidence around a stall; None (or falsy) = not seen.  The rules' `has`/`lacks` and
    explanation templates name these fields: a misspelt name fails when the table is built."""

    # the message and its size on the wire
    label: str | None = None  # set from Stall.at when a text is formatted
    size: int | None = None
    mtu: int | None = None
    port: int | None = None
    sends: str | None = None  # "twice", "5 times"
    fragmented: int | None = None  # left as this many IP fragments
    oversize: int | None = None  # bytes on the wire, more than one MTU-sized packet
    # who is who
    answerer: str | None = None
    requester: str | None = None
    request: str | None = None
    expected: str | None = None
    silent: str | None = None
    # what the other side did
    answered_before: bool | None = None
    after_float: bool | None = None
    peer_resent: str | None = None
    requester_resent: int | None = None
    natt_expected: bool | None = None
    certs: bool | None = None
    ike_fragmentation: bool | None = None
    # ICMP errors
    icmp: int | None = None
    icmp_text: str | None = None
    icmp_frames: list | None = None
    icmp_from: str | None = None
    icmp_too_big: bool | None = None
    icmp_prohibited: bool | None = None
    icmp_from_peer: bool | None = None
    icmp_unreachable: bool | None = None
    # the answer
    notify: str | None = None
    no_spi: bool | None = None
    encrypted: bool | None = None
    answer_on_500: bool | None = None
    other_version: int | None = None
    ke_in_request: bool | None = None
    rekey: bool | None = None  # IKEv2 CREATE_CHILD_SA: the request starts with a Notify (REKEY_SA, RFC 7296 1.3.3)
    new_child: bool | None = None  # ... or with SA: another CHILD_SA (or the IKE SA's rekey)
    ke_size: int | None = None
    ke_group: int | str | None = None
    plaintext: int | None = None
    plaintext_request: int | None = None
    auth_min: int | None = None
    child_min: int | None = None
    error_only: bool | None = None
    child_failed: bool | None = None
    # liveness and ESP
    span: float | None = None
    dpd_restart: bool | None = None  # IKEv1: probes answered here, the prober started phase 1 anew
    encrypted_info: int | None = None  # IKEv1: encrypted INFOs the responder answered MM5 with
    peer_elsewhere: str | None = None  # the silent peer answered another IKE SA meanwhile: "UDP 500 (frame N)"
    natt_checks: bool | None = None  # the unanswered liveness checks went on UDP 4500
    # user and certificate authentication
    xauth: bool | None = None  # IKEv1: the responder asked for XAUTH credentials in Transaction exchanges
    # the daemons' defaults (diagnose.defaults): why this responder refuses every offered proposal
    default_refused: str | None = None
    default_dh_only: bool | None = None  # ... and only the DH group stands in the way
    eap_rounds: int | None = None  # IKEv2: IKE_AUTH rounds so far, the last one included (EAP)
    cert_auth: bool | None = None  # certificates authenticate: IKEv1 chosen method, IKEv2 request size
    request_size: int | None = None  # bytes of the IKE_AUTH request on the wire (all its fragments)
    # NAT mapping expiry
    nat_idle: float | None = None  # s the side behind the NAT sent nothing before the ICMP
    natted: str | None = None  # that side, "initiator" / "responder"
    # why nothing is ranked although the wire shows a stall
    superseded: str | None = None  # the requester gave this attempt up for another IKE SA that worked
    impossible: str | None = None  # the header says something no daemon sends
    src: str | None = None
    dst: str | None = None
    packets: int | None = None
    # with keys (diagnose.decrypted): the one cause the decrypted payloads prove, and those payloads quoted
    decrypted: str | None = None
    decisive: str | None = None

    def known(self) -> dict:
        """The facts seen, by name (for the explanation templates)."""
        return {name: getattr(self, name) for name in self.__slots__ if getattr(self, name) is not None}


FACTS = frozenset(Facts.__slots__)


@dataclass
class Stall:
    """One place where a negotiation stopped, with the evidence around it."""

    kind: str  # the situation, see the module docstring
    at: str  # label of the last message sent and never properly answered or followed
    story: str  # what the wire shows, one clause
    frames: list[int]
    sa: IkeSa | None = None
    pair: tuple[bytes, bytes] | None = None
    severity: str = ERROR
    facts: Facts = field(default_factory=lambda: Facts())
    limits: dict[str, str] = field(default_factory=dict)  # capture limit (capture_limits.LIMITS) -> what it hides here


@dataclass(frozen=True)
class Check:
    """An evidence predicate over a stall, with the facts it reads (a capture limit may void them)."""

    test: Callable[[Stall], bool]
    reads: frozenset[str] = frozenset()

    def __call__(self, stall: Stall) -> bool:
        return self.test(stall)


@dataclass(frozen=True)
class Row:
    """One cause rule: `cause` gains `weight` when the evidence predicate `when` holds."""

    cause: str
    kinds: tuple[str, ...]  # situations it applies to
    labels: tuple[str, ...] | None  # message labels (`at`) it applies to; None = any
    when: Check
    weight: int
    why: str  # explanation, formatted with the stall's facts


def _facts(names: tuple[str, ...]) -> frozenset[str]:
    unknown = set(names) - FACTS
    if unknown:
        raise ValueError(f"not a Facts field: {', '.join(sorted(unknown))}")
    return frozenset(names)


def has(*names: str) -> Check:
    """Every named fact is present."""
    return Check(lambda s: all(getattr(s.facts, n) for n in names), _facts(names))


def lacks(*names: str) -> Check:
    """No named fact is present."""
    return Check(lambda s: not any(getattr(s.facts, n) for n in names), _facts(names))


def notify(*names: str) -> Check:
    """The answer carried one of these notifies (readable on the wire)."""
    return Check(lambda s: s.facts.notify in names, frozenset({"notify"}))


def proven(cause: str) -> Check:
    """The decrypted payloads prove `cause` (diagnose.decrypted)."""
    return Check(lambda s: s.facts.decrypted == cause, frozenset({"decrypted"}))


def both(*checks: Check) -> Check:
    return Check(lambda s: all(c(s) for c in checks), frozenset().union(*(c.reads for c in checks)))


always = Check(lambda s: True)


U, L, F, J, D, E = "unanswered", "answer-lost", "not-followed", "rejected", "liveness", "esp"
PHASE1_OPEN = ("MM1", "AM1", "IKE_SA_INIT")
AUTH = ("MM5", "AM3", "IKE_AUTH")
CHILD = ("QM1", "CREATE_CHILD_SA")

TABLE: list[Row] = [
    # -- a request nobody answers ------------------------------------------------------------------
    Row("peer-down", (U,), None, has("icmp_from_peer"), 12,
        "the host is up but no IKE daemon listens (ICMP {icmp_text} from the peer's own address)"),
    Row("path-blocked", (U,), None, has("icmp_prohibited"), 12,
        "{icmp_from} answered with ICMP {icmp_text}, which a filter on the path sends"),
    Row("peer-down", (U,), None, has("icmp_unreachable"), 8,
        "{icmp_from} answered with ICMP {icmp_text}: the peer is not reachable"),
    Row("fragments-dropped", (U,), None, has("icmp_too_big"), 10,
        "{icmp_from} answered with ICMP {icmp_text}: {label} is too big for the path"),
    Row("fragments-dropped", (U,), None, has("fragmented"), 9,
        "{label} ({size} bytes) left as {fragmented} IP fragments, and the path drops fragments"),
    Row("fragments-dropped", (U,), None, both(has("oversize"), lacks("fragmented")), 4,
        "{label} is {size} bytes, more than one {mtu}-byte packet carries, so it leaves as IP fragments"),
    Row("udp4500-blocked", (U,), None, has("after_float"), 7,
        "{label} is the first message after the NAT-T float to UDP 4500, and UDP 500 worked before"),
    Row("path-blocked", (U,), PHASE1_OPEN, lacks("icmp"), 3,
        "{label} opens the negotiation and nothing came back, not even ICMP: a filter between the peers may drop "
        "UDP {port}"),
    Row("peer-ignores", (U,), PHASE1_OPEN, lacks("icmp"), 2,
        "the peer may get {label} and stay silent (no connection for this address, or a hung daemon)"),
    Row("peer-down", (U,), PHASE1_OPEN, lacks("icmp"), 1, "the peer host may be off"),
    Row("reply-path-lost", (U,), PHASE1_OPEN, lacks("icmp"), 1, "the answers may be lost on the way back"),
    Row("path-blocked", (U,), None, both(has("peer_resent"), lacks("after_float", "fragmented")), 4,
        "the peer re-sent {peer_resent} meanwhile, so it never got a usable {label}"),
    Row("peer-ignores", (U,), None, both(has("answered_before"), lacks("after_float", "fragmented", "peer_resent")),
        3, "the peer answered the earlier messages on this path, yet not {label}"),
    Row("psk-mismatch", (U,), ("MM5",), both(has("answered_before"), lacks("peer_resent", "fragmented")), 2,
        "a responder that cannot decrypt MM5 (another PSK) may drop it silently"),
    Row("path-blocked", (U,), None, both(has("answered_before"), lacks("after_float", "fragmented")), 1,
        "{label} may be lost on the way to the peer"),
    # -- the answer is lost on the way back --------------------------------------------------------
    Row("fragments-dropped", (L,), None, has("fragmented"), 11,
        "{label} left as {fragmented} IP fragments: the fragments are lost on the way back"),
    # IKEv1: MM5 reached this point, yet the responder re-sends MM4 (libreswan's pluto, checked in the lab)
    Row("peer-id-mismatch", (L,), ("MM5",), has("encrypted_info"), 13,
        "the responder could decrypt MM5, so the PSK matches, and it refused the identity (libreswan sends "
        "INVALID_ID_INFORMATION, encrypted)"),
    Row("psk-mismatch", (L,), ("MM5",), lacks("encrypted_info", "fragmented"), 11,
        "MM5 reached this point, yet the responder could not use it; libreswan does this when it cannot decrypt "
        "MM5 (another PSK)"),
    Row("reply-path-lost", (L,), None, lacks("dpd_restart", "encrypted_info"), 10,
        "the {requester} kept re-sending {request} as if no answer came, so the {answerer}'s answers do not reach "
        "it"),
    Row("reply-path-lost", (L,), None, has("dpd_restart"), 10,
        "every probe was answered here, yet the {requester} declared the {answerer} dead, so the answers never "
        "reached it"),
    Row("udp4500-blocked", (L,), None, both(has("after_float"), lacks("encrypted_info")), 3,
        "{label} is the first answer on UDP 4500"),
    # -- the next message never shows up -------------------------------------------------------------
    Row("fragments-dropped", (F,), None, both(has("certs"), lacks("ike_fragmentation")), 7,
        "{label} carries the certificates, more than one {mtu}-byte packet holds, and the peers do not both "
        "support IKE fragmentation"),
    Row("udp4500-blocked", (F,), None, has("natt_expected"), 6,
        "NAT-D found a NAT, so {label} moves to UDP 4500, and it never arrived here after a clean exchange on UDP 500"),
    Row("xauth-failed", (F,), ("CFG",), has("xauth"), 12,
        "the responder refused the user's credentials (XAUTH status FAIL, which is encrypted), since a client whose "
        "login passes goes on to Mode Config or Quick Mode at once"),
    Row("path-blocked", (F,), None, lacks("xauth"), 2, "{label} was lost between the {silent} and this capture point"),
    # -- answered with an error ------------------------------------------------------------------------
    Row("ike-version-mismatch", (J,), None, has("other_version"), 12,
        "the peer answered {label} with an IKEv{other_version} message"),
    Row("ike-version-mismatch", (J,), None, notify(*BAD_VERSION), 12,
        "the {answerer} does not speak this IKE version ({notify})"),
    Row("ike-version-mismatch", (J,), ("MM1", "AM1"), both(notify(*NO_PROPOSAL), has("no_spi")), 9,
        "the {notify} carries no SPI, so the responder refused before it looked at the proposals, as when it has no "
        "IKEv1 connection for this peer (perhaps IKEv2 only)"),
    # the responder's default proposals (named by its Vendor ID) refuse everything offered: say what to configure
    Row("dh-group-mismatch", (J,), PHASE1_OPEN, both(notify(*NO_PROPOSAL), has("default_dh_only")), 9,
        "{default_refused}"),
    Row("proposal-mismatch", (J,), PHASE1_OPEN, both(notify(*NO_PROPOSAL), has("default_refused"),
                                                     lacks("default_dh_only")), 11, "{default_refused}"),
    Row("proposal-mismatch", (J,), None, notify(*NO_PROPOSAL), 10,
        "the {answerer} accepts none of the proposals in {label} ({notify})"),
    Row("dh-group-mismatch", (J,), ("MM1", "AM1", "IKE_SA_INIT"), notify(*NO_PROPOSAL), 8,
        "a DH group missing on the responder is refused the same way (the group is part of the proposal)"),
    Row("ike-version-mismatch", (J,), ("MM1", "AM1"), notify(*NO_PROPOSAL), 2,
        "a responder without an IKEv1 connection for this peer answers the same way"),
    Row("dh-group-mismatch", (J,), ("IKE_SA_INIT",), notify("INVALID_KE_PAYLOAD"), 12,
        "the responder asked for DH group {ke_group} (INVALID_KE_PAYLOAD) and the initiator did not retry with it"),
    Row("aggressive-mode-refused", (J,), ("AM1",), notify(*AUTH_FAILED, *BAD_ID), 12,
        "the responder refused AM1 before it could check any authentication data, so it does not allow Aggressive "
        "Mode (with PSK)"),
    Row("peer-id-mismatch", (J,), ("AM1",), notify(*AUTH_FAILED, *BAD_ID), 6,
        "or it has no connection for the identity that AM1 carries"),
    Row("psk-mismatch", (J,), AUTH, notify(*AUTH_FAILED), 10,
        "the {answerer} refused the authentication in {label} ({notify}), which a different pre-shared key causes"),
    Row("peer-id-mismatch", (J,), AUTH, both(notify(*AUTH_FAILED), lacks("cert_auth")), 8,
        "an unknown identity is refused the same way"),
    Row("peer-id-mismatch", (J,), ("MM5", "AM2", "AM3", "MM6"), notify(*BAD_ID), 10,
        "the {answerer} refused the identity in {label} ({notify})"),
    Row("subnet-mismatch", (J,), ("QM1", "QM2", "IKE_AUTH", "CREATE_CHILD_SA"), notify(*BAD_TS), 10,
        "the {answerer} refused the subnets (traffic selectors) of {label} ({notify})"),
    Row("psk-mismatch", (J,), None, notify(*BAD_HASH), 10,
        "the {answerer} could not read or verify {label} ({notify}), as when the two ends derive their keys from "
        "different pre-shared keys"),
    Row("pfs-mismatch", (J,), CHILD, both(notify(*NO_PROPOSAL), has("ke_in_request")), 6,
        "{label} asks for PFS (it carries a KE payload), and a PFS group the {answerer} lacks is refused the same "
        "way"),
    # IKEv1 phase 1, refused under encryption
    Row("psk-mismatch", (J,), ("MM5",), both(has("encrypted"), has("requester_resent")), 10,
        "neither side can decrypt the other's messages, and IKEv1 derives the keys from the PSK"),
    Row("psk-mismatch", (J,), ("MM5",), both(has("encrypted"), has("answer_on_500")), 2,
        "the INFO came from UDP 500, not 4500, so the responder never got as far as processing MM5"),
    Row("peer-id-mismatch", (J,), ("MM5",), both(has("encrypted"), has("requester_resent")), 3,
        "an identity refused before decryption looks alike"),
    Row("cert-untrusted", (J,), ("MM5",), both(has("encrypted"), has("cert_auth")), 12,
        "phase 1 authenticates by certificate (no PSK involved), so the responder could not verify the certificate "
        "(an untrusted CA, or expired) or refused its identity"),
    Row("peer-id-mismatch", (J,), ("MM5",), both(has("encrypted"), lacks("requester_resent")), 10,
        "the initiator read the responder's encrypted INFO and stopped, so both ends derive the same keys: the PSK "
        "matches and the responder refused the identity"),
    Row("psk-mismatch", (J,), ("MM5",), both(has("encrypted"), lacks("requester_resent")), 4,
        "or the responder refused the authentication itself"),
    Row("psk-mismatch", (J,), ("AM2",), has("encrypted"), 10,
        "the initiator could not verify the responder's HASH_R, which derives from the PSK"),
    Row("peer-id-mismatch", (J,), ("AM2",), has("encrypted"), 5, "or it does not accept the responder's identity"),
    # IKEv1 Quick Mode, refused under encryption
    Row("pfs-mismatch", (J,), ("QM1",), both(has("encrypted"), has("ke_in_request")), 7,
        "QM1 ({size} bytes) has room for a KE payload (phase-1 KE {ke_size} bytes), so PFS is on, and the responder "
        "refuses a PFS group it does not have this way"),
    Row("proposal-mismatch", (J,), ("QM1", "QM2"), has("encrypted"), 6,
        "the {answerer} most often answers this way (an encrypted NO_PROPOSAL_CHOSEN) when it accepts none of the "
        "ESP proposals"),
    Row("subnet-mismatch", (J,), ("QM1", "QM2"), has("encrypted"), 5,
        "or the {answerer} refuses the subnets (INVALID_ID_INFORMATION)"),
    Row("pfs-mismatch", (J,), ("QM1",), both(has("encrypted"), lacks("ke_in_request")), 1,
        "or the responder requires PFS"),
    Row("proposal-mismatch", (J,), ("MM1", "MM3", "AM1"), has("encrypted"), 3,
        "the {answerer} refused {label} with an encrypted INFO"),
    # IKEv2, refused under encryption: the size of the answer tells
    Row("eap-failed", (J,), ("IKE_AUTH",), both(has("error_only"), has("eap_rounds")), 12,
        "IKE_AUTH went {eap_rounds} rounds (EAP, after the responder's own AUTH) and the last answer holds at most "
        "{plaintext} bytes, the size of an EAP-Failure, so the user's credentials were refused"),
    Row("cert-untrusted", (J,), ("IKE_AUTH",), both(has("error_only"), has("cert_auth"), lacks("eap_rounds")), 12,
        "the IKE_AUTH request ({request_size} bytes) carries a certificate and the answer holds at most {plaintext} "
        "bytes, so the certificate was refused (AUTHENTICATION_FAILED: an untrusted CA, or expired)"),
    Row("psk-mismatch", (J,), ("IKE_AUTH",), both(has("error_only"), lacks("eap_rounds")), 10,
        "{plaintext} bytes are too few for IDr + AUTH ({auth_min}), so the answer is an error notify such as "
        "AUTHENTICATION_FAILED, which a different pre-shared key gives"),
    Row("peer-id-mismatch", (J,), ("IKE_AUTH",), both(has("error_only"), lacks("eap_rounds")), 9,
        "an unknown identity gets the same answer"),
    Row("proposal-mismatch", (J,), ("IKE_AUTH",), has("child_failed"), 6,
        "the IKE_AUTH response ({plaintext} bytes) fits IDr + AUTH but not SA + TSi + TSr ({child_min}), so the IKE "
        "SA is up and the CHILD_SA was refused, most often with NO_PROPOSAL_CHOSEN (the ESP proposals, esp=)"),
    Row("subnet-mismatch", (J,), ("IKE_AUTH",), has("child_failed"), 5,
        "or the responder refused the subnets (TS_UNACCEPTABLE)"),
    Row("pfs-mismatch", (J,), ("CREATE_CHILD_SA",), both(has("error_only"), has("ke_in_request"), lacks("new_child")),
        8, "the CREATE_CHILD_SA request carries a KE payload ({plaintext_request} bytes) and got an error-only "
        "answer, as when the PFS groups (the DH group of the child SA) differ"),
    Row("pfs-mismatch", (J,), ("CREATE_CHILD_SA",), both(has("error_only"), has("ke_in_request"), has("new_child")),
        3, "the request carries a KE payload: a PFS group the responder lacks is refused the same way"),
    Row("subnet-mismatch", (J,), ("CREATE_CHILD_SA",), both(has("error_only"), has("new_child")), 7,
        "it asks for another CHILD_SA (its encrypted part starts with SA, not N(REKEY_SA)), which the first IKE_AUTH "
        "child did not need: its traffic selectors (TS_UNACCEPTABLE) or proposals are new to the responder"),
    Row("proposal-mismatch", (J,), ("CREATE_CHILD_SA",), has("error_only"), 6,
        "the CREATE_CHILD_SA response holds at most {plaintext} bytes, an error notify and no new SA: the "
        "responder may accept none of the proposals"),
    Row("subnet-mismatch", (J,), ("CREATE_CHILD_SA",), both(has("error_only"), lacks("ke_in_request")), 5,
        "or the responder refused the subnets (TS_UNACCEPTABLE)"),
    # -- decrypted with the admin's keys: the payloads name the cause (outweighs every row above) --------
    *(Row(cause, (U, L, F, J), None, proven(cause), DECIDED, "{decisive}")
      for cause in ("psk-mismatch", "peer-id-mismatch", "cert-untrusted", "subnet-mismatch", "proposal-mismatch",
                    "pfs-mismatch", "eap-failed")),
    # -- liveness after the tunnel was up --------------------------------------------------------------
    Row("peer-dead", (D,), None, lacks("peer_elsewhere"), 10,
        "the peer stopped answering once the tunnel was up"),
    Row("udp4500-blocked", (D,), None, both(has("peer_elsewhere"), has("natt_checks")), 10,
        "the peer is alive (it answered another IKE SA on {peer_elsewhere}) but not the checks on UDP 4500, so UDP "
        "4500 is lost between the peers"),
    Row("path-blocked", (D,), None, has("peer_elsewhere"), 6,
        "the peer is alive (it answered another IKE SA on {peer_elsewhere}): the checks or their answers are lost "
        "on the way; a capture at the peer shows which"),
    Row("path-blocked", (D,), None, lacks("icmp", "peer_elsewhere"), 2, "an expired NAT mapping or firewall state for UDP {port} "
        "looks the same; a capture at the peer shows whether the checks arrive there and are answered"),
    Row("reply-path-lost", (D,), None, lacks("icmp"), 1, "or the answers are lost on the way back"),
    Row("peer-down", (D,), None, has("icmp_from_peer"), 12,
        "the peer's IKE daemon is gone (its host answered with ICMP {icmp_text})"),
    # -- the data plane ------------------------------------------------------------------------------
    Row("nat-mapping-expired", (E,), None, has("nat_idle"), 12,
        "the NAT forgot the {natted}'s mapping after {nat_idle:.0f} s without traffic, and now answers for it with "
        "ICMP {icmp_text}"),
    Row("peer-down", (E,), None, has("nat_idle"), 3,
        "or the {natted}'s IKE daemon is gone and the NAT passes its host's ICMP on"),
    Row("peer-down", (E,), None, both(has("icmp_from_peer"), lacks("nat_idle")), 12,
        "no IPsec stack on the peer's host takes ESP (its IPsec service or kernel module is not running, or it has "
        "no SA and rejects the protocol)"),
    Row("esp-blocked", (E,), None, lacks("nat_idle", "icmp_from_peer"), 10,
        "the SAs are up, so ESP (IP protocol 50, or UDP 4500 when encapsulated) is dropped on the way back"),
    Row("subnet-mismatch", (E,), None, lacks("nat_idle", "icmp_from_peer"), 1, "or the far end does not route the "
        "answers into the tunnel"),
]


# Certificate authentication: no pre-shared key is involved, so no psk-mismatch row applies.
TABLE = [Row(r.cause, r.kinds, r.labels, both(r.when, lacks("cert_auth")), r.weight, r.why)
         if r.cause == "psk-mismatch" else r for r in TABLE]


def rank(stall: Stall) -> list[tuple[str, int, list[str]]]:
    """(cause, score, explanations) for every cause some row supports, best first; none for the rows
    whose evidence the stall's capture limits void."""
    void = capture_limits.voided(stall.limits)
    if void is None:
        return []
    scores: dict[str, int] = {}
    whys: dict[str, list[tuple[int, str]]] = {}
    for row in TABLE:
        if stall.kind not in row.kinds or (row.labels is not None and stall.at not in row.labels):
            continue
        if row.when.reads & void or not row.when(stall):
            continue
        scores[row.cause] = scores.get(row.cause, 0) + row.weight
        whys.setdefault(row.cause, []).append((row.weight, _fmt(row.why, stall)))
    order = {c: i for i, c in enumerate(dict.fromkeys(r.cause for r in TABLE))}
    ranked = sorted(scores, key=lambda c: (-scores[c], order[c]))
    return [(c, scores[c], [w for _, w in sorted(whys[c], key=lambda x: -x[0])]) for c in ranked]


class _Facts(dict):
    def __missing__(self, key):
        return "?"


def _fmt(text: str, stall: Stall) -> str:
    facts = _Facts(stall.facts.known())
    facts.setdefault("label", stall.at)
    try:
        return text.format_map(facts)
    except (ValueError, TypeError):
        return text


def to_finding(stall: Stall, an: Analyzer) -> Finding:
    """The finding for a stall: causes ranked by the table, summary and hint in an admin's words, and
    the capture limits that applied.  The summary is sentences: what the wire shows, then the likely
    cause in words (`SAID`) and why; the JSON `causes` keep the cause names."""
    ranked = rank(stall)
    causes = [c for c, _, _ in ranked]
    summary, hint = stall.story, ""
    if stall.limits:
        summary += f" (capture: {'; '.join(stall.limits.values())})"
    moot = stall.facts.superseded or stall.facts.impossible
    if moot:
        summary += f". Nothing to diagnose: {moot}"
        return Finding(WARNING, _code(stall), stall.at, summary, "", sorted(set(stall.frames)), [], stall.sa,
                       stall.pair)
    if capture_limits.voided(stall.limits) is None:
        summary += (". The capture cannot show why, so no cause is ranked" +
                    (" and it is not counted as a failure" if stall.severity == ERROR else ""))
        hint = " ".join(LIMITS[name].todo + "." for name in stall.limits if LIMITS[name].voids is None)
        return Finding(WARNING, _code(stall), stall.at, summary, hint,
                       sorted(set(stall.frames)), [], stall.sa, stall.pair)
    if ranked:
        best, score, whys = ranked[0]
        close = [] if stall.facts.decrypted else [c for c, s, _ in ranked[1:] if s >= score - TIE_MARGIN][:1]
        lead = "The decrypted payloads show" if best == stall.facts.decrypted else "Likely"
        summary += f". {lead} {said(best)}" + (f" or {said(close[0])}" if close else "") + f": {whys[0]}"
        hint = CHECK[best][0].upper() + CHECK[best][1:] + "."
        if close:
            hint += f" If that is fine: {CHECK[close[0]]}. {_tell(best, close[0])[0].upper()}{_tell(best, close[0])[1:]}."
        elif len(ranked) > 1:
            hint += f" Next suspect: {said(ranked[1][0])} — {ranked[1][2][0].removeprefix('or ')}."
    severity, summary = _demote(an, stall, summary)
    proven_ = bool(ranked) and ranked[0][0] == stall.facts.decrypted
    return Finding(severity, _code(stall), stall.at, summary, hint, sorted(set(stall.frames)), causes, stall.sa,
                   stall.pair, evidence="decrypted" if proven_ else "")


# The causes of diagnose.causes.CHECK as a finding's sentence names them ("Likely a PSK mismatch: ...").
SAID = {
    "path-blocked": "a filter on the path",
    "peer-down": "a peer that is down",
    "peer-ignores": "a peer ignoring the request",
    "reply-path-lost": "answers lost on the way back",
    "udp4500-blocked": "UDP 4500 blocked",
    "fragments-dropped": "IP fragments dropped on the path",
    "proposal-mismatch": "a proposal mismatch",
    "ike-version-mismatch": "an IKE version mismatch",
    "dh-group-mismatch": "a DH group mismatch",
    "pfs-mismatch": "a PFS mismatch",
    "psk-mismatch": "a PSK mismatch",
    "peer-id-mismatch": "a peer ID mismatch",
    "subnet-mismatch": "a subnet mismatch",
    "aggressive-mode-refused": "Aggressive Mode refused by the responder",
    "esp-blocked": "ESP blocked one way",
    "peer-dead": "a dead peer",
    "mtu-blackhole": "an MTU black hole",
    "nat-mapping-expired": "an expired NAT mapping",
    "cert-untrusted": "an untrusted certificate",
    "xauth-failed": "a failed XAUTH login",
    "eap-failed": "a failed EAP login",
}


if set(SAID) != set(CHECK):  # a new cause needs its words here too
    raise ValueError(f"SAID and causes.CHECK differ: {', '.join(sorted(set(SAID) ^ set(CHECK)))}")


def said(cause: str) -> str:
    """A cause as a sentence names it."""
    return SAID.get(cause, cause)


def _code(stall: Stall) -> str:
    """esp-blocked for ESP one way; stall for everything else (a NAT that forgot the mapping, ESP refused by ICMP)."""
    return "esp-blocked" if stall.kind == E and not (stall.facts.nat_idle or stall.facts.icmp_from_peer) else "stall"


def _tell(a: str, b: str) -> str:
    return TELL.get(frozenset({a, b}), "a capture at the peer, or the peer's log, tells them apart")


def later_success(an: Analyzer, sa: IkeSa) -> IkeSa | None:
    """A later IKE SA between the same peers that came up, which makes this one's failure history."""
    kept = sa in (an.sas.get((sa.version, sa.ispi)), an.sas.get((sa.version, sa.ispi, sa.rspi)))
    if sa.initiator is None or not kept:
        return None
    last = an.pair_of(sa).last_up
    return last if last is not None and last.index > sa.index else None


def _demote(an: Analyzer, stall: Stall, summary: str) -> tuple[str, str]:
    """A failure that a later attempt between the same peers overcame is a warning."""
    if (stall.severity == ERROR and stall.sa is not None and stall.kind not in (D, E) and not stall.facts.dpd_restart
            and later_success(an, stall.sa)):
        return WARNING, summary + ". A later IKE SA between these peers came up"
    return stall.severity, summary


# -- gathering -----------------------------------------------------------------------------------------

def _other(role: str) -> str:
    return "R" if role == "I" else "I"


def _who(role: str) -> str:
    return "initiator" if role == "I" else "responder"


def _addr(sa: IkeSa, role: str) -> bytes:
    return (sa.initiator if role == "I" else sa.responder)[0]


def _before(a: Seen, b: Seen) -> bool:
    """`a` was captured before `b` (frame order breaks ties: some captures carry no timestamps)."""
    return (a.time, a.ref) < (b.time, b.ref)


def _mode(sa: IkeSa, run: Run) -> str:
    """The exchange a stall is in, as a summary names it first: "Main Mode", "Quick Mode", "IKEv2"."""
    return run.exchange.name if sa.version == 1 and run.exchange.phase != 1 else sa.mode()


# What a stall's summary opens with, the exchange it is in ("Main Mode: ", "Quick Mode: ", "IKEv2: ", "XAUTH: ").
EXCHANGE_NAMES = frozenset({x.name for x in sequences.EXCHANGES.values()}
                           | {"IKEv2", "XAUTH", "IKEv1 (phase 1 not seen)"})


def without_exchange(summary: str) -> str:
    """A finding's summary without the exchange a stall's summary opens with, for a verdict that names the place."""
    head, sep, rest = summary.partition(": ")
    return rest if sep and head in EXCHANGE_NAMES else summary


def _informational(sa: IkeSa) -> str:
    """The liveness checks' exchange: "Informational" (IKEv1), "IKEv2"."""
    return "Informational" if sa.version == 1 else sa.mode()


def _sends(run: Run, last: Seen) -> list[Seen]:
    return [m for m in run.messages if m.label == last.label and m.sender == last.sender]


def _mtu_facts(m: Seen, facts: Facts) -> Facts:
    facts.size, facts.mtu = m.size, ETHERNET_MTU
    wire = m.size + IP_UDP_HEADER.get(len(m.src), 28) + (NON_ESP_MARKER if m.natt else 0)
    if m.fragments:
        facts.fragmented = len(m.fragments)
    elif wire > ETHERNET_MTU:
        facts.oversize = wire
    return facts


def _icmp_facts(an: Analyzer, sa: IkeSa, peer: bytes, since: float, facts: Facts) -> Facts:
    """ICMP errors about this SA's packets to `peer`, sorted into what they say."""
    pair = an.pairs.get(pair_key(sa.initiator[0], sa.responder[0]))
    events = [e for e in (pair.icmp if pair else []) if e.time >= since - 1.0
              and (e.sa == (sa.version, sa.ispi) or (e.sa is None and e.about[2] == peer))]
    if not events:
        return facts
    e = events[0]
    facts.icmp, facts.icmp_text, facts.icmp_frames = len(events), e.text, [x.ref for x in events[:10]]
    facts.icmp_from = "the peer" if e.src == peer else "a router"
    if "too big" in e.text or "fragmentation needed" in e.text:
        facts.icmp_too_big = True
    elif "prohibited" in e.text:
        facts.icmp_prohibited = True
    elif e.src == peer and ("port unreachable" in e.text or "protocol unreachable" in e.text):
        facts.icmp_from_peer = True
    else:
        facts.icmp_unreachable = True
    return facts


def _both_fragmentation(sa: IkeSa) -> bool:
    """Both ends announced IKE fragmentation (IKEv2 notify, IKEv1 Vendor ID)."""
    if sa.version == 2:
        said = {m.sender for m in sa.messages for _, n in m.msg.notifies if n == "IKEV2_FRAGMENTATION_SUPPORTED"}
        return said == {"I", "R"}
    return all("FRAGMENTATION" in sa.vendors.get(r, ()) for r in ("I", "R"))


def _certs(sa: IkeSa) -> bool:
    return any(p.name in ("CR", "CERTREQ", "CERT") for m in sa.messages for p in m.msg.payloads)


def _ke_size(sa: IkeSa) -> int | None:
    """Length of the phase-1 / IKE_SA_INIT KE payload: the size of one DH public value of this SA."""
    for m in sa.messages:
        ke = m.msg.payload("KE")
        if ke is not None and not m.msg.encrypted:
            return ke.length
    return None


def _other_version(an: Analyzer, sa: IkeSa) -> int | None:
    """The peer answered with the other IKE version (same initiator SPI, from the responder's address)."""
    other = an.sas.get((3 - sa.version, sa.ispi))
    if other and sa.responder and any(m.src == sa.responder[0] for m in other.messages):
        return other.version
    return None


_ONE_RUN: dict[int, dict[IkeSa, list[Stall]]] = {}  # id(Analyzer) -> each IKE SA's stalls, while `one_run` holds


@contextmanager
def one_run(an: Analyzer) -> Iterator[None]:
    """While the rules run over a model that does not change, each IKE SA's stalls are found once (three
    rules ask: `stalls`, `esp_blocked`, `error_notifies`; the others read only what `limit` leaves alone)."""
    _ONE_RUN[id(an)] = {}
    try:
        yield
    finally:
        del _ONE_RUN[id(an)]


def sa_stalls(an: Analyzer, sa: IkeSa) -> list[Stall]:
    """Every place where this IKE SA's negotiation stopped, with its evidence."""
    memo = _ONE_RUN.get(id(an))
    if memo is None:
        return _sa_stalls(an, sa)
    if sa not in memo:
        memo[sa] = _sa_stalls(an, sa)
    return memo[sa]


def _sa_stalls(an: Analyzer, sa: IkeSa) -> list[Stall]:
    if sa.retried_by or sa.initiator is None or not sa.messages:
        return []
    out = []
    for run in list(sa.runs.values()):
        if not run.done:
            continue
        if run.exchange.phase == 0 and (sa.version == 1 or run.exchange.type == 37):
            continue  # liveness / deletes: below
        stall = _run_stall(an, sa, run)
        if stall:
            out.append(stall)
    out.extend(_liveness(an, sa))
    out.append(_xauth(an, sa))
    out = [x for x in out if x]
    refusal = defaults.default_refusal(sa)
    for stall in out:
        if refusal and stall.kind == J and stall.at in PHASE1_OPEN and stall.facts.notify in NO_PROPOSAL:
            stall.facts.default_refused, stall.facts.default_dh_only = refusal[0], refusal[1] == {defaults.DH} or None
    if _cert_auth(sa):
        for stall in out:
            if stall.at in AUTH:
                stall.facts.cert_auth = True
                stall.facts.request_size = stall.facts.request_size or _auth_request_size(sa)
    for stall in out if sa.decryption is not None else ():
        stall.facts.decrypted, stall.facts.decisive = decrypted.decide(sa, stall.at, stall.frames) or (None, None)
        ids = decrypted.auth_ids(sa) if stall.facts.decrypted is None and stall.at == "IKE_AUTH" else ""
        if ids:
            stall.story += f"; the request carried {ids}"
    return out


def _run_stall(an: Analyzer, sa: IkeSa, run: Run) -> Stall | None:
    ex = run.exchange
    firsts = [m for m in run.messages if not m.retransmission]
    last = firsts[-1]
    done = sequences.complete(ex, run.done)
    lost = _answer_lost(an, sa, run)
    if lost:
        return lost
    if sa.version == 2:
        return _v2_run(an, sa, run, last, done)
    if done:
        return None
    nxt = sequences.next_step(ex, run.done[-1])
    if nxt is None:
        return None
    role = last.sender
    other = _other(role)
    replies = [m for m in sa.messages if m.sender == other and m.time >= last.time and m not in run.messages
               and m.msg.exchange_type == sequences.INFORMATIONAL_V1]
    if replies:
        return _v1_rejected(an, sa, run, last, replies, nxt)
    if not last.request and ex.phase == 1:
        return _not_followed(an, sa, run, last, nxt)  # an answer, and the other side's next step never came
    return _unanswered(an, sa, run, last, _sends(run, last))


def _answer_lost(an: Analyzer, sa: IkeSa, run: Run) -> Stall | None:
    """The peer answered, yet the requester kept re-sending the request and never moved on."""
    msgs = run.messages
    for i, ans in enumerate(msgs):
        if ans.retransmission or (sa.version == 2 and ans.request):
            continue
        req_role = _other(ans.sender)
        before = [m for m in msgs[:i] if m.sender == req_role]
        if not before:
            continue
        request = before[-1]
        after = [m for m in msgs[i + 1 :] if m.sender == req_role]
        if not after or not all(m.retransmission and m.label == request.label for m in after):
            continue
        if sa.version == 1 and any(m.sender == req_role and m.time > ans.time and m not in msgs
                                   and m.msg.exchange_type != sequences.INFORMATIONAL_V1 for m in sa.messages):
            continue  # the requester moved on in another exchange
        if sa.version == 2 and any(not m.request for m in msgs[i + 1 :] if not m.retransmission):
            continue  # a later, different answer (COOKIE, INVALID_KE) took over
        resent_answers = [m for m in msgs[i + 1 :] if m.sender == ans.sender]
        facts = _mtu_facts(ans, Facts(answerer=_who(ans.sender), requester=_who(req_role), request=request.label))
        infos = [m for m in sa.messages if ans.label == "MM5" and m.sender == req_role and m.time >= ans.time
                 and m.msg.exchange_type == sequences.INFORMATIONAL_V1 and m.msg.encrypted]
        facts.oversize = None
        if ans.natt and not any(m.natt for m in sa.messages if _before(m, ans) and m.sender == ans.sender):
            facts.after_float = True
        story = (f"{_mode(sa, run)}: the {_who(ans.sender)} answered {request.label} with {ans.label}, yet the "
                 f"{_who(req_role)} re-sent {request.label} {times(len(after))} more")
        if resent_answers:
            story += " (each answered again)"
        if infos:
            facts.encrypted_info = len(infos)
            story += f"; the {_who(req_role)} answered {ans.label} with an encrypted INFO {times(len(infos))}"
        return Stall(L, ans.label, story, [m.ref for m in [request, ans, *after, *resent_answers, *infos]], sa,
                     facts=facts)
    return None


def _unanswered(an: Analyzer, sa: IkeSa, run: Run, last: Seen, sends: list[Seen]) -> Stall:
    role, peer_role = last.sender, _other(last.sender)
    peer = _addr(sa, peer_role)
    facts = _icmp_facts(an, sa, peer, sends[0].time, _mtu_facts(last, Facts(port=last.dport, sends=times(len(sends)))))
    earlier = [m for m in sa.messages if _before(m, sends[0])]
    if any(m.sender == peer_role for m in earlier):
        facts.answered_before = True
    if last.natt and earlier and not any(m.natt for m in earlier if m.sender == role):
        facts.after_float = True
    resent = [m for m in sa.messages if m.sender == peer_role and m.retransmission and m.time > sends[0].time]
    if resent:
        facts.peer_resent = resent[0].label
    frames = [m.ref for m in sends + resent] + list(facts.icmp_frames or [])
    frames += [f for m in sends for f in m.fragments]
    for d in an.reassembler.incomplete:
        if d["src"] == last.src and d["dst"] == last.dst and d["first_time"] >= sends[0].time - 1.0:
            facts.fragmented = facts.fragmented or len(d["frames"])
            frames += d["frames"][:10]
    waited = an.last_time - sends[-1].time
    span = sends[-1].time - sends[0].time
    story = f"{_mode(sa, run)}: {last.label} sent {times(len(sends))}"
    if len(sends) > 1:
        story += f" over {span:.1f} s"
    if facts.after_float:
        story += f" on UDP {last.dport} right after the NAT-T float"
    if facts.fragmented:
        story += f" as {facts.fragmented} IP fragments each"
    story += f", never answered by the {_who(peer_role)}"
    if facts.icmp:
        story += f" (ICMP {facts.icmp_text} from {facts.icmp_from} instead)"
    if resent:
        story += f"; the {_who(peer_role)} re-sent {resent[0].label} meanwhile"
    stall = Stall(U, last.label, story, frames, sa, facts=facts)
    if sa.version == 2 and last.label == "IKE_SA_INIT" and role == "R":
        facts.impossible = (f"frame {split_ref(last.ref)[1]} is an IKE_SA_INIT request without the Initiator flag "
                            f"(message ID {last.msg.message_id}), which no daemon sends (a crafted or corrupted "
                            "packet)")
    elif len(sends) == 1 and not facts.icmp and not capture_limits.ends_early(waited):
        other = _worked_instead(an, sa, last)
        if other is not None:
            facts.superseded = (f"it was sent once and never re-sent, while IKE SA {other.ispi.hex()} between the "
                                f"same peers came up on the same ports (frame {split_ref(other.messages[0].ref)[1]}), "
                                "so the attempt was given up, not lost")
    if len(sends) == 1 and not facts.icmp and capture_limits.ends_early(waited):
        # re-sent, the request waited the requester's own interval; sent once, a live requester re-sends it
        # unless the capture stopped first
        stall.severity, stall.limits[ENDS_EARLY] = WARNING, f"ends {duration(waited)} after the {last.label} request"
    return stall


def _not_followed(an: Analyzer, sa: IkeSa, run: Run, last: Seen, nxt: sequences.Step) -> Stall | None:
    """Phase 1: the answer `last` was seen, the other side's next message never was."""
    silent = _other(last.sender)
    facts = Facts(silent=_who(silent), mtu=ETHERNET_MTU, port=last.sport)
    behind = sa.behind_nat()
    float_next = any(behind.values()) and not last.natt
    if float_next:
        facts.natt_expected = True
    if _certs(sa):
        facts.certs = True
    if _both_fragmentation(sa):
        facts.ike_fragmentation = True
    reason = float_next or (facts.certs and not facts.ike_fragmentation and nxt.label in AUTH)
    if not float_next:
        if nxt.label not in AUTH:
            facts.certs = None
    at = nxt.label if reason else last.label
    waited = an.last_time - last.time
    silent_addr = _addr(sa, silent)
    elsewhere = an.sent_after(silent_addr, last.time, sa)
    story = f"{_mode(sa, run)}: {last.label} answered, then no {nxt.label} from the {_who(silent)}"
    if float_next:
        story += " (it should come on UDP 4500 after the NAT-T float)"
    severity = ERROR if reason and not elsewhere else WARNING
    limits = {}
    if elsewhere:
        facts.superseded = f"the {_who(silent)} went on with other IKE SAs, so it gave this one up"
    elif severity == WARNING and capture_limits.ends_early(waited):
        # Without a reason for the next message to get lost, silence this short is the capture stopping.  With
        # one (the float to UDP 4500, certificates in fragments) the silence is the evidence: past a hop that
        # drops that message, nothing else comes, and a capture file does not say when it was stopped.
        limits[ENDS_EARLY] = f"ends {duration(waited)} after {last.label}"
    elif severity == WARNING:
        story += f"; the capture ends {waited:.1f} s later"
    request = [m for m in run.messages if m.sender == silent]
    return Stall(F, at, story, [m.ref for m in request[-1:] + [last]], sa, severity=severity, facts=facts,
                 limits=limits)


def _v1_rejected(an: Analyzer, sa: IkeSa, run: Run, last: Seen, replies: list[Seen],
                 nxt: sequences.Step) -> Stall:
    """IKEv1: `last` was answered with Informational messages instead of `nxt`."""
    answerer = replies[0].sender
    facts = Facts(answerer=_who(answerer), expected=nxt.label, size=last.size)
    names = [n for m in replies for t, n in m.msg.notifies if sequences.is_error_notify(1, t)]
    if names:
        facts.notify = names[0]
        p = next(p for m in replies for p in (*m.msg.payloads, *m.msg.inner)
                 if p.name == "N" and p.info.get("notify_name") == names[0])
        if not p.info.get("spi"):
            facts.no_spi = True
    if all(m.msg.encrypted for m in replies):
        facts.encrypted = True
    if last.natt and not replies[0].natt:
        facts.answer_on_500 = True
    resent = [m for m in run.messages if m.sender == last.sender and m.retransmission and m.time > replies[0].time]
    if resent:
        facts.requester_resent = len(resent)
    ver = _other_version(an, sa)
    if ver:
        facts.other_version = ver
    if last.label == "QM1" and last.msg.encrypted:
        ke = _ke_size(sa)
        if ke and last.size >= ke + QM1_MIN_WITHOUT_KE:
            facts.ke_in_request = True
            facts.ke_size = ke
    sends = _sends(run, last)
    n = len(replies)
    if names:
        kinds = names[0] + (f" ({times(n)})" if n > 1 else "")
    else:
        kinds = f"{'an' if n == 1 else n} {'encrypted ' if facts.encrypted else ''}INFO{'s' if n > 1 else ''}"
    story = f"{_mode(sa, run)}: {last.label} answered with {kinds} instead of {nxt.label}"
    if resent:
        story += f"; the {_who(last.sender)} re-sent {last.label} {times(len(resent))} regardless"
    return Stall(J, last.label, story, [m.ref for m in sends + replies], sa, facts=facts)


def _v2_run(an: Analyzer, sa: IkeSa, run: Run, last: Seen, done: bool) -> Stall | None:
    requests = [m for m in run.messages if m.request]
    answers = [m for m in run.messages if not m.request and not m.retransmission]
    if not requests:
        return None  # an answer whose request predates the capture
    req = [m for m in requests if not m.retransmission][-1]
    sends = [m for m in requests if m.time >= req.time]
    name = run.exchange.name
    if not answers or answers[-1].time < req.time:
        if name == "INFORMATIONAL":
            return None
        if any(m.sender == req.sender and m.request and m.time > req.time
               and (m.msg.message_id > req.msg.message_id or m.msg.exchange_type != req.msg.exchange_type)
               for m in sa.messages):
            return None  # the requester moved on, so the answer came: the capture misses that direction
        return _unanswered(an, sa, run, req, sends)
    ans = answers[-1]
    facts = Facts(answerer=_who(ans.sender), plaintext=ans.plaintext, auth_min=ERROR_ONLY_PLAINTEXT,
                  child_min=CHILD_OK_MIN)
    errors = [n for t, n in ans.msg.notifies if sequences.is_error_notify(2, t)]
    if name == "IKE_SA_INIT":
        if errors:
            facts.notify = errors[0]
            if errors[0] == "INVALID_KE_PAYLOAD":
                p = next(p for p in ans.msg.payloads if p.name == "N" and p.info.get("notify_name") == errors[0])
                data = p.info.get("data") or b""
                facts.ke_group = int.from_bytes(data[:2], "big") if len(data) >= 2 else "?"
            story = f"IKEv2: IKE_SA_INIT answered with {errors[0]}"
            if errors[0] == "INVALID_KE_PAYLOAD":
                story += f" (group {facts.ke_group}), no retry followed"
            return Stall(J, name, story, [req.ref, ans.ref], sa, facts=facts)
        if sa.ike_sa_up() or any(r.exchange.type != 34 for r in sa.runs.values()):
            return None
        if ans.msg.payload("SA") is None or ans.msg.payload("KE") is None:
            return None  # not a full answer (REDIRECT and other status-only responses send the initiator elsewhere)
        return _not_followed_v2(an, sa, run, req, ans)
    if name not in ("IKE_AUTH", "CREATE_CHILD_SA") or ans.plaintext is None:
        return None
    if name == "IKE_AUTH" and any(m.request and m.msg.exchange_type == sequences.IKE_AUTH and m.msg.message_id > req.msg.message_id
                                  for m in sa.messages):
        return None  # more IKE_AUTH rounds followed (EAP, multiple authentication): a short answer is one step
    if errors:
        facts.notify = errors[0]
    if name == "IKE_AUTH":
        rounds = {m.msg.message_id for m in sa.messages if m.request and m.msg.exchange_type == sequences.IKE_AUTH
                  and m.msg.message_id < req.msg.message_id}
        facts.eap_rounds = len(rounds) + 1 if rounds else None
    if sa.error_only(ans):
        facts.error_only = True
    elif name == "IKE_AUTH" and ans.plaintext < CHILD_OK_MIN and not _child_up_later(an, sa, ans):
        facts.child_failed = True
    else:
        return None
    if name == "CREATE_CHILD_SA":
        if _child_up_later(an, sa, ans):
            return None  # a later exchange built the SA: a transient refusal (e.g. TEMPORARY_FAILURE)
        ke = _ke_size(sa)
        facts.plaintext_request = req.plaintext
        first = req.msg.encrypted_first
        facts.rekey, facts.new_child = (True, None) if first == "N" else (None, True) if first == "SA" else (None, None)
        if ke and req.plaintext and req.plaintext >= ke + CCSA_MIN_WITHOUT_KE:
            facts.ke_in_request = True
    lives = [m for m in sa.messages if m.time > ans.time and m.msg.exchange_type in (sequences.CREATE_CHILD_SA, sequences.INFORMATIONAL)]
    what = "an error notify" if facts.error_only else "IDr + AUTH but no CHILD_SA"
    story = f"IKEv2: {name} answered with {what} ({ans.plaintext} bytes of plaintext at most)"
    if facts.child_failed or name == "CREATE_CHILD_SA":
        story += ", no ESP SA built" + ("; the IKE SA lives on" if lives else "")
    return Stall(J, name, story, [req.ref, ans.ref], sa, facts=facts)


def _child_up_later(an: Analyzer, sa: IkeSa, ans: Seen) -> bool:
    """A CHILD_SA came up after `ans`: a later CREATE_CHILD_SA answered with room for SA + TS."""
    for r in sa.runs.values():
        if r.exchange.type != 36:
            continue
        for m in r.messages:
            if m.time > ans.time and not m.request and m.plaintext is not None and m.plaintext >= CHILD_PAYLOADS_MIN:
                return True
    return False


def _not_followed_v2(an: Analyzer, sa: IkeSa, run: Run, req: Seen, ans: Seen) -> Stall:
    step = sequences.Step("IKE_AUTH", "I")
    stall = _not_followed(an, sa, run, ans, step)
    stall.story = stall.story.replace("IKE_SA_INIT answered, then no IKE_AUTH",
                                      "IKE_SA_INIT answered, then no IKE_AUTH request")
    return stall


def _liveness(an: Analyzer, sa: IkeSa) -> list[Stall]:
    """DPD / liveness checks after the SA was up: from which probe on the peer stopped answering, or
    probes answered here that the prober never got."""
    if not sa.ike_sa_up() and not (sa.version == 2 and not any(r.exchange.type == 34 for r in sa.runs.values())):
        return []
    out = []
    for role in ("I", "R"):
        found = liveness.probes(sa, role)
        if sa.version == 2:
            out.extend(filter(None, (_answer_lost(an, sa, r) for r in sa.runs.values()
                                     if r.exchange.type == sequences.INFORMATIONAL and r.starter == role)))
        else:
            out.append(_dpd_restart(an, sa, role, found))
        out.append(_dpd(an, sa, role, found))
    return [s for s in out if s]


def _dpd(an: Analyzer, sa: IkeSa, role: str, found: list[liveness.Probe]) -> Stall | None:
    """The peer stopped answering: two or more sends after the last probe answered (or none was)."""
    peer_role = _other(role)
    tail = liveness.unanswered_tail(found)
    sends = [m for p in tail for m in p.sends]
    if len(sends) < 2 or (sa.version == 1 and sends[-1].time - sends[0].time < liveness.BURST):
        return None
    first = sends[0]
    if any(m.sender == peer_role and m.time >= first.time for m in sa.messages):
        return None  # the peer still talks on this IKE SA
    peer = _addr(sa, peer_role)
    if any(f.src == peer and f.last_time > first.time for f in an.esp.flows.values()):
        return None  # the peer still sends ESP: alive
    facts = _icmp_facts(an, sa, peer, first.time, Facts(sends=times(len(sends)), span=sends[-1].time - first.time,
                                                        port=first.dport, natt_checks=first.natt or None))
    later = [m for o in an.pair_of(sa).sas if o is not sa for m in o.messages
             if m.src == peer and m.time > first.time]
    if later:
        m = min(later, key=lambda m: m.time)
        facts.peer_elsewhere = f"UDP {m.sport} (frame {split_ref(m.ref)[1]})"
    label = sends[-1].label
    what = "liveness check" if all(p.sends[0].msg.encrypted_first in (None, "NONE") for p in tail) else "request"
    answered = len(found) - len(tail)
    peer_did = (f"the {_who(peer_role)} answered another IKE SA on {facts.peer_elsewhere} meanwhile"
                if facts.peer_elsewhere else f"nothing else came from the {_who(peer_role)}")
    if answered:
        nth = answered + 1
        story = (f"{_informational(sa)}: the {_who(peer_role)} answered the {_who(role)}'s first {answered} {label} "
                 f"({what}{'s' if answered > 1 else ''}) at once, then none from the {_ordinal(nth)} on (frame "
                 f"{split_ref(first.ref)[1]}, {first.time - found[0].sends[0].time:.1f} s after the first): "
                 f"{label} sent {times(len(sends))} over {facts.span:.1f} s unanswered; {peer_did}")
    else:
        story = (f"{_informational(sa)}: {label} ({what}) sent {times(len(sends))} over {facts.span:.1f} s by the "
                 f"{_who(role)} after the tunnel was up, never answered; {peer_did}")
    if facts.icmp_from_peer:
        story += f"; its host answered with ICMP {facts.icmp_text}"
    context = [m.ref for m in found[answered - 1].sends + found[answered - 1].answers] if answered else []
    return Stall(D, label, story, context + [m.ref for m in sends] + list(facts.icmp_frames or []), sa, facts=facts)


def _dpd_restart(an: Analyzer, sa: IkeSa, role: str, found: list[liveness.Probe]) -> Stall | None:
    """IKEv1: the last probes were answered here, yet the prober gave the SA up without a Delete and started
    phase 1 anew within a DPD timeout: its DPD never saw the answers, which are lost after this point."""
    if len(found) < 2 or not all(p.answers for p in found[-2:]):
        return None
    last = found[-1].sends[0]
    if any(m.sender == role and m.time > last.time for m in sa.messages):
        return None  # it went on using the SA (a Delete after a rekey, more probes)
    me, gap = _addr(sa, role), last.time - found[-2].sends[0].time
    pair = an.pairs.get(pair_key(sa.initiator[0], sa.responder[0]))
    new = [o.messages[0] for o in (pair.sas if pair else []) if o is not sa and o.initiator and o.initiator[0] == me
           and o.messages and o.messages[0].label in ("MM1", "AM1") and last.time < o.messages[0].time
           <= last.time + DPD_TIMEOUT_PROBES * gap]
    if not new:
        return None
    again = min(new, key=lambda m: m.time)
    facts = Facts(answerer=_who(_other(role)), requester=_who(role), request="R-U-THERE", dpd_restart=True)
    story = (f"{_informational(sa)}: the {_who(_other(role))} answered all {len(found)} of the {_who(role)}'s DPD "
             f"probes here, yet {again.time - last.time:.1f} s after the last one the {_who(role)} started a new "
             f"{again.label} (frame {split_ref(again.ref)[1]}) and sent nothing more on this SA, not even a Delete: "
             "its DPD timed out without seeing the answers")
    frames = [m.ref for p in found[-2:] for m in p.sends + p.answers] + [again.ref]
    return Stall(L, last.label, story, frames, sa, facts=facts)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _worked_instead(an: Analyzer, sa: IkeSa, request: Seen) -> IkeSa | None:
    """Another IKE SA of the pair, begun after the request, that came up with messages both ways on the
    request's port."""
    pair = an.pairs.get(pair_key(sa.initiator[0], sa.responder[0]))
    for other in (pair.sas if pair else []):
        if other is sa or other.up_time is None or other.messages[0].time <= request.time:
            continue
        ports = {(m.sender, m.dport if m.sender == "I" else m.sport) for m in other.messages}
        if {("I", request.dport), ("R", request.dport)} <= ports or \
                {("I", request.sport), ("R", request.sport)} <= ports:
            return other
    return None


def _xauth(an: Analyzer, sa: IkeSa) -> Stall | None:
    """IKEv1 XAUTH: phase 1 up, the responder (the XAUTH server) asked for credentials in Transaction
    exchanges, and no Quick Mode (nor anything but Informationals) followed."""
    if sa.version != 1 or not sa.ike_sa_up():
        return None
    cfg = sorted((m for m in sa.messages if m.msg.exchange_type == sequences.TRANSACTION), key=lambda m: m.time)
    if not cfg or cfg[0].sender != "R":
        return None  # Mode Config pulled by the client, or no XAUTH
    last = cfg[-1]
    if any(r.exchange.type == sequences.TRANSACTION and r.starter == "I" for r in sa.runs.values()):
        return None  # the client went on to pull its Mode Config: the XAUTH server said OK
    if any(m.time > last.time and m.msg.exchange_type != sequences.INFORMATIONAL_V1 for m in sa.messages):
        return None
    if any(f.last_time > last.time and f.src in (sa.initiator[0], sa.responder[0]) for f in an.esp.flows.values()):
        return None
    # Like the float to UDP 4500 in _not_followed, the XAUTH status is a reason for the silence: a client whose
    # credentials were accepted goes on at once (Mode Config, Quick Mode), so a short capture still tells.
    story = (f"XAUTH: phase 1 up, then the responder asked for the user's credentials ({len(cfg)} Transaction "
             f"messages from frame {split_ref(cfg[0].ref)[1]}) and no Quick Mode followed (capture ends "
             f"{duration(an.last_time - last.time)} later)")
    return Stall(F, "CFG", story, [m.ref for m in cfg], sa, facts=Facts(xauth=True, silent="initiator"))


def _cert_auth(sa: IkeSa) -> bool:
    """Certificates authenticate this SA: IKEv1 by the chosen (or the only offered) method, IKEv2 by the size
    of the IKE_AUTH request."""
    if sa.version == 1:
        sa_payload = sa.chosen or sa.offered
        methods = {t.attributes.get("auth") for p in (sa_payload.info.get("proposals", []) if sa_payload else [])
                   for t in p.transforms if p.protocol == 1}
        methods.discard(None)
        return bool(methods) and not methods & V1_PSK_METHODS
    size = _auth_request_size(sa)
    return size is not None and size >= CERT_AUTH_MIN


def _auth_request_size(sa: IkeSa) -> int | None:
    """Bytes on the wire of the first IKE_AUTH request, all its IKE fragments together (IKEv2)."""
    first = [m for m in sa.messages if m.request and m.msg.exchange_type == sequences.IKE_AUTH
             and not m.retransmission]
    if sa.version != 2 or not first:
        return None
    mid = first[0].msg.message_id
    return sum(m.size for m in first if m.msg.message_id == mid)


def nat_stalls(an: Analyzer) -> list[Stall]:
    """NAT mapping expiry: after the side behind a NAT fell silent (no keepalives either), its NAT answered
    the peer's packets with ICMP port unreachable."""
    out = []
    for key, pair in an.pairs.items():
        sa = pair.alive or pair.last_up
        if sa is None or not pair.icmp:
            continue
        behind = sa.behind_nat()
        for role in ("I", "R"):
            x = _addr(sa, role)
            icmp = [e for e in pair.icmp if behind[role] and e.src == x and e.about[2] == x
                    and "port unreachable" in e.text]
            if not icmp:
                continue
            first = icmp[0]
            if any(m.src == x and m.time > first.time for o in pair.sas for m in o.messages) or any(
                    f.src == x and f.last_time > first.time for f in an.esp.flows.values()):
                continue  # it talks again: the mapping is there
            heard = [m.time for o in pair.sas for m in o.messages if m.src == x and m.time < first.time]
            heard += [f.last_time for f in an.esp.flows.values() if f.src == x and f.last_time < first.time]
            if x in pair.keepalive_last:
                heard.append(pair.keepalive_last[x])
            if not heard or first.time - max(heard) < NAT_IDLE_MIN:
                continue
            idle = first.time - max(heard)
            facts = Facts(nat_idle=idle, natted=_who(role), icmp=len(icmp), icmp_text=first.text,
                          icmp_frames=[e.ref for e in icmp[:10]], port=first.about[3])
            story = (f"the {_who(role)} ({ipaddress.ip_address(x)}, behind a NAT) sent nothing for {idle:.1f} s, not even a NAT-T "
                     f"keepalive; then packets to it on UDP {first.about[3]} were answered with ICMP {first.text} "
                     f"from its NAT ({times(len(icmp))}) and nothing came from it any more")
            out.append(Stall(E, "ESP", story, facts.icmp_frames, sa, key, facts=facts))
    return out


def _child_stalled(an: Analyzer) -> set[tuple[bytes, bytes]]:
    """Peer pairs whose Quick Mode / CREATE_CHILD_SA stalled with an error: one-way ESP there is its
    consequence (the peer never installed the SA that would answer), not a finding of its own."""
    out = set()
    for key, pair in an.pairs.items():
        for sa in pair.sas:
            if any(st.severity == ERROR and st.at in ("QM1", "QM2", "QM3", "CREATE_CHILD_SA")
                   for st in sa_stalls(an, sa)):
                out.add(key)
    return out


def esp_stalls(an: Analyzer) -> list[Stall]:
    """ESP one way only between peers whose IKE SA came up in this capture, or (IKE or not) whose far end
    answers the ESP with ICMP protocol unreachable."""
    out = []
    directions = an.esp.directions()
    for (src, dst), flows in directions.items():
        if (dst, src) in directions:
            continue
        packets = sum(f.packets for f in flows)
        key = pair_key(src, dst)
        pair = an.pairs.get(key)
        refused = [e for e in (pair.icmp if pair else []) if e.src == dst and e.about[0] == src
                   and "protocol unreachable" in e.text]
        if packets < 2 or not pair or not (pair.last_up or refused):
            continue
        f = flows[0]
        facts = Facts(src=f.src_ip, dst=f.dst_ip, packets=packets)
        story = f"ESP from {f.src_ip} to {f.dst_ip} only ({packets} packets), none back"
        story += " while the IKE SA is up" if pair.last_up else " (no IKE in the capture)"
        frames = [x.first_frame for x in flows]
        if refused:
            facts.icmp, facts.icmp_text, facts.icmp_from_peer = pair.icmp_errors, refused[0].text, True
            facts.icmp_frames = [e.ref for e in refused[:10]]
            story += f"; {f.dst_ip} answered it with ICMP {refused[0].text} ({times(pair.icmp_errors)})"
            frames += facts.icmp_frames
        out.append(Stall(E, "ESP", story, frames, None, key, facts=facts))
    return out


# -- the rules called by findings.find() ------------------------------------------------------------

def stalls(an: Analyzer, files):
    """Where each IKE SA's negotiation stopped, and why (ranked by TABLE, within what the capture shows);
    then one capture-ends-early finding for the requests the capture gave no time to be answered."""
    view = capture_limits.judge(an, files)
    early = []
    moot: dict[tuple, list[Stall]] = {}  # alike stalls the wire explains, one finding per peer pair
    for sa in an.sas.values():
        for stall in sa_stalls(an, sa):
            if stall is not None:
                limit(stall, an, view)
                if ENDS_EARLY in stall.limits:
                    early.append(stall)
                if stall.facts.superseded or stall.facts.impossible:
                    key = (pair_key(sa.initiator[0], sa.responder[0]), stall.kind, stall.at, bool(stall.facts.impossible))
                    moot.setdefault(key, []).append(stall)
                    continue
                yield to_finding(stall, an)
    for alike in moot.values():
        yield _alike(alike, an)
    if early:
        yield _ends_early(early)


def _alike(stalls_: list[Stall], an: Analyzer) -> Finding:
    """One finding for the stalls of one peer pair that the wire explains the same way."""
    return merge_alike([to_finding(s, an) for s in stalls_])


def esp_blocked(an: Analyzer, files):
    """The data plane: SAs up, ESP one way only, or a NAT that forgot the mapping."""
    view = capture_limits.judge(an, files)
    expired = nat_stalls(an)
    gone = {s.pair for s in expired} | _child_stalled(an)
    for stall in expired + [s for s in esp_stalls(an) if s.pair not in gone]:
        limit(stall, an, view)
        yield to_finding(stall, an)


def limit(stall: Stall, an: Analyzer, view: CaptureLimits) -> None:
    """Name on the stall the capture limits that bear on it (next to ends-early, set where it is found)."""
    sa, out = stall.sa, stall.limits
    sas = [sa] if sa is not None else an.pairs[stall.pair].sas
    silent = [x for x in sas if x in view.one_way]
    if silent:
        a = view.one_way[silent[0]][0]
        out[ONE_WAY] = f"one direction only, the {_who(_other(a.sender))}'s answers are not in it"
    if stall.kind in (U, F) and sa is not None:
        cut = view.cut_between(sa)
        if cut:
            frames = ", ".join(str(split_ref(d["frames"][0])[1]) for d in cut[:3])
            out[FILTERED] = f"its filter cut IP datagrams between these peers to their first fragment (frames {frames})"
        if view.snaplen:
            out[SNAPLEN] = "frames cut by the snap length may hold the missing message"
    if view.no_time and (ENDS_EARLY in out or stall.kind == D or (stall.kind == U and stall.facts.sends == "once")):
        out.pop(ENDS_EARLY, None)
        out[NO_TIME] = "no usable timestamps, so how long it waited is unknown"
    if sa in view.mid_session:
        first = view.mid_session[sa]
        out[MID_SESSION] = f"starts inside this IKE SA, at {first.label} (frame {split_ref(first.ref)[1]})"
    stall.limits = {name: out[name] for name in LIMITS if name in out}


def _ends_early(early: list[Stall]) -> Finding:
    """capture-ends-early: requests the capture gave less than one retransmission interval."""
    listed = "; ".join(f"{s.limits[ENDS_EARLY].removeprefix('ends ')} (frame "
                       f"{split_ref(max(s.frames))[1]})" for s in early[:3])
    more = f", and {len(early) - 3} more" if len(early) > 3 else ""
    summary = (f"the capture ends {listed}{more}: less than one retransmission interval ({RETRANSMIT_INTERVAL:.0f} s), "
               f"so {'these' if len(early) > 1 else 'it'} had no time to be answered and no cause is ranked")
    return Finding(WARNING, "capture-ends-early", early[0].at, summary, LIMITS[ENDS_EARLY].todo + ".",
                   sorted({f for s in early[:10] for f in s.frames}), [], early[0].sa)


def error_notifies(an: Analyzer, files):
    """Error notifies that no stall above explains (a stall's finding already names its notify; one the
    decrypted payloads decided also explains what its SA sent afterwards, e.g. the Informational after an
    EAP-Failure)."""
    explained = set()
    for sa in an.sas.values():
        for st in sa_stalls(an, sa):
            explained.update(st.frames)
            if st.facts.decrypted:
                since = min((m.time for m in sa.messages if m.ref in st.frames), default=0.0)
                explained.update(m.ref for m in sa.messages if m.time >= since)
    for sa in an.sas.values():
        for m in sa.messages:
            if m.retransmission or m.ref in explained:
                continue
            for ntype, name in m.msg.notifies:
                if not sequences.is_error_notify(sa.version, ntype):
                    continue
                if name in sequences.RETRY_NOTIFIES and (sa.retried_by or any(x.retry == name for x in sa.messages)):
                    continue  # answered by a retry: part of a normal negotiation
                who = "initiator" if m.sender == "I" else "responder"
                summary = f"the {who} sent {name} in {m.label}"
                if sa.up_time is not None and m.time < sa.up_time:
                    summary += " (the IKE SA came up afterwards)"
                elif later_success(an, sa):
                    summary += " (a later IKE SA between these peers came up)"
                yield Finding(WARNING, "error-notify", m.label, summary,
                              "The peer refused something; its log says why.",
                              [m.ref], list(NOTIFY_CAUSES.get(name, [])), sa)


RULES = [stalls, esp_blocked, error_notifies]
