"""A capture beside the configurations (`check --capture`, `read --config`). Each finding of the capture gets the
configuration findings that explain it (with their `file:line`), and the causes the configurations rule out drop to
the end of its ranking ("the PSKs match, so psk-mismatch is ruled out"). The wire is compared with the paired
conns: the phase-1 proposals, the IDs (in clear in Aggressive Mode, decrypted with --keys in Main Mode and
IKE_AUTH), the subnets (IKEv2 TSi/TSr, IKEv1 Quick Mode client IDs) and NAT-T (faked NAT-D of forced
encapsulation). What the wire shows of the IDs and subnets decides between causes the configurations leave tied."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ikeflow.check.compare import Pair, covers, id_match, nets, overlap
from ikeflow.check.resolve import Conn
from ikeflow.check.suites import Suite, parse
from ikeflow.decode.proposals import swanctl_string
from ikeflow.diagnose.finding import ERROR, INFO, WARNING, Finding
from ikeflow.sources.capture import split_ref

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
_FORCED = ("yes", "force")
_BEFORE_FLOAT = {"IKE_SA_INIT", "MM1", "MM2", "MM3", "MM4", "AM1", "AM2"}  # NAT-D is exchanged before these end


@dataclass
class Note:
    """One capture finding with what the configurations (and the wire against them) say about it."""
    finding: Finding
    pair: Pair | None
    explained_by: list[Finding] = field(default_factory=list)
    ruled_out: list[tuple[str, str]] = field(default_factory=list)  # (cause, why)
    causes: list[str] = field(default_factory=list)  # the finding's causes, re-ranked
    cause: str | None = None  # the one cause the configurations and the wire leave, when they settle it


@dataclass
class Wire:
    """One IKE SA's wire against its pair of conns."""
    differs: list[Finding] = field(default_factory=list)  # a sender shows other than its own conn says
    breaks: list[Finding] = field(default_factory=list)  # a value the receiver's conn does not take
    agrees: dict[str, str] = field(default_factory=dict)  # cause -> why the wire rules it out
    natt: list[Finding] = field(default_factory=list)  # NAT-T as the configurations explain it


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


def notes(pairs: list[Pair], sas, findings: list[Finding]) -> list[Note]:
    """The wire's differences from the configurations (warnings with their frames), then a note for every capture
    finding that names causes (and for the NAT-T finding the configurations explain)."""
    out, wires = [], {}
    for sa in sas:
        p = _pair_for(_addrs(sa, None), pairs) if sa.messages else None
        if p is not None:
            w = wires[id(sa)] = _wire(sa, p)
            out += [Note(f, p) for f in _proposals(sa, p) + w.differs]
    return out + _attach(pairs, findings, wires)


def _attach(pairs: list[Pair], findings: list[Finding], wires: dict[int, Wire]) -> list[Note]:
    out = []
    for f in findings:
        w = wires.get(id(f.sa)) if f.sa is not None else None
        if f.code == "nat-t" and w and w.natt:
            out.append(Note(f, _pair_for(_addrs(f.sa, f.pair), pairs), explained_by=list(w.natt)))
        if not f.causes or f.severity == INFO:
            continue
        p = _pair_for(_addrs(f.sa, f.pair), pairs)
        note = Note(f, p, causes=list(f.causes))
        if p is not None:
            _rank(note, p, w or Wire())
        out.append(note)
    return out


def _rank(note: Note, p: Pair, w: Wire) -> None:
    """Explained first (by the wire, then by the configurations, in their order), ruled out last; the settled
    cause when something explains the stall."""
    f = note.finding
    errors = [c for c in p.findings if c.severity == ERROR]
    codes = {c.code for c in p.findings}
    stopped = any(c.code == "ike-version-mismatch" for c in errors)  # nothing after it was compared
    wire = [c for c in w.breaks if set(c.causes) & set(f.causes)]
    for cause in f.causes:
        if cause in w.agrees and not any(cause in c.causes for c in wire):
            note.ruled_out.append((cause, w.agrees[cause]))
            continue
        named = [c for c in wire + errors if cause in c.causes]
        if named:
            note.explained_by += [c for c in named if c not in note.explained_by]
        elif cause in DECIDED and (not stopped or cause == "ike-version-mismatch") and \
                not (cause == "peer-id-mismatch" and "id-unknown" in codes):  # an ID known only at run time
            why = next((c.summary for c in p.findings if c.code in DECIDED[cause] & codes), _WHY_OUT[cause])
            note.ruled_out.append((cause, why))
    out = {c for c, _ in note.ruled_out}
    first = list(dict.fromkeys(c for e in note.explained_by for c in e.causes if c in f.causes and c not in out))
    note.causes = first + [c for c in f.causes if c not in first and c not in out] + [c for c in f.causes if c in out]
    note.cause = first[0] if first else None


# -- the wire against the conns ----------------------------------------------------------------------------------

