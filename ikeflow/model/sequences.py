"""The expected message sequences of every IKE exchange, as tables.

Each exchange is an ordered list of steps: the label an admin uses, who sends
it (I = the exchange's initiator, R = its responder) and the payloads that
identify it while it is still readable.  Labelling, progress and stall
detection read these tables; a new exchange is a new row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENC = "ENC"  # the message body is encrypted (IKEv1 E flag, IKEv2 SK/SKF)

# Exchange types (RFC 2408 3.1 and RFC 7296 3.1, IANA "IKEv2 Exchange Types").
MAIN_MODE, AGGRESSIVE_MODE, INFORMATIONAL_V1, TRANSACTION, QUICK_MODE = 2, 4, 5, 6, 32
IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, IKE_SESSION_RESUME, IKE_INTERMEDIATE = 34, 35, 36, 37, 38, 43
PHASE1_V1 = (MAIN_MODE, AGGRESSIVE_MODE)

# Notify types below this are errors: IKEv1 1..8191 (RFC 2408 3.14.1), IKEv2 1..16383 (RFC 7296 3.10.1).
ERROR_LIMIT = {1: 8192, 2: 16384}

# A single unanswered request this many seconds old is a stall, not a message still in flight.
SHORT_WAIT = 10.0


@dataclass(frozen=True)
class Step:
    label: str
    sender: str  # "I" or "R"
    marks: tuple[str, ...] = ()  # payload names (or ENC) that identify this step; any one suffices
    optional: bool = False


@dataclass(frozen=True)
class Exchange:
    name: str
    version: int
    type: int
    steps: tuple[Step, ...]
    phase: int  # 1: builds the IKE SA; 2: builds child/IPsec SAs; 0: neither
    per_message_id: bool  # IKEv1 Quick Mode / Informational / Transaction: one run per message ID
    request_response: bool = False  # IKEv2: every request is answered by a response
    # sender -> its steps in order, each with its marks as a set (label_step runs for every message)
    own: dict[str, tuple[tuple[Step, frozenset[str]], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "own", {who: tuple((s, frozenset(s.marks)) for s in self.steps if s.sender == who)
                                         for who in "IR"})


def _v2(name: str, type_: int, phase: int) -> Exchange:
    return Exchange(name, 2, type_, (Step(name, "I"), Step(name, "R")), phase, True, True)


EXCHANGES: dict[tuple[int, int], Exchange] = {
    (1, MAIN_MODE): Exchange("Main Mode", 1, MAIN_MODE, (
        Step("MM1", "I", ("SA",)),
        Step("MM2", "R", ("SA",)),
        Step("MM3", "I", ("KE", "NONCE")),
        Step("MM4", "R", ("KE", "NONCE")),
        Step("MM5", "I", (ENC, "ID")),
        Step("MM6", "R", (ENC, "ID")),
    ), phase=1, per_message_id=False),
    (1, AGGRESSIVE_MODE): Exchange("Aggressive Mode", 1, AGGRESSIVE_MODE, (
        Step("AM1", "I", ("SA", "KE")),
        Step("AM2", "R", ("SA", "KE")),
        Step("AM3", "I", (ENC, "HASH", "SIG")),
    ), phase=1, per_message_id=False),
    (1, QUICK_MODE): Exchange("Quick Mode", 1, QUICK_MODE, (
        Step("QM1", "I"),
        Step("QM2", "R"),
        Step("QM3", "I"),
        Step("QM4", "R", optional=True),  # CONNECTED notify when the commit bit is set
    ), phase=2, per_message_id=True),
    (1, INFORMATIONAL_V1): Exchange("Informational", 1, INFORMATIONAL_V1, (Step("INFO", "I"),), phase=0,
                                    per_message_id=True),
    (1, TRANSACTION): Exchange("Transaction", 1, TRANSACTION, (Step("CFG", "I"), Step("CFG", "R")), phase=0,
                               per_message_id=True),
    (2, IKE_SA_INIT): _v2("IKE_SA_INIT", IKE_SA_INIT, 1),
    (2, IKE_AUTH): _v2("IKE_AUTH", IKE_AUTH, 1),
    (2, CREATE_CHILD_SA): _v2("CREATE_CHILD_SA", CREATE_CHILD_SA, 2),
    (2, INFORMATIONAL): _v2("INFORMATIONAL", INFORMATIONAL, 0),
    (2, IKE_INTERMEDIATE): _v2("IKE_INTERMEDIATE", IKE_INTERMEDIATE, 1),
    (2, IKE_SESSION_RESUME): _v2("IKE_SESSION_RESUME", IKE_SESSION_RESUME, 1),
}

# The exchanges whose completion brings an IKE SA up.
IKE_SA_DONE = {(1, MAIN_MODE), (1, AGGRESSIVE_MODE), (2, IKE_AUTH)}

# IKEv2 IKE_SA_INIT responses that ask the initiator to start again with
# something changed: a retry, not a failure.
RETRY_NOTIFIES = {"COOKIE", "INVALID_KE_PAYLOAD"}


def exchange(version: int, type_: int) -> Exchange | None:
    return EXCHANGES.get((version, type_))


def label_step(ex: Exchange, sender: str, marks: set[str], done: list[Step]) -> Step:
    """The step a message is: by the payloads it shows, else the next one this sender owes.

    `done` holds the steps already seen in this run of the exchange.
    """
    own = ex.own[sender]
    if not own:  # a one-sided exchange answered anyway (IKEv1 DPD ack, notify replies)
        return ex.steps[0]
    for s, its_marks in own:
        if its_marks and not its_marks.isdisjoint(marks) and s not in done:
            return s
    for s, _ in own:
        if s not in done:
            return s
    return own[-1][0]


def next_step(ex: Exchange, step: Step) -> Step | None:
    """The mandatory step that should follow `step`, or None after the last one."""
    later = ex.steps[ex.steps.index(step) + 1 :]
    return next((s for s in later if not s.optional), None)


def complete(ex: Exchange, done: list[Step]) -> bool:
    """The exchange reached its last mandatory step (earlier ones may predate the capture)."""
    last = [s for s in ex.steps if not s.optional][-1]
    return last in done


def is_error_notify(version: int, notify_type: int) -> bool:
    """An error notify (below ERROR_LIMIT), not a status one."""
    return notify_type < ERROR_LIMIT[version]


@dataclass(frozen=True)
class Owed:
    """An unfinished run of an exchange: who owes what next, since when."""

    run: object  # ikesa.Run
    last: object  # ikesa.Seen: the last fresh message of the run
    sends: tuple  # every send of that message (the first, then its retransmissions)
    next: str  # the label owed next
    wanted: str  # as said to the admin: "MM4", or "IKE_AUTH response"
    seconds: float  # since the first send
    retransmissions: int

    @property
    def text(self) -> str:
        out = f"waiting for {self.wanted} for {self.seconds:.0f} s"
        if self.retransmissions:
            out += f" ({self.retransmissions} retransmission{'s' if self.retransmissions > 1 else ''})"
        return out

    @property
    def stalled(self) -> bool:
        """Re-sent, or unanswered longer than SHORT_WAIT: an error, not a message in flight."""
        return bool(self.retransmissions) or self.seconds > SHORT_WAIT


def owed(runs, now: float) -> list[Owed]:
    """The unfinished runs (ikesa.Run) among `runs`, each with what comes next."""
    out = []
    for run in runs:
        if not run.done or run.exchange.name == "Informational" or complete(run.exchange, run.done):
            continue
        nxt = next_step(run.exchange, run.done[-1])
        if nxt is None:
            continue
        fresh = [m for m in run.messages if not m.retransmission]
        if not fresh:
            continue
        last = fresh[-1]
        sends = tuple(m for m in run.messages if m.label == last.label and m.sender == last.sender)
        wanted = f"{nxt.label} response" if nxt.label == last.label else nxt.label
        out.append(Owed(run, last, sends, nxt.label, wanted, max(0.0, now - sends[0].time), len(sends) - 1))
    return out
