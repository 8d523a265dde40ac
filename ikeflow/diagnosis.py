"""Diagnosis: where a negotiation stalls or fails, and the likely causes, ranked.

Each rule looks at the finished analysis and yields findings whose `causes`
come from the fixed vocabulary documented in README.md.
"""

from __future__ import annotations

from ikeflow import sequences
from ikeflow.analysis import Analyzer
from ikeflow.findings import ERROR, WARNING, Finding, times
from ikeflow.ikesa import IkeSa

# What an error notify points to, from the diagnosis vocabulary; first = most likely.
NOTIFY_CAUSES = {
    "NO-PROPOSAL-CHOSEN": ["proposal-mismatch"],
    "NO_PROPOSAL_CHOSEN": ["proposal-mismatch"],
    "INVALID-ID-INFORMATION": ["peer-id-mismatch", "subnet-mismatch"],
    "AUTHENTICATION-FAILED": ["psk-mismatch", "peer-id-mismatch"],
    "AUTHENTICATION_FAILED": ["psk-mismatch", "peer-id-mismatch"],
    "INVALID-HASH-INFORMATION": ["psk-mismatch"],
    "PAYLOAD-MALFORMED": ["psk-mismatch"],
    "INVALID-MAJOR-VERSION": ["ike-version-mismatch"],
    "INVALID_MAJOR_VERSION": ["ike-version-mismatch"],
    "TS_UNACCEPTABLE": ["subnet-mismatch"],
    "INVALID_KE_PAYLOAD": ["dh-group-mismatch"],
    "INVALID_SYNTAX": ["proposal-mismatch"],
}
# IKEv1 errors are 1..8191, IKEv2 errors 1..16383 (RFC 2408 3.14.1, RFC 7296 3.10.1).
ERROR_LIMIT = {1: 8192, 2: 16384}


def later_success(an: Analyzer, sa: IkeSa) -> IkeSa | None:
    """A later IKE SA between the same peers that came up, which makes this one's failure history."""
    if sa.initiator is None:
        return None
    pair = an.pair_of(sa)
    after = pair.sas[pair.sas.index(sa) + 1 :]
    return next((x for x in after if x.ike_sa_up()), None)


def _severity(an: Analyzer, sa: IkeSa, severity: str, summary: str) -> tuple[str, str]:
    """Demote a failure to a warning when a later attempt between the same peers succeeded."""
    if severity == ERROR and later_success(an, sa):
        return WARNING, summary + " (a later IKE SA between these peers came up)"
    return severity, summary


def stalls(an: Analyzer, files):
    """The last message of a run that was never answered or followed."""
    for sa in an.sas.values():
        if sa.retried_by:
            continue
        for run in sa.runs.values():
            if not run.done or run.exchange.name == "Informational" or sequences.complete(run.exchange, run.done):
                continue
            nxt = sequences.next_step(run.exchange, run.done[-1])
            if nxt is None:
                continue
            last = [m for m in run.messages if not m.retransmission][-1]
            sends = [m for m in run.messages if m.label == last.label and m.sender == last.sender]
            silent = "responder" if nxt.sender == "R" else "initiator"
            waited = an.last_time - sends[-1].time
            label = last.label
            follow = "response" if nxt.label == label else nxt.label
            what = f"{label} sent {times(len(sends))}, no {follow} followed"
            other = "R" if last.sender == "I" else "I"
            replies = [m for m in sa.messages if m.sender == other and m.time >= sends[0].time and m not in run.messages]
            causes: list[str] = []
            if replies:
                kinds = sorted({m.label for m in replies})
                what += f"; the {silent} answered with {len(replies)} {'/'.join(kinds)} message{'s' if len(replies) > 1 else ''} instead"
                if label in ("MM5", "AM3", "IKE_AUTH"):
                    causes = ["psk-mismatch", "peer-id-mismatch"]
            else:
                what += f"; the {silent} went silent"
            if run.exchange.phase == 0 and len(sends) == 1:
                severity = WARNING  # a lone unanswered INFORMATIONAL: typically a Delete at shutdown
            else:
                severity = ERROR if len(sends) > 1 or waited > 10 else WARNING
            if severity == WARNING:
                what += f" (capture ends {waited:.1f} s later)"
            severity, summary = _severity(an, sa, severity, f"{sa.mode()}: {what}")
            yield Finding(severity, "stall", label, summary, _stall_hint(label),
                          sorted(m.ref for m in sends + replies), causes, sa)


def _stall_hint(label: str) -> str:
    if label in ("MM1", "AM1", "IKE_SA_INIT"):
        return "Check that UDP 500 reaches the peer and that it runs IKE with a connection for this address."
    if label in ("MM5", "IKE_AUTH"):
        return ("Phase 1 authentication: compare the PSK (ipsec.secrets) and leftid/rightid on both ends; "
                "if the peers floated to UDP 4500, check the firewall for 4500.")
    return "Capture at the peer too to see whether the message arrives (ikeflow compare)."


def error_notifies(an: Analyzer, files):
    for sa in an.sas.values():
        for m in sa.messages:
            if m.retransmission:
                continue
            for ntype, name in m.msg.notifies:
                if ntype >= ERROR_LIMIT[sa.version]:
                    continue
                if name in sequences.RETRY_NOTIFIES and (sa.retried_by or any(x.retry == name for x in sa.messages)):
                    continue  # answered by a retry: part of a normal negotiation
                who = "initiator" if m.sender == "I" else "responder"
                severity, summary = _severity(an, sa, ERROR, f"the {who} sent {name} in {m.label}")
                if sa.up_time is not None and m.time < sa.up_time and sequences.exchange(sa.version, m.msg.exchange_type).phase != 2:
                    severity, summary = WARNING, summary + " (the IKE SA came up afterwards)"
                yield Finding(severity, "error-notify", m.label, summary,
                              "The peer rejected the negotiation; its log says why.",
                              [m.ref], list(NOTIFY_CAUSES.get(name, [])), sa)



RULES = [stalls, error_notifies]