def _who(c: Conn) -> str:
    return f"{c.name} ({c.config.source})"


def _role(sender: str) -> str:
    return "initiator" if sender == "I" else "responder"


def _wire(sa, p: Pair) -> Wire:
    w = Wire()
    for m in sa.messages:
        if m.retransmission:
            continue
        sender, receiver = (p.init, p.resp) if m.sender == "I" else (p.resp, p.init)
        shown = [(pl, "in clear") for pl in m.msg.payloads] + \
            [(pl, "decrypted") for pl in (m.msg.inner if m.msg.decrypted else [])]
        client_ids = [pl for pl, _ in shown if pl.name == "ID" and m.label.startswith("QM")]
        for pl, how in shown:
            value = pl.info.get("value")
            if value is None or pl.name not in ("ID", "IDi", "IDr") or pl in client_ids:
                continue
            if pl.name == "IDr" and m.sender == "I":  # IKEv2: the responder ID the initiator asks for
                _id(w, m, how, value, "the responder ID asked for", sender["remote_id"], receiver["local_id"],
                    sender, receiver)
            else:
                _id(w, m, how, value, f"the {_role(m.sender)} identifies as", sender["local_id"],
                    receiver["remote_id"], sender, receiver)
        if len(client_ids) >= 2 and m.request:  # IDci, IDcr of the Quick Mode initiator
            how = "decrypted"
            for pl, mine, theirs, side in ((client_ids[0], "local_ts", "remote_ts", "its own side"),
                                           (client_ids[1], "remote_ts", "local_ts", "the far side")):
                _ts(w, m, how, _client_id(str(pl.info.get("value", ""))), side, sender, receiver, mine, theirs, v1=True)
        for pl, how in shown:
            if pl.name in ("TSi", "TSr") and m.request:  # TSi: the request sender's side
                mine, theirs, side = (("local_ts", "remote_ts", "its own side") if pl.name == "TSi"
                                      else ("remote_ts", "local_ts", "the far side"))
                ranges = [_range(s) for s in pl.info.get("selectors", [])]
                _ts(w, m, how, [n for r in ranges for n in r], side, sender, receiver, mine, theirs, v1=False)
    _natt(w, sa, p)
    return w


def _id(w: Wire, m, how: str, value: str, what: str, own, expected, sender: Conn, receiver: Conn) -> None:
    label = m.label or "?"
    if not id_match(own.value, value):
        w.differs.append(Finding(WARNING, "capture-differs-from-config", label,
                                 f"on the wire ({how}) {what} {value}, {_who(sender)} says {own.value}: that daemon "
                                 f"runs another configuration than this one", f"from {own.where}", frames=[m.ref]))
    if id_match(expected.value, value):
        w.agrees.setdefault("peer-id-mismatch", f"in frame {_frame(m.ref)}, {how}, {what} {value}, which "
                                                f"{_who(receiver)} takes: {expected.where}")
    else:
        w.breaks.append(Finding(ERROR, "peer-id-mismatch", label,
                                f"on the wire ({how}) {what} {value}, {_who(receiver)} expects {expected.value}",
                                f"from {expected.where}", frames=[m.ref], causes=["peer-id-mismatch"],
                                evidence="decrypted" if how == "decrypted" else ""))


def _frame(ref: int) -> str:
    f, n = split_ref(ref)
    return f"{f + 1}:{n}" if f else str(n)


def _client_id(text: str) -> list:
    """An IKEv1 Quick Mode client ID (address, subnet or range, as decode/ike.py writes it) as networks."""
    if "-" in text:
        return _range({"start": text.split("-")[0], "end": text.split("-")[1]})
    try:
        return [ipaddress.ip_network(text, strict=False)]
    except ValueError:
        return []


def _range(sel: dict) -> list:
    """An IKEv2 traffic selector's address range as networks."""
    try:
        start, end = ipaddress.ip_address(sel["start"]), ipaddress.ip_address(sel["end"])
        return list(ipaddress.summarize_address_range(start, end))
    except (ValueError, TypeError, KeyError):
        return []


def _ts(w: Wire, m, how: str, shown: list, side: str, sender: Conn, receiver: Conn, mine: str, theirs: str,
        v1: bool) -> None:
    own, allowed = nets(sender[mine].value), nets(receiver[theirs].value)
    if not shown or not own or not allowed:
        return
    text = ", ".join(map(str, shown))
    if set(shown) != set(own) and not (not v1 and covers(own, shown)):
        w.differs.append(Finding(WARNING, "capture-differs-from-config", m.label,
                                 f"on the wire ({how}) the {_role(m.sender)} proposes {text} for {side}, "
                                 f"{_who(sender)} says {', '.join(map(str, own))}: that daemon runs another "
                                 f"configuration than this one", f"from {sender[mine].where}", frames=[m.ref]))
    if covers(allowed, shown) or (not v1 and overlap(allowed, shown)):
        w.agrees.setdefault("subnet-mismatch", f"in frame {_frame(m.ref)}, {how}, {text} for {side} is within "
                                               f"what {_who(receiver)} allows: {receiver[theirs].where}")
    else:
        w.breaks.append(Finding(ERROR, "subnet-mismatch", m.label,
                                f"on the wire ({how}) the {_role(m.sender)} proposes {text} for {side}, "
                                f"{_who(receiver)} allows {', '.join(map(str, allowed))}",
                                f"from {receiver[theirs].where}", frames=[m.ref], causes=["subnet-mismatch"],
                                evidence="decrypted" if how == "decrypted" else ""))


