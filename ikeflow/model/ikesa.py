"""Per IKE SA state: labels every message against the tables in `sequences`,
recognises retransmissions and retries, follows NAT-T and the proposals.

An IKE SA is keyed by IKE version and initiator SPI (cookie), which survive
NAT rewriting and the port float.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from ipaddress import ip_address

from ikeflow.model import natt, sequences
from ikeflow.decode import proposals
from ikeflow.decode.ike import FLAG_ENCRYPTION, IkeMessage, decode_isakmp, draft_natt
from ikeflow.model.decryption import Decryption
from ikeflow.model.sequences import ENC, EXCHANGES, PHASE1_V1

ZERO_SPI = b"\0" * 8
NOTIFY_NATD_SRC, NOTIFY_NATD_DST = 16388, 16389
KEEP = 64  # messages kept per SA at each end (first and last); the middle of very long SAs is counted only
KEEP_RUNS = 32  # exchanges (message IDs) remembered per SA, newest first kept
KEEP_DIGESTS = 128  # message digests remembered for spotting retransmissions
KEEP_NAMES = 32  # vendor IDs and NAT-OA addresses kept per side
KEEP_PENDING = 4  # IKEv1 fragmented messages collected at once per SA (the oldest is dropped)
PENDING_BYTES = 65535  # most bytes of one IKEv1 fragmented message collected
DRAFT_TYPES = (15, 16)  # IKEv1 NAT-D / NAT-OA of draft-ietf-ipsec-nat-t-ike-04..08 (natt.METHODS)
FLAG_BYTE = 19  # offset of the flags in the ISAKMP header
AFTER_FLOAT_V1 = ("MM5", "MM6", "AM3")  # IKEv1 messages sent on the NAT-T port once NAT-D found a NAT (RFC 3947 4)
ERROR_ONLY_PLAINTEXT = 40  # bytes: an IKE_AUTH answer with IDr and AUTH needs more
# Smallest SA + TSi + TSr an IKEv2 CHILD_SA needs (RFC 7296 3.3, 3.13): SA header 4 + proposal 8 + SPI 4
# + an AEAD transform with key length 12 + ESN 8 = 36; two TS payloads of one IPv4 range 2 x 24 = 48.
CHILD_PAYLOADS_MIN = 36 + 48
# IDr + AUTH alone need ERROR_ONLY_PLAINTEXT bytes, so an IKE_AUTH answer that built a CHILD_SA holds at least
# this much; a smaller one that still carries IDr + AUTH refused the child.
CHILD_OK_MIN = ERROR_ONLY_PLAINTEXT + CHILD_PAYLOADS_MIN
# bytes of an IKEv2 message: header 28 + SK header 4 + IV 16 + one Notify + padding + ICV stay below; an
# accepted CREATE_CHILD_SA answer (SA 36+, Nonce 20+, TSi/TSr 48+ in the clear part alone) is well above
REFUSED_SIZE = 120
OPENING = ("MM1", "AM1", "IKE_SA_INIT")  # the initiator's first message of an IKE SA
NOTIFY_REDIRECT = 16407  # RFC 5685 10: New Responder GW Identity (and a nonce)
EAP_FAILURE = 4  # EAP code (RFC 3748 4.2): an answer with only this and notifies refused
UNKNOWN_OVERHEAD = (None, proposals.sk_overhead(None))  # IkeSa._overhead before a proposal is chosen


@dataclass(slots=True)
class Seen:
    """One IKE message as captured."""

    ref: int  # capture.frame_ref
    time: float
    src: bytes
    dst: bytes
    sport: int
    dport: int
    natt: bool  # carried after the non-ESP marker
    msg: IkeMessage
    size: int  # bytes of the IKE message
    sender: str  # "I" or "R": the IKE SA's original initiator or responder
    label: str = ""
    request: bool = True  # IKEv2: request (not response); IKEv1: sent by the exchange's initiator
    retransmission: bool = False
    retry: str | None = None  # IKEv2: a new IKE_SA_INIT after COOKIE / INVALID_KE_PAYLOAD
    fragments: list[int] = field(default_factory=list)  # IP fragment frames it was rebuilt from
    answered: bool = False  # a response/next step came back
    natd: dict | None = None  # natt.check() result
    plaintext: int | None = None  # IKEv2 SK: most bytes the encrypted payloads can hold


@dataclass(slots=True, weakref_slot=True)
class Run:
    """One run of an exchange: phase 1 of IKEv1, or one message ID."""

    exchange: sequences.Exchange
    starter: str  # "I"/"R": who sent its first message
    first_time: float
    done: list[sequences.Step] = field(default_factory=list)
    messages: list[Seen] = field(default_factory=list)  # the first KEEP and the last KEEP


class IkeSa:
    """Everything seen of one IKE SA."""

    __slots__ = ("version", "ispi", "rspi", "initiator", "responder", "roles_guessed", "messages", "count",
                 "retransmitted", "retransmission_frames", "runs", "_digests", "_fragmented", "_pending", "float_at",
                 "_first_natt", "natd", "stayed", "closed", "nat_oa", "offered", "chosen", "vendors", "retried_by",
                 "redirected_to", "up_time", "_mm6_time", "index", "after_child", "decryption", "probed",
                 "_overhead")

    def __init__(self, version: int, ispi: bytes):
        self.version = version
        self.ispi = ispi
        self.rspi = ZERO_SPI
        self.initiator: tuple[bytes, int] | None = None  # (address, port) of the original initiator
        self.responder: tuple[bytes, int] | None = None
        self.roles_guessed = False
        self.messages: list[Seen] = []  # the first KEEP and the last KEEP messages
        self.count = 0  # messages seen in all
        self.retransmitted: dict[str, int] = {}  # label -> retransmissions
        self.retransmission_frames: list[int] = []  # the first few
        self.runs: dict[tuple, Run] = {}  # the last KEEP_RUNS runs, phase 1 always kept
        # 2 * hash + (sender is R) -> a weak reference to the run it belongs to: a run that `runs` let go (KEEP_RUNS) is
        # freed, not kept alive by the digests of its messages
        self._digests: dict[int, weakref.ref[Run] | None] = {}
        self._fragmented: dict[tuple, str] = {}  # (sender, IKEv1 fragment ID) -> label of the whole message
        self._pending: dict[tuple, _Pieces] = {}  # (sender, IKEv1 fragment ID) -> its fragments so far, the newest last
        self.float_at: str | None = None  # label of the first message on the NAT-T port after some on the IKE port
        self._first_natt = False  # its first message seen was already on the NAT-T port: no float to see
        self.natd: list[Seen] = []  # messages with NAT-D, the first KEEP
        self.stayed: Seen | None = None  # the first message on the IKE port where NAT-T sends on the NAT-T port
        self.nat_oa: dict[str, set[str]] = {}  # role -> original addresses it declared (QM), the first KEEP_NAMES
        self.offered = None  # the initiator's first phase-1 SA payload
        self.chosen = None  # the responder's answer to it
        self.vendors: dict[str, set[str]] = {}  # role -> vendor IDs it sent, the first KEEP_NAMES
        self.retried_by: str | None = None  # this SA ended in COOKIE/INVALID_KE: a retry followed
        self.redirected_to: bytes | None = None  # its IKE_SA_INIT got N(REDIRECT), followed to this address
        self.up_time: float | None = None  # when phase 1 completed (MM6, AM3, IKE_AUTH response)
        self._mm6_time: float | None = None  # IKEv1: MM6 seen, then MM5 re-sent: up only once the initiator goes on
        self.index = 0  # its place among its peer pair's IKE SAs (analysis.PeerPair.sas)
        self.after_child = False  # IKEv2: a CREATE_CHILD_SA of its peers was answered before it (maybe its rekey)
        self.closed: tuple[str, int, float] | None = None  # (how, frame, time) it ended: model.lifecycle
        self.decryption: Decryption | None = None  # set when keys are given: its messages are decrypted
        self.probed: dict[str, tuple] = {}  # role -> (count, up_time, its liveness probes): see liveness.probes
        self._overhead = UNKNOWN_OVERHEAD  # (the `chosen` it was worked out for, IKEv2 SK IV + ICV bytes)

    # -- feeding -----------------------------------------------------------------

    def add(self, msg: IkeMessage, raw: bytes, ref: int, ts: float, src: bytes, dst: bytes,
            sport: int, dport: int, natt_: bool, fragments: list[int]) -> Seen:
        """Record one message of this SA and label it."""
        if self.rspi == ZERO_SPI and msg.rspi != ZERO_SPI:
            self.rspi = msg.rspi
        # the SA's own SPIs and endpoints for the copies each message brings: kept messages weigh less
        if msg.ispi == self.ispi:
            msg.ispi = self.ispi
        if msg.rspi == self.rspi:
            msg.rspi = self.rspi
        sender = self._sender(msg, src, sport, dst, dport)
        me, peer = (self.initiator, self.responder) if src == self.initiator[0] else (self.responder, self.initiator)
        if src == me[0] and dst == peer[0]:
            src, dst = me[0], peer[0]
            if sport == me[1] and dport == peer[1]:
                sport, dport = me[1], peer[1]
        seen = Seen(ref, ts, src, dst, sport, dport, natt_, msg, len(raw), sender, fragments=fragments)
        digest = 2 * hash(raw) + (sender == "R")  # the sender and the bytes: a copy has both the same
        sk = msg.payload("SK") if self.version == 2 else None  # (an SA's messages are of its version)
        if sk is not None:
            if self._overhead[0] is not self.chosen:
                chosen = (self.chosen.info.get("proposals") or [None])[0] if self.chosen else None
                self._overhead = (self.chosen, proposals.sk_overhead(chosen))
            seen.plaintext = sk.length - 4 - self._overhead[1]
        if self.decryption is not None:
            self.decryption.open(msg, raw, sender, self.chosen)
        if natt_ and self.float_at is None and not self._first_natt:
            if self.count:
                self.float_at = "?"  # set to the label below
            else:
                self._first_natt = True
        self._label(seen, digest)
        if self.version == 1 and seen.sender == "I":
            self._mm6_heard(seen)
        elif self.version == 2 and self.up_time is not None and seen.msg.exchange_type == sequences.IKE_AUTH \
                and self.error_only(seen):
            self.up_time = None  # a later IKE_AUTH round (EAP) refused: the responder's own AUTH did not bring it up
        if len(self._digests) > KEEP_DIGESTS:
            del self._digests[next(iter(self._digests))]
        if self.float_at == "?":
            self.float_at = seen.label
        if not msg.malformed:
            self._learn(seen, msg)
            whole = self._reassemble(seen) if self.version == 1 else None  # IKEv1 fragments (IKEv2's are SKF)
            if whole is not None:
                self._learn(seen, whole)
        if self._pending and self.up_time is not None:
            self._pending.clear()  # phase 1 is done: every later message is encrypted
        if not natt_ and self.stayed is None and self._after_float(seen):
            self.stayed = seen
        self._keep(seen)
        return seen

    def _mm6_heard(self, seen: Seen) -> None:
        """IKEv1 Main Mode: an initiator re-sends MM5 only while it waits for MM6, so one that re-sends MM5 after
        MM6 did not get it and phase 1 is not up; it is once the initiator goes on (QM1, INFO, CFG: its re-sent
        MM5 crossed MM6)."""
        if seen.label == "MM5" and seen.retransmission and self.up_time is not None:
            self._mm6_time, self.up_time = self.up_time, None
        elif self._mm6_time is not None and seen.msg.exchange_type != sequences.MAIN_MODE:
            self.up_time, self._mm6_time = self._mm6_time, None

    def _after_float(self, seen: Seen) -> bool:
        """A message that NAT-T sends on the NAT-T port once NAT-D found a NAT: IKEv2 after IKE_SA_INIT
        (RFC 7296 2.23), IKEv1 MM5, MM6, AM3 and what follows phase 1 (RFC 3947 4), not an error INFO sent
        instead of MM5 / AM3."""
        if seen.msg.malformed:
            return False
        if self.version == 2:
            return seen.msg.exchange_type != sequences.IKE_SA_INIT
        return seen.label in AFTER_FLOAT_V1 or (self.up_time is not None and seen.msg.encrypted)

    def _reassemble(self, seen: Seen) -> IkeMessage | None:
        """IKEv1 fragmentation (payload 132): keep this fragment's data; once pieces 1..last of a message are
        all in, the whole message if it is in clear (the pieces hold it from its ISAKMP header on)."""
        frag = seen.msg.payload("FRAG")
        if frag is None or "data" not in frag.info or self.up_time is not None:
            return None
        key = (seen.sender, frag.info["fragment_id"])
        pieces = self._pending.get(key, _Pieces())
        number, data = frag.info["number"], frag.info["data"]
        if pieces.skip or number == 0:
            return None
        pieces.size += len(data) - len(pieces.parts.get(number, b""))
        pieces.parts[number] = data
        if frag.info["last"]:
            pieces.last = number
        encrypted = number == 1 and len(data) > FLAG_BYTE and data[FLAG_BYTE] & FLAG_ENCRYPTION
        if encrypted or pieces.size > PENDING_BYTES:  # nothing to read in it, or too large: the rest is not kept
            pieces.skip = True
            pieces.parts.clear()
        self._pending.pop(key, None)
        self._pending[key] = pieces  # newest last
        if len(self._pending) > KEEP_PENDING:
            del self._pending[next(iter(self._pending))]
        if pieces.skip or not pieces.last or any(n not in pieces.parts for n in range(1, pieces.last + 1)):
            return None
        del self._pending[key]
        whole = decode_isakmp(b"".join(pieces.parts[n] for n in range(1, pieces.last + 1)))
        if whole.malformed or whole.version != 1 or whole.ispi != self.ispi or whole.encrypted:
            return None
        return whole

    def _keep(self, seen: Seen) -> None:
        self.count += 1
        if seen.retransmission:
            self.retransmitted[seen.label] = self.retransmitted.get(seen.label, 0) + 1
            if len(self.retransmission_frames) < 10:
                self.retransmission_frames.append(seen.ref)
        self.messages.append(seen)
        if len(self.messages) > 2 * KEEP:
            del self.messages[KEEP]
        if len(self.runs) > KEEP_RUNS:
            for key, run in self.runs.items():  # the oldest that is not phase 1
                if run.exchange.phase != 1:
                    del self.runs[key]
                    break

    def _sender(self, msg: IkeMessage, src: bytes, sport: int, dst: bytes, dport: int) -> str:
        if self.initiator is None:
            if msg.version == 2:
                starter = msg.initiator
            else:
                rspi_zero = msg.rspi == ZERO_SPI
                answers = msg.exchange_type in PHASE1_V1 and msg.payload("SA") is not None and not rspi_zero
                starter = rspi_zero or not answers
                self.roles_guessed = not rspi_zero and not answers
            me, peer = (src, sport), (dst, dport)
            self.initiator, self.responder = (me, peer) if starter else (peer, me)
        if msg.version == 2:
            return "I" if msg.initiator else "R"
        if src == self.initiator[0] and src != self.responder[0]:
            return "I"
        if src == self.responder[0] and src != self.initiator[0]:
            return "R"
        return "I" if sport == self.initiator[1] else "R"  # both ends on one address

    def _label(self, seen: Seen, digest: int) -> None:
        msg = seen.msg
        v2 = msg.version == 2
        ex = EXCHANGES.get((msg.version, msg.exchange_type))
        if ex is None:
            seen.retransmission = digest in self._digests
            self._digests[digest] = None
            seen.label = msg.exchange
            return
        if v2:
            seen.request = not msg.response
            requester = seen.sender if seen.request else ("R" if seen.sender == "I" else "I")
            key = (msg.exchange_type, msg.message_id, requester)
        elif ex.per_message_id:
            key = (msg.exchange_type, msg.message_id)
        else:
            key = (msg.exchange_type,)
        run = self.runs.get(key)
        if run is None:
            starter = requester if v2 else seen.sender
            if not ex.per_message_id:  # IKEv1 phase 1: the SA's initiator starts it
                starter = "I"
            run = self.runs[key] = Run(ex, starter, seen.time)
        # a copy of a message of this very run: a run forgotten (KEEP_RUNS) starts afresh with whatever comes next
        ref = self._digests.get(digest)
        seen.retransmission = ref is not None and ref() is run
        self._digests[digest] = weakref.ref(run)
        if v2 and seen.request and not seen.retransmission and any(not m.request for m in run.messages):
            # a new request under an answered message ID: IKE_SA_INIT retried after COOKIE/INVALID_KE
            answer = next(m for m in reversed(run.messages) if not m.request)
            retry = [n for _, n in answer.msg.notifies if n in sequences.RETRY_NOTIFIES]
            seen.retry = retry[0] if retry else "new request"
            run.done.clear()
        role = "I" if seen.sender == run.starter else "R"
        if not v2:
            seen.request = role == "I"
        marks = {p.name for p in msg.payloads}
        if msg.encrypted:
            marks.add(ENC)
        frag = None if v2 else msg.payload("FRAG")  # IKEv1 fragmentation: each fragment is a message of its own
        whole = (seen.sender, frag.info.get("fragment_id")) if frag is not None else None
        if whole is not None and whole in self._fragmented:  # another fragment of a message already labelled
            seen.label = self._fragmented[whole]
        elif seen.retransmission:
            same = [m for m in run.messages if m.sender == seen.sender and m.size == seen.size]
            seen.label = same[-1].label if same else sequences.label_step(ex, role, marks, run.done).label
        else:
            step = sequences.label_step(ex, role, marks, run.done)
            seen.label = step.label
            run.done.append(step)
            if self.up_time is None and self._completes_ike_sa(run, seen):
                self.up_time = seen.time
            for m in run.messages:  # whatever the other side sent before is answered now
                if m.sender != seen.sender:
                    m.answered = True
        if whole is not None:
            self._fragmented[whole] = seen.label
            if len(self._fragmented) > KEEP_RUNS:
                del self._fragmented[next(iter(self._fragmented))]
        run.messages.append(seen)
        if len(run.messages) > 2 * KEEP:
            del run.messages[KEEP]

    def _learn(self, seen: Seen, msg: IkeMessage) -> None:
        """Vendor IDs, NAT-OA, the phase-1 SA payloads and NAT-D of `msg` (the message of `seen`, or the whole
        message its IKEv1 fragments make up)."""
        for p in msg.payloads:
            if p.name in ("VID", "V") and p.info.get("vendor"):
                _note(self.vendors, seen.sender, p.info["vendor"])
        if self.version == 1 and any(p.type in DRAFT_TYPES for p in msg.payloads):
            method = self.natt_method()  # these numbers are GDOI's SAK/SAT (RFC 6407) unless a NAT-T draft chose them
            if method and method.natd in DRAFT_TYPES:
                msg.payloads = [draft_natt(p) if p.type in (method.natd, method.nat_oa) else p for p in msg.payloads]
        for p in msg.payloads:
            if p.name == "NAT-OA" and p.info.get("address"):
                _note(self.nat_oa, seen.sender, p.info["address"])
            elif p.name == "SA" and msg.exchange_type in (*PHASE1_V1, sequences.IKE_SA_INIT) and not seen.retransmission:
                if seen.sender == "I" and self.offered is None:
                    self.offered = p
                elif seen.sender == "R":
                    self.chosen = p
        self._check_natd(seen, msg)

    def _check_natd(self, seen: Seen, msg: IkeMessage) -> None:
        if msg.version == 2:
            about_src, about_dst = [], []
            for p in msg.payloads:
                if p.name == "N":
                    kind = p.info.get("notify_type")
                    if kind == NOTIFY_NATD_SRC:
                        about_src.append(p.info.get("data", b""))
                    elif kind == NOTIFY_NATD_DST:
                        about_dst.append(p.info.get("data", b""))
        else:
            hashes = [p.info.get("hash", b"") for p in msg.payloads if p.name == "NAT-D"]
            about_dst, about_src = hashes[:1], hashes[1:]
        if not about_dst and not about_src:
            return
        result = natt.check(msg.version, msg.ispi, msg.rspi, seen.src, seen.sport, seen.dst, seen.dport,
                            about_dst, about_src, self.v1_hash())
        if result:
            seen.natd = result
            if len(self.natd) < KEEP:
                self.natd.append(seen)

    def v1_hash(self) -> int | None:
        """The IKEv1 hash algorithm chosen for this SA (attribute value), if seen."""
        sa = self.chosen or self.offered
        for prop in sa.info.get("proposals", [])[:1] if sa else []:
            for t in prop.transforms[:1]:
                value = getattr(t, "attributes", {}).get("hash")
                if isinstance(value, int):
                    return value
        return None

    # -- what it amounts to --------------------------------------------------------

    def natt_method(self) -> natt.Method | None:
        """IKEv1: what the NAT-T vendor ID both peers sent implies (payload types, float), or None."""
        vid = natt.chosen(self.vendors.get("I", ()), self.vendors.get("R", ()))
        return natt.METHODS[vid] if vid else None

    def natd_translated(self) -> dict[str, bool | None]:
        """Per role, whether its address/port differs from what the NAT-D hashes claim about it, as captured."""
        out: dict[str, bool | None] = {"I": None, "R": None}
        for s in self.natd:
            other = "R" if s.sender == "I" else "I"
            for role, flag in ((s.sender, s.natd.get("sender_translated")), (other, s.natd.get("receiver_translated"))):
                if flag is not None:
                    out[role] = bool(out[role]) or flag
        return out

    def rewritten(self) -> Seen | None:
        """NAT-D found a translation, yet the peers never used the NAT-T port: the first message that stayed on
        the IKE port where NAT-T moves to UDP 4500 (the addresses were rewritten on the path, or the capture
        was anonymised), or None.  Only when both sides sent NAT-D (a side that sent none may not detect NAT,
        so staying put proves nothing); drafts 00/01 of NAT-T never move, so they never tell."""
        if self.stayed is None or self.float_at or self._first_natt or self.opening_missing():
            return None
        if not any(self.natd_translated().values()):
            return None
        if len({s.sender for s in self.natd}) < 2:
            return None
        method = self.natt_method() if self.version == 1 else None
        return None if method and not method.floats else self.stayed

    def behind_nat(self) -> dict[str, bool | None]:
        """Per role, whether it sits behind a NAT (or fakes NAT-D), by NAT-D; None when NAT-D does not tell,
        also when the addresses NAT-D disagrees with were rewritten rather than translated (`rewritten`), and
        when the capture starts inside the SA (`opening_missing`)."""
        if self.opening_missing() or self.rewritten():
            return {"I": None, "R": None}
        return self.natd_translated()

    @property
    def started_natt(self) -> bool:
        """Its first message in the capture is on the NAT-T port and is its opening (or the SA is an IKEv2
        rekey on a floated SA): no float to see.  False when the capture starts inside the SA: the float, if
        any, predates the capture."""
        return self._first_natt and not self.opening_missing()

    def opening_missing(self) -> bool:
        """The capture starts inside this SA: none of its messages is the initiator's MM1, AM1 or IKE_SA_INIT
        request, so NAT-D and the float are unknown (diagnose.capture_limits: capture-mid-session).  An IKEv2
        SA that appears after a CREATE_CHILD_SA of its peers may be its rekey, which has no opening of its own."""
        if not self.messages or self.after_child:
            return False
        if sequences.exchange(self.version, self.messages[0].msg.exchange_type) is None:
            return False
        return not any(m.label in OPENING and m.sender == "I" and m.request for m in self.messages)

    def phase1_runs(self) -> list[Run]:
        return [r for r in self.runs.values() if r.exchange.phase == 1]

    def _completes_ike_sa(self, run: Run, last: Seen) -> bool:
        if (self.version, run.exchange.type) not in sequences.IKE_SA_DONE or not sequences.complete(run.exchange, run.done):
            return False
        return not self.error_only(last)

    def error_only(self, seen: Seen) -> bool:
        """An IKEv2 response whose encrypted part is too small for more than a notify or two
        (IDr + AUTH alone need 40 bytes): an error answer such as AUTHENTICATION_FAILED.  Decrypted: one that
        holds notifies only, or an EAP-Failure."""
        if self.version != 2 or seen.request:
            return False
        if seen.msg.decrypted and seen.msg.inner:
            return all(p.name == "N" or (p.name == "EAP" and p.info.get("code") == EAP_FAILURE) for p in seen.msg.inner)
        return seen.plaintext is not None and seen.plaintext < ERROR_ONLY_PLAINTEXT

    def ike_sa_up(self) -> bool:
        """Phase 1 completed (MM6 / AM3 / IKE_AUTH answered)."""
        return self.up_time is not None

    def child_runs(self) -> list[Run]:
        return [r for r in self.runs.values() if r.exchange.phase == 2]

    def mode(self) -> str:
        if self.version == 2:
            return "IKEv2"
        names = [r.exchange.name for r in self.phase1_runs()]
        return names[0] if names else "IKEv1 (phase 1 not seen)"

    def owed(self, now: float) -> list[sequences.Owed]:
        """Unfinished exchanges: who owes what next (none once a retry or a redirect replaced this SA)."""
        return [] if self.retried_by or self.redirected_to else sequences.owed(self.runs.values(), now)

    def state(self) -> str:
        """How far the SA got, in an admin's words."""
        if self.version == 1:
            labels = [m.label for m in self.messages if m.msg.exchange_type in PHASE1_V1]
            p1 = max(labels, key=lambda lab: int(lab[2:]) if lab[2:].isdigit() else 0) if labels else None
            if not self.ike_sa_up():
                return f"phase 1 incomplete (last {p1})" if p1 else "phase 1 not seen"
            done = [r for r in self.child_runs() if sequences.complete(r.exchange, r.done)]
            # a Quick Mode whose QM2 was re-sent after QM3: QM3 never reached the responder, not up there
            lost = [r for r in done if r.messages[-1].label == "QM2" and any(m.label == "QM3" for m in r.messages)]
            qm = [r for r in done if r not in lost]
            text = f"phase 2 up ({len(qm)} quick mode{'s' if len(qm) != 1 else ''})" if qm else "phase 1 up"
            if lost:
                text += f", {len(lost)} quick mode{'s' if len(lost) > 1 else ''} not completed " \
                        "(QM2 re-sent after QM3)"
            return text if qm or lost else "phase 1 up, no phase 2"
        init = [r for r in self.runs.values() if r.exchange.type == sequences.IKE_SA_INIT]
        if not init and not self.ike_sa_up():
            return "IKE_SA_INIT not seen" + (", IKE SA in use" + self._children_v2() if self.messages else "")
        if not self.ike_sa_up():
            return self._v2_setup(init)
        return "IKE SA up" + self._children_v2()

    def _children_v2(self) -> str:
        """", 2 CREATE_CHILD_SA, 1 CREATE_CHILD_SA refused": the answered ones, the refused ones apart."""
        answered = [r for r in self.child_runs() if sequences.complete(r.exchange, r.done)]
        refused = [r for r in answered if any(self.refused(m) for m in r.messages if not m.request)]
        extra = f", {len(answered) - len(refused)} CREATE_CHILD_SA" if len(answered) > len(refused) else ""
        return extra + (f", {len(refused)} CREATE_CHILD_SA refused" if refused else "")

    def refused(self, answer: Seen) -> bool:
        """An IKEv2 answer that refuses: error-only by its size, or, when the cipher (so the plaintext) is
        unknown, a small answer whose encrypted part starts with a Notify (an accepted CREATE_CHILD_SA answer
        starts with SA and carries SA, Nr and TSi/TSr: far more than REFUSED_SIZE bytes)."""
        if answer.plaintext is not None:
            return self.error_only(answer)
        return answer.msg.encrypted_first == "N" and answer.size <= REFUSED_SIZE

    def _v2_setup(self, init: list[Run]) -> str:
        """How far an IKEv2 SA that is not up got: the latest IKE_SA_INIT answer and what followed it."""
        answers = [m for r in init for m in r.messages if not m.request]
        last = answers[-1].msg if answers else None
        retry = next((m.retry for r in init for m in r.messages if m.retry), None)
        redirect = next((p for p in last.payloads if p.name == "N" and p.info.get("notify_type") == NOTIFY_REDIRECT),
                        None) if last else None  # RFC 5685 5: an answer to IKE_SA_INIT, responder SPI 0
        if self.redirected_to:
            return f"redirected to {ip_address(self.redirected_to)}"
        if redirect is not None:
            return f"redirected to {_gateway(redirect.info.get('data', b''))} (not followed in the capture)"
        later = [r for r in self.runs.values() if r.exchange.type != sequences.IKE_SA_INIT]
        note = ""
        if not any(sequences.complete(r.exchange, r.done) for r in init):
            if not later:  # nothing of the initiator's shows that an answer came
                return f"IKE_SA_INIT retry ({retry}) unanswered" if retry else "IKE_SA_INIT unanswered"
            note = " (the IKE_SA_INIT answer is not in the capture)"
        if self.retried_by:
            return f"retried ({self.retried_by})"
        errors = [n for t, n in last.notifies if sequences.is_error_notify(2, t) or n in sequences.RETRY_NOTIFIES] \
            if last else []
        auth = [r for r in later if r.exchange.type == sequences.IKE_AUTH]
        if errors and not auth:
            return f"IKE_SA_INIT answered with {errors[0]}"
        if not auth:
            after = f" after a retry ({retry})" if retry else ""
            if not later:
                return f"IKE_SA_INIT answered{after}, no IKE_AUTH seen{note}"
            run = later[-1]
            done = "answered" if sequences.complete(run.exchange, run.done) else "unanswered"
            return f"{run.exchange.name} {done}, no IKE_AUTH seen{note}"
        if any(self.error_only(m) for m in self.messages if m.msg.exchange_type == sequences.IKE_AUTH):
            return "IKE_AUTH answered with an error notify"
        return "IKE_AUTH incomplete" + note


def _gateway(data: bytes) -> str:
    """The New Responder GW Identity of an N(REDIRECT) (RFC 5685 8: type 1 IPv4, 2 IPv6, 3 FQDN)."""
    kind, size, ident = (data[0], data[1], data[2:2 + data[1]]) if len(data) >= 2 else (0, 0, b"")
    if kind in (1, 2) and size in (4, 16) and len(ident) == size:
        return str(ip_address(ident))
    if kind == 3 and ident:
        return ident.decode("ascii", "replace")
    return "another gateway"


@dataclass(slots=True)
class _Pieces:
    """The fragments of one IKEv1 message seen so far."""

    parts: dict[int, bytes] = field(default_factory=dict)  # fragment number -> data
    last: int = 0  # the number of the fragment flagged last, once seen
    size: int = 0
    skip: bool = False  # encrypted, or too large: not collected


def _note(names: dict[str, set[str]], role: str, name: str) -> None:
    kept = names.setdefault(role, set())
    if len(kept) < KEEP_NAMES:
        kept.add(name)
