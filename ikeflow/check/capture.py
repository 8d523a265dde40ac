"""`check --capture`: the capture's findings beside the configurations. Each finding of the capture gets the
configuration findings that explain it (with their `file:line`), and the causes the configurations rule out
drop to the end of its ranking ("the PSKs match, so psk-mismatch is ruled out")."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ikeflow.check.compare import Pair
from ikeflow.check.resolve import Conn
from ikeflow.check.secrets import norm_id
from ikeflow.check.suites import Suite, parse
from ikeflow.decode.proposals import swanctl_string
from ikeflow.diagnose.finding import ERROR, INFO, WARNING, Finding

# causes the configurations decide, and the finding codes that mean "they agree on this"
DECIDED = {"psk-mismatch": {"psk-match"}, "peer-id-mismatch": set(), "proposal-mismatch": set(),
           "dh-group-mismatch": set(), "pfs-mismatch": set(), "subnet-mismatch": {"subnet-narrowed"},
           "ike-version-mismatch": set(), "aggressive-mode-refused": set(), "xauth-failed": set(),
           "eap-failed": set()}
_WHY_OUT = {"psk-mismatch": "the PSKs for this pair match", "peer-id-mismatch": "each end's ID is the one the other expects",
            "proposal-mismatch": "the proposals have algorithms in common", "dh-group-mismatch": "a DH group is common",
            "pfs-mismatch": "both ends ask for the same PFS", "subnet-mismatch": "the subnets mirror",
            "ike-version-mismatch": "both ends speak the initiator's IKE version",
            "aggressive-mode-refused": "the responder takes the initiator's mode",
            "xauth-failed": "the XAUTH passwords match (or none is set on one end)",
            "eap-failed": "the EAP passwords match (or none is set on one end)"}


@dataclass
class Note:
    """One capture finding with what the configurations say about it."""
    finding: Finding
    pair: Pair | None
    explained_by: list[Finding] = field(default_factory=list)
    ruled_out: list[tuple[str, str]] = field(default_factory=list)  # (cause, why)
    causes: list[str] = field(default_factory=list)  # the finding's causes, re-ranked


def _addrs(sa, raw_pair) -> set[str]:
    out = set()
    for ep in (sa.initiator, sa.responder) if sa else ():
        if ep:
            out.add(str(ipaddress.ip_address(ep[0])))
    for raw in raw_pair or ():
        out.add(str(ipaddress.ip_address(raw)))
    return out


def _pair_for(seen: set[str], pairs: list[Pair]) -> Pair | None:
    """The pair whose addresses the capture's peers use; the only pair when none matches (NAT in between)."""
    for p in pairs:
        known = set(p.init["local_addrs"].value) | set(p.resp["local_addrs"].value) | \
            set(p.init["remote_addrs"].value) | set(p.resp["remote_addrs"].value)
        if seen and seen <= known:
            return p
    return pairs[0] if len(pairs) == 1 else None


def attach(pairs: list[Pair], findings: list[Finding]) -> list[Note]:
    """A note for every capture finding that names causes."""
    notes = []
    for f in findings:
        if not f.causes or f.severity == INFO:
            continue
        p = _pair_for(_addrs(f.sa, f.pair), pairs)
        note = Note(f, p, causes=list(f.causes))
        if p is not None:
            errors = [c for c in p.findings if c.severity == ERROR]
            codes = {c.code for c in p.findings}
            stopped = any(c.code == "ike-version-mismatch" for c in errors)  # nothing after it was compared
            for cause in f.causes:
                named = [c for c in errors if cause in c.causes]
                if named:
                    note.explained_by += [c for c in named if c not in note.explained_by]
                elif cause in DECIDED and (not stopped or cause == "ike-version-mismatch"):
                    why = next((c.summary for c in p.findings if c.code in DECIDED[cause] & codes), _WHY_OUT[cause])
                    note.ruled_out.append((cause, why))
            out = {c for c, _ in note.ruled_out}
            first = [c for c in f.causes if any(c in e.causes for e in note.explained_by)]
            note.causes = first + [c for c in f.causes if c not in first and c not in out] + \
                [c for c in f.causes if c in out]
        notes.append(note)
    return notes


def _suites(payload) -> list[Suite]:
    """The IKE suites of a decoded SA payload: one per IKEv1 transform, one per IKEv2 proposal."""
    props = payload.info.get("proposals", []) if payload else []
    return [parse(swanctl_string(x), "strongswan").suites[0] for p in props for x in (p.transforms if p.version == 1
                                                                                     else [p])]


def _within(wire: Suite, conf: Suite) -> bool:
    return all(getattr(wire, t) <= getattr(conf, t) for t in ("encr", "integ", "dh") if getattr(wire, t))


def wire(pairs: list[Pair], sas) -> list[Note]:
    """IKE SAs of the capture whose phase-1 proposals (offered, or chosen by the responder) are not in the paired
    conn's: the daemon does not run the configuration given (another file, an older one, another conn)."""
    notes = []
    for sa in sas:
        p = _pair_for(_addrs(sa, None), pairs) if sa.offered else None
        if p is None:
            continue
        for what, payload, conn, sender in (("offers", sa.offered, p.init, "I"), ("chose", sa.chosen, p.resp, "R")):
            extra = [w for w in _suites(payload) if not any(_within(w, c) for c in conn["ike"].value.suites)]
            if extra:
                frame = next((m.ref for m in sa.messages if m.sender == sender
                              and any(pl is payload for pl in m.msg.payloads)), None)
                notes.append(Note(_differs(sa, what, extra, conn, frame), p))
        notes += [Note(f, p) for f in _ids_in_clear(sa, p)]
    return notes


def _ids_in_clear(sa, p: Pair) -> list[Finding]:
    """IKEv1 Aggressive Mode sends the IDs in clear (AM1, AM2): each against the sender's conn."""
    out = []
    for m in sa.messages[:4]:
        conn = p.init if m.sender == "I" else p.resp
        for pl in m.msg.payloads:
            value = pl.info.get("value") if pl.name == "ID" else None
            if value and norm_id(str(value)) != norm_id(conn["local_id"].value):
                out.append(Finding(WARNING, "capture-differs-from-config", m.label or "AM1",
                                   f"on the wire the {'initiator' if m.sender == 'I' else 'responder'} identifies as "
                                   f"{value}, {conn.name} ({conn.config.source}) says {conn['local_id'].value}",
                                   f"from {conn['local_id'].where}", frames=[m.ref]))
    return out


def _differs(sa, what: str, extra: list[Suite], conn: Conn, frame) -> Finding:
    role = "initiator" if what == "offers" else "responder"
    return Finding(WARNING, "capture-differs-from-config", "MM1" if sa.version == 1 else "IKE_SA_INIT",
                   f"on the wire the {role} {what} {', '.join(s.text() for s in extra)}, which {conn.name} "
                   f"({conn.config.source}) does not: that daemon runs another configuration than this one",
                   f"from {conn['ike'].where}", frames=[frame] if frame is not None else [])