def _natt(w: Wire, sa, p: Pair) -> None:
    """NAT-D against forced encapsulation: a sender the capture sees at its own configured address whose NAT-D
    claims a NAT fakes it, which only a conn forcing UDP encapsulation does (RFC 3947 / RFC 7296 2.23)."""
    forced = [c for c in (p.init, p.resp) if str(c["encap"]).lower().startswith(_FORCED)]
    later = next((m for m in sa.messages if not m.natt and m.label not in _BEFORE_FLOAT), None)
    if forced and {m.sender for m in sa.natd} == {"I", "R"} and sa.float_at is None and later is not None:
        w.differs.append(Finding(WARNING, "capture-differs-from-config", later.label,
                                 f"{_who(forced[0])} forces UDP encapsulation, yet {later.label} stays on UDP port "
                                 f"{later.dport} (both ends sent NAT-D): that daemon runs another configuration than "
                                 f"this one", f"from {forced[0]['encap'].where}", frames=[later.ref]))
    told = set()
    for m in sa.natd:
        if m.sender in told or not m.natd or m.natd.get("sender_translated") is None:
            continue
        told.add(m.sender)
        conn = p.init if m.sender == "I" else p.resp
        addr = str(ipaddress.ip_address(m.src))
        if addr not in conn["local_addrs"].value:
            continue  # a NAT may sit between that end and the capture point
        faked, forced = m.natd["sender_translated"], str(conn["encap"]).lower().startswith(_FORCED)
        floated = f"; the exchange floats to UDP 4500 at {sa.float_at}" if sa.float_at else ""
        if faked and forced:
            w.natt.append(Finding(INFO, "natt-as-configured", m.label or "NAT-T",
                                  f"the {_role(m.sender)} at {addr} has no NAT in front but its NAT-D claims one: "
                                  f"{_who(conn)} forces UDP encapsulation{floated}",
                                  f"from {conn['encap'].where}", frames=[m.ref]))
        elif faked != forced:
            says = "forces UDP encapsulation" if forced else "does not force UDP encapsulation"
            seen = "genuine (no NAT claimed)" if not faked else "faked (a NAT claimed where there is none)"
            w.differs.append(Finding(WARNING, "capture-differs-from-config", m.label or "NAT-T",
                                     f"on the wire the {_role(m.sender)}'s NAT-D is {seen}, {_who(conn)} {says}: "
                                     f"that daemon runs another configuration than this one",
                                     f"from {conn['encap'].where}", frames=[m.ref]))


# -- phase-1 proposals ------------------------------------------------------------------------------------------

def _suites(payload) -> list[Suite]:
    """The IKE suites of a decoded SA payload: one per IKEv1 transform, one per IKEv2 proposal."""
    props = payload.info.get("proposals", []) if payload else []
    return [parse(swanctl_string(x), "strongswan").suites[0] for p in props for x in (p.transforms if p.version == 1
                                                                                     else [p])]


def _within(wire: Suite, conf: Suite) -> bool:
    return all(getattr(wire, t) <= getattr(conf, t) for t in ("encr", "integ", "dh") if getattr(wire, t))


def _proposals(sa, p: Pair) -> list[Finding]:
    """The phase-1 proposals offered, or chosen by the responder, that the paired conn does not hold: the daemon
    does not run the configuration given (another file, an older one, another conn)."""
    out = []
    for what, payload, conn, sender in (("offers", sa.offered, p.init, "I"), ("chose", sa.chosen, p.resp, "R")):
        extra = [w for w in _suites(payload) if not any(_within(w, c) for c in conn["ike"].value.suites)]
        if extra:
            frame = next((m.ref for m in sa.messages if m.sender == sender
                          and any(pl is payload for pl in m.msg.payloads)), None)
            out.append(Finding(WARNING, "capture-differs-from-config", "MM1" if sa.version == 1 else "IKE_SA_INIT",
                               f"on the wire the {_role(sender)} {what} {', '.join(s.text() for s in extra)}, which "
                               f"{_who(conn)} does not: that daemon runs another configuration than this one",
                               f"from {conn['ike'].where}", frames=[frame] if frame is not None else []))
    return out
