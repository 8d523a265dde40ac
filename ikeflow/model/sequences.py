"""The expected message sequences of every IKE exchange, as tables.

Each exchange is an ordered list of steps: the label an admin uses, who sends
it (I = the exchange's initiator, R = its responder) and the payloads that
identify it while it is still readable.  Labelling, progress and stall
detection read these tables; a new exchange is a new row here.
"""

from __future__ import annotations

from dataclasses import dataclass

ENC = "ENC"  # the message body is encrypted (IKEv1 E flag, IKEv2 SK/SKF)


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


def _v2(name: str, type_: int, phase: int) -> Exchange:
    return Exchange(name, 2, type_, (Step(name, "I"), Step(name, "R")), phase, True, True)


EXCHANGES: dict[tuple[int, int], Exchange] = {
    (1, 2): Exchange("Main Mode", 1, 2, (
        Step("MM1", "I", ("SA",)),
        Step("MM2", "R", ("SA",)),
        Step("MM3", "I", ("KE", "NONCE")),
        Step("MM4", "R", ("KE", "NONCE")),
        Step("MM5", "I", (ENC, "ID")),
        Step("MM6", "R", (ENC, "ID")),
    ), phase=1, per_message_id=False),
    (1, 4): Exchange("Aggressive Mode", 1, 4, (
        Step("AM1", "I", ("SA", "KE")),
        Step("AM2", "R", ("SA", "KE")),
        Step("AM3", "I", (ENC, "HASH", "SIG")),
    ), phase=1, per_message_id=False),
    (1, 32): Exchange("Quick Mode", 1, 32, (
        Step("QM1", "I"),
        Step("QM2", "R"),
        Step("QM3", "I"),
        Step("QM4", "R", optional=True),  # CONNECTED notify when the commit bit is set
    ), phase=2, per_message_id=True),
    (1, 5): Exchange("Informational", 1, 5, (Step("INFO", "I"),), phase=0, per_message_id=True),
    (1, 6): Exchange("Transaction", 1, 6, (Step("CFG", "I"), Step("CFG", "R")), phase=0, per_message_id=True),
    (2, 34): _v2("IKE_SA_INIT", 34, 1),
    (2, 35): _v2("IKE_AUTH", 35, 1),
    (2, 36): _v2("CREATE_CHILD_SA", 36, 2),
    (2, 37): _v2("INFORMATIONAL", 37, 0),
    (2, 43): _v2("IKE_INTERMEDIATE", 43, 1),
    (2, 38): _v2("IKE_SESSION_RESUME", 38, 1),
}

# The exchanges whose completion brings an IKE SA up.
IKE_SA_DONE = {(1, 2), (1, 4), (2, 35)}  # Main Mode, Aggressive Mode, IKE_AUTH

# IKEv2 IKE_SA_INIT responses that ask the initiator to start again with
# something changed: a retry, not a failure.
RETRY_NOTIFIES = {"COOKIE", "INVALID_KE_PAYLOAD"}


def exchange(version: int, type_: int) -> Exchange | None:
    return EXCHANGES.get((version, type_))


def label_step(ex: Exchange, sender: str, marks: set[str], done: list[Step]) -> Step:
    """The step a message is: by the payloads it shows, else the next one this sender owes.

    `done` holds the steps already seen in this run of the exchange.
    """
    own = [s for s in ex.steps if s.sender == sender]
    if not own:  # a one-sided exchange answered anyway (IKEv1 DPD ack, notify replies)
        return ex.steps[0]
    for s in own:
        if s.marks and marks & set(s.marks) and s not in done:
            return s
    for s in own:
        if s not in done:
            return s
    return own[-1]


def next_step(ex: Exchange, step: Step) -> Step | None:
    """The mandatory step that should follow `step`, or None after the last one."""
    later = ex.steps[ex.steps.index(step) + 1 :]
    return next((s for s in later if not s.optional), None)


def complete(ex: Exchange, done: list[Step]) -> bool:
    """The exchange reached its last mandatory step (earlier ones may predate the capture)."""
    last = [s for s in ex.steps if not s.optional][-1]
    return last in done
