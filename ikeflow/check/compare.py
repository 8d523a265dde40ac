"""Pair the two ends' conns and compare what each will propose and accept: mismatches as `Finding`s with the
cause vocabulary of `diagnose/causes.py` and the message label where the negotiation would stall."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ikeflow.check.resolve import Conn, Value, flipped
from ikeflow.check.secrets import lookup, norm_id
from ikeflow.check.suites import Suite, agree, with_prf
from ikeflow.diagnose.finding import ERROR, INFO, WARNING, Finding

_ANY = {"%any", "%any4", "%any6", "0.0.0.0", "::", "%defaultroute", "%"}
_NAMES = {"encr": "encryption algorithm", "integ": "integrity algorithm", "prf": "PRF", "dh": "DH group",
          "esn": "ESN setting"}


@dataclass
class ConfigFinding(Finding):
    """A finding of the configurations, with the `file:line` of every setting that makes it."""
    lines: list[str] = field(default_factory=list)


def _at_lines(wheres) -> list[str]:
    return list(dict.fromkeys(w for w in wheres if not w.startswith("default")))


@dataclass
class Pair:
    """Two conns that would talk to each other; `init` is the end that starts the negotiation."""
    init: Conn
    resp: Conn
    how: str  # why these two were paired
    findings: list[Finding] = field(default_factory=list)
    version: int = 0
    ike_agreed: Suite | None = None

    @property
    def breaks(self) -> bool:
        return any(f.severity == ERROR for f in self.findings)

    def table(self) -> list[tuple[str, str, str, bool]]:
        return table(self)


def _addr_match(addrs: list[str], other: list[str]) -> int:
    if set(addrs) & set(other) - _ANY:
        return 2
    return 1 if (set(addrs) | set(other)) & _ANY else 0


def id_match(expected: str, sent: str) -> bool:
    """The receiver takes the ID: it expects any, or this one (or the sender's is only known at run time)."""
    return expected.lower() in _ANY or sent.lower() in _ANY or norm_id(expected) == norm_id(sent)


def _score(a: Conn, b: Conn) -> int:
    return (_addr_match(a["remote_addrs"].value, b["local_addrs"].value)
            + _addr_match(b["remote_addrs"].value, a["local_addrs"].value)
            + id_match(a["remote_id"].value, b["local_id"].value) + id_match(b["remote_id"].value, a["local_id"].value))


def pair(left: list[Conn], right: list[Conn], name: str | None = None) -> list[Pair]:
    """The best partner on the other end for each conn of the first, by addresses and IDs; an ipsec.conf conn is
    also tried with right= as this host. `name` keeps the conns of that name (on either end)."""
    if name:
        left_n, right_n = [c for c in left if c.name == name], [c for c in right if c.name == name]
        if not left_n and not right_n:
            return []
        left, right = left_n or left, right_n or right
    pairs, used = [], set()
    for a in left:
        options = [(a2, b2) for a2 in _orientations(a) for b in right if id(b) not in used for b2 in _orientations(b)]
        if not options:
            continue
        a2, b2 = max(options, key=lambda ab: _score(*ab))
        used.add(id(next(b for b in right if b.name == b2.name and b.config is b2.config)))
        init, resp = _roles(a2, b2)
        pairs.append(Pair(init, resp, f"{a2.name} and {b2.name} by addresses and IDs (score {_score(a2, b2)}/6)"))
    return pairs


def _orientations(c: Conn) -> list[Conn]:
    return [c, flipped(c)] if c.config.dialect != "swanctl" else [c]


def _roles(a: Conn, b: Conn) -> tuple[Conn, Conn]:
    """The initiator: the end that knows the other's address while the other takes %any, else the end that
    starts the conn (auto=start/route, start_action=start/trap), else the first."""
    a_knows = bool(set(a["remote_addrs"].value) - _ANY)
    b_knows = bool(set(b["remote_addrs"].value) - _ANY)
    if b_knows and not a_knows:
        return b, a
    starts = ("start", "route", "trap", "ondemand")
    if any(w in b["auto"].value for w in starts) and not any(w in a["auto"].value for w in starts):
        return b, a
    return a, b


def compare(p: Pair) -> Pair:
    """Fill `p.findings`, most decisive first: the stall that comes first in the exchange wins."""
    i, r = p.init, p.resp
    f = p.findings
    p.version = i["initiates"].value
    if p.version not in r["accepts"].value:
        f.append(_finding(ERROR, "ike-version-mismatch", "MM1" if p.version == 1 else "IKE_SA_INIT",
                          f"{_who(i)} starts IKEv{p.version}, {_who(r)} accepts only "
                          f"IKEv{'/'.join(map(str, sorted(r['accepts'].value)))}",
                          [i["initiates"], r["accepts"]], ["ike-version-mismatch"]))
        return p
    v1 = p.version == 1
    aggr = v1 and i["aggressive"].value
    if v1:
        _mode(p, aggr)
    _auth_methods(p)
    _ike_proposals(p, aggr)
    _ids(p, aggr)
    _psk(p, aggr)
    _user_auth(p)
    _esp(p)
    _subnets(p)
    _notes(p)
    if "pubkey" in (i["local_auth"].value, r["local_auth"].value):
        f.append(Finding(INFO, "cert-trust-unchecked", "MM5" if v1 else "IKE_AUTH",
                         "certificate authentication: the trust in the other end's certificate is not in these files",
                         "check that each end holds the CA certificate of the other's (swanctl x509ca/, "
                         "ipsec.d/cacerts) and that the certificate carries the ID the peer expects",
                         causes=["cert-untrusted"]))
    return p


def _who(c: Conn) -> str:
    return f"{c.config.source} ({c.name})"


def _finding(sev: str, code: str, at: str, summary: str, values: list[Value], causes: list[str],
             hint: str = "") -> Finding:
    where = "; ".join(dict.fromkeys(v.where for v in values))
    return ConfigFinding(sev, code, at, summary, hint or f"from {where}", causes=causes,
                         lines=_at_lines(v.where for v in values))


def _mode(p: Pair, aggr: bool) -> None:
    i, r = p.init, p.resp
    if aggr and not r["aggressive"].value and not r.daemon.startswith("strongswan"):
        p.findings.append(_finding(ERROR, "aggressive-mode-refused", "AM1",
                                   f"{_who(i)} starts Aggressive Mode, {_who(r)} has aggressive=no: pluto answers only "
                                   f"Main Mode", [i["aggressive"], r["aggressive"]], ["aggressive-mode-refused"]))
    if aggr and i["local_auth"].value == "psk" and r.daemon.startswith("strongswan"):
        ok = r["aggressive_psk"].value
        if ok is False:
            p.findings.append(_finding(ERROR, "aggressive-mode-refused", "AM1",
                                       f"{_who(i)} starts Aggressive Mode with a PSK; {_who(r)} is charon, which refuses "
                                       f"it unless strongswan.conf sets charon.i_dont_care_about_security_and_use_"
                                       f"aggressive_mode_psk = yes", [i["aggressive"], r["aggressive_psk"]],
                                       ["aggressive-mode-refused"]))
        elif ok is None:
            p.findings.append(_finding(WARNING, "aggressive-mode-refused", "AM1",
                                       f"{_who(i)} starts Aggressive Mode with a PSK; charon on {_who(r)} refuses it "
                                       f"unless its strongswan.conf sets charon.i_dont_care_about_security_and_use_"
                                       f"aggressive_mode_psk = yes (no strongswan.conf was given: add it to the "
                                       f"configuration folder to know)", [i["aggressive"]], ["aggressive-mode-refused"]))


def _auth_methods(p: Pair) -> None:
    i, r = p.init, p.resp
    for a, b in ((i, r), (r, i)):
        mine, expected = a["local_auth"].value, b["remote_auth"].value
        if mine != expected and not (mine == "eap" or expected == "eap"):
            v1 = p.version == 1
            p.findings.append(_finding(
                ERROR, "auth-method-mismatch", "MM1" if v1 else "IKE_AUTH",
                f"{_who(a)} authenticates with {mine}, {_who(b)} expects {expected}",
                [a["local_auth"], b["remote_auth"]],
                ["proposal-mismatch"] if v1 else ["psk-mismatch" if "psk" in (mine, expected) else "cert-untrusted"]))
            return


def _ike_proposals(p: Pair, aggr: bool) -> None:
    i, r = p.init, p.resp
    kinds = ("encr", "integ", "dh") if p.version == 1 else ("encr", "integ", "prf", "dh")
    offered = [s if p.version == 1 else with_prf(s) for s in i["ike"].value.suites]
    accepted = [s if p.version == 1 else with_prf(s) for s in r["ike"].value.suites]
    for o in offered:
        for a in accepted:
            if agree(o, a, kinds):
                p.ike_agreed = Suite(*(getattr(o, t) & getattr(a, t) for t in ("encr", "integ", "prf", "dh", "esn")))
                if p.version == 2:
                    _invalid_ke(p)
                return
    missing = _missing(offered, accepted, kinds)
    at = ("AM1" if aggr else "MM1") if p.version == 1 else "IKE_SA_INIT"
    dh_only = missing == ["dh"]
    causes = (["dh-group-mismatch", "proposal-mismatch"] if p.version == 2 else ["proposal-mismatch", "dh-group-mismatch"]) \
        if dh_only else ["proposal-mismatch"]
    why = ("no common " + " and no common ".join(_NAMES[t] for t in missing)) if missing else \
        "no single proposal has every algorithm in common"
    p.findings.append(_finding(ERROR, "dh-group-mismatch" if dh_only and p.version == 2 else "proposal-mismatch", at,
                               f"phase 1: {_who(i)} offers {i['ike']}, {_who(r)} accepts {r['ike']}: {why}",
                               [i["ike"], r["ike"]], causes))


def _invalid_ke(p: Pair) -> None:
    """IKEv2: the initiator sends its KE for the first group it lists; charon as responder picks the first of its
    own groups the initiator offers (charon.prefer_configured_proposals, strongswan.conf(5)) and answers any other
    KE with INVALID_KE_PAYLOAD, which costs one more IKE_SA_INIT round trip."""
    i, r = p.init, p.resp
    offered, mine = i["ike"].value.dh_order, r["ike"].value.dh_order
    if not offered or not mine or not r.daemon.startswith("strongswan"):
        return
    chosen = next((g for g in mine if g in offered), None)
    if chosen and chosen != offered[0]:
        p.findings.append(_finding(INFO, "invalid-ke-expected", "IKE_SA_INIT",
                                   f"{_who(i)} sends its key exchange for {offered[0]}, {_who(r)} prefers {chosen}: "
                                   f"one INVALID_KE_PAYLOAD round trip, then IKE_SA_INIT again with {chosen}",
                                   [i["ike"], r["ike"]], []))


def _missing(offered: list[Suite], accepted: list[Suite], kinds: tuple[str, ...]) -> list[str]:
    """The transform types with nothing in common over all proposals of both sides."""
    out = []
    for t in kinds:
        a = frozenset().union(*(getattr(s, t) for s in offered))
        b = frozenset().union(*(getattr(s, t) for s in accepted))
        if (a or b) and not a & b:
            out.append(t)
    return out


def _ids(p: Pair, aggr: bool) -> None:
    i, r = p.init, p.resp
    v1 = p.version == 1
    for sender, receiver, step in ((i, r, "AM1" if aggr else "MM5"), (r, i, "AM2" if aggr else "MM6")):
        sent, expected = sender["local_id"], receiver["remote_id"]
        if sent.value.lower() in _ANY and expected.value.lower() not in _ANY:  # left=%defaultroute, no leftid
            p.findings.append(_finding(INFO, "id-unknown", step if v1 else "IKE_AUTH",
                                       f"{_who(sender)} sends the address of {sent.value} as its ID, {_who(receiver)} "
                                       f"expects {expected.value}: they match only if that is the address",
                                       [sent, expected], []))
            continue
        if id_match(expected.value, sent.value):
            continue
        nat = "" if sent.configured or expected.configured else \
            (": neither sets an ID, so each takes an address; with NAT in between the address the sender has is not "
             "the one the receiver connects to")
        p.findings.append(_finding(ERROR, "peer-id-mismatch", step if v1 else "IKE_AUTH",
                                   f"{_who(sender)} identifies as {sent.value}, {_who(receiver)} expects "
                                   f"{expected.value}{nat}", [sent, expected], ["peer-id-mismatch"]))
        return


def _psk(p: Pair, aggr: bool) -> None:
    i, r = p.init, p.resp
    if not (i["local_auth"].value == "psk" and r["remote_auth"].value == "psk"):
        return
    at = ("AM2" if aggr else "MM5") if p.version == 1 else "IKE_AUTH"
    found = []
    for me, peer in ((i, r), (r, i)):
        remote = peer["local_id"].value
        how = ""
        if me is r and p.version == 1 and not aggr:
            remote = me["remote_id"].value  # Main Mode: the responder picks the PSK before the ID arrives
            how = " (IKEv1 Main Mode: before the initiator's ID arrives, so with its conn's remote ID)"
        found.append((me, lookup(me.secrets, "PSK", me["local_id"].value, remote), me["local_id"].value, remote, how))
    lines = _at_lines([i["local_id"].where, r["local_id"].where, r["remote_id"].where]
                      + [lk.secret.where for _, lk, *_ in found if lk.secret])
    texts = [f"{_who(me)} looks up local {lid}, remote {rid}{how}: "
             + (f"{lk.secret.where} (by {lk.how})" if lk.secret else "no PSK entry matches")
             for me, lk, lid, rid, how in found]
    (_, li, *_), (_, lr, *_) = found
    if li.secret is None or lr.secret is None:
        summary = "no PSK matches the IDs this pair would use"
    elif li.secret.value != lr.secret.value:
        summary = "the PSKs for this pair differ"
    else:
        p.findings.append(ConfigFinding(INFO, "psk-match", at, "the PSKs for this pair match", "; ".join(texts),
                                        lines=lines))
        return
    p.findings.append(ConfigFinding(ERROR, "psk-mismatch", at, summary, "; ".join(texts), causes=["psk-mismatch"],
                                    lines=lines))


def _user_auth(p: Pair) -> None:
    """XAUTH (IKEv1) and EAP (IKEv2): the client's password against the server's for the same user."""
    for kind, code, at in (("XAUTH", "xauth-failed", "CFG"), ("EAP", "eap-failed", "IKE_AUTH")):
        a, b = [[s for s in c.secrets if s.kind == kind] for c in (p.init, p.resp)]
        if not a or not b:
            continue
        users = {norm_id(x) for s in a for x in s.ids} & {norm_id(x) for s in b for x in s.ids}
        for user in sorted(users) or [""]:
            sa = next((s for s in a if user in {norm_id(x) for x in s.ids} or not user), None)
            sb = next((s for s in b if user in {norm_id(x) for x in s.ids} or not user), None)
            if sa and sb and sa.value != sb.value:
                p.findings.append(ConfigFinding(ERROR, code, at,
                                                f"the {kind} passwords for user {user or '(any)'} differ",
                                                f"from {sa.where}; {sb.where}", causes=[code],
                                                lines=[sa.where, sb.where]))


def _esp(p: Pair) -> None:
    i, r = p.init, p.resp
    ike_dh = p.ike_agreed.dh if p.ike_agreed else frozenset()

    def suites(c: Conn) -> list[Suite]:
        if not c["pfs_from_ike"].value:
            return c["esp"].value.suites
        return [s if s.dh else Suite(s.encr, s.integ, s.prf, ike_dh, s.esn) for s in c["esp"].value.suites]
    offered, accepted = suites(i), suites(r)
    v1 = p.version == 1
    props = i["esp"].value
    if v1 and i.daemon.startswith("strongswan") and props.firsts and props.firsts != props.suites[:len(props.firsts)]:
        # strongSwan ipsec.conf(5) esp=: "IKEv1 only includes the first algorithm in a proposal"
        offered = props.firsts + props.suites[len(props.firsts):]
        p.findings.append(_finding(INFO, "ikev1-first-algorithm", "QM1",
                                   f"IKEv1: charon on {_who(i)} offers only the first algorithm of each type of "
                                   f"{i['esp']}: {', '.join(s.text() for s in props.firsts)}", [i["esp"]], []))
    if not any(agree(o, a, ("encr", "integ")) for o in offered for a in accepted):
        missing = _missing(offered, accepted, ("encr", "integ"))
        why = ("no common " + " and no common ".join(_NAMES[t] for t in missing)) if missing else \
            "no single proposal has every algorithm in common"
        p.findings.append(_finding(ERROR, "proposal-mismatch", "QM1" if v1 else "IKE_AUTH",
                                   f"phase 2: {_who(i)} offers {i['esp']}, {_who(r)} accepts {r['esp']}: {why}",
                                   [i["esp"], r["esp"]], ["proposal-mismatch"]))
        return
    if not any(agree(o, a, ("encr", "integ", "dh")) for o in offered for a in accepted):
        groups = [sorted(frozenset().union(*(s.dh for s in x))) for x in (offered, accepted)]
        text = [("no PFS" if g == ["none"] else "PFS with " + "/".join(x for x in g if x != "none")) for g in groups]
        later = "" if v1 else " (the first CHILD_SA comes up in IKE_AUTH without a DH exchange; its rekey fails)"
        p.findings.append(_finding(ERROR, "pfs-mismatch", "QM1" if v1 else "CREATE_CHILD_SA",
                                   f"phase 2: {_who(i)} asks for {text[0]}, {_who(r)} for {text[1]}{later}",
                                   [i["esp"], r["esp"], i["pfs_from_ike"], r["pfs_from_ike"]], ["pfs-mismatch"]))


def nets(ts: list[str]) -> list:
    out = []
    for t in ts:
        try:
            out.append(ipaddress.ip_network(t, strict=False))
        except ValueError:
            return []
    return out


def covers(outer: list, inner: list) -> bool:
    return all(any(n.version == o.version and n.subnet_of(o) for o in outer) for n in inner)


def overlap(a: list, b: list) -> bool:
    return any(x.version == y.version and x.overlaps(y) for x in a for y in b)


def _subnets(p: Pair) -> None:
    i, r = p.init, p.resp
    v1 = p.version == 1
    for mine, theirs, label in (("local_ts", "remote_ts", "its own side"), ("remote_ts", "local_ts", "the far side")):
        a, b = nets(i[mine].value), nets(r[theirs].value)
        if not a or not b or set(a) == set(b):
            continue
        if covers(b, a) or (not v1 and overlap(a, b)):
            p.findings.append(_finding(INFO, "subnet-narrowed", "QM1" if v1 else "IKE_AUTH",
                                       f"{_who(i)} proposes {', '.join(map(str, a))} for {label}, {_who(r)} has "
                                       f"{', '.join(map(str, b))}: the responder narrows to what both allow",
                                       [i[mine], r[theirs]], []))
            continue
        p.findings.append(_finding(ERROR, "subnet-mismatch", "QM1" if v1 else "IKE_AUTH",
                                   f"{_who(i)} proposes {', '.join(map(str, a))} for {label}, {_who(r)} has "
                                   f"{', '.join(map(str, b))}: the subnets do not mirror",
                                   [i[mine], r[theirs]], ["subnet-mismatch"]))
        return


def _notes(p: Pair) -> None:
    i, r = p.init, p.resp
    for key, what in (("ike_lifetime", "IKE SA lifetime"), ("child_lifetime", "IPsec SA lifetime")):
        if i[key].value != r[key].value:
            p.findings.append(_finding(INFO, "lifetime-differs", "rekey",
                                       f"{what}: {_life(i[key])} on {_who(i)}, {_life(r[key])} on {_who(r)}: the "
                                       f"shorter one rekeys first (not an error)", [i[key], r[key]], []))
    if (str(i["encap"]).lower() in ("yes", "force")) != (str(r["encap"]).lower() in ("yes", "force")):
        p.findings.append(_finding(INFO, "encap-differs", "NAT-T",
                                   f"UDP encapsulation: {i['encap']} on {_who(i)}, {r['encap']} on {_who(r)}: the end "
                                   f"that forces it fakes NAT-D, both then use UDP 4500", [i["encap"], r["encap"]], []))
    fi, fr = (str(c["fragmentation"]).lower() for c in (i, r))
    if (fi == "no") != (fr == "no"):
        sev = WARNING if "pubkey" in (i["local_auth"].value, r["local_auth"].value) else INFO
        p.findings.append(_finding(sev, "fragmentation-differs", "MM5" if p.version == 1 else "IKE_AUTH",
                                   f"IKE fragmentation: {fi} on {_who(i)}, {fr} on {_who(r)}: large messages "
                                   f"(certificates) go as IP fragments, which some paths drop",
                                   [i["fragmentation"], r["fragmentation"]], ["fragments-dropped"] if sev == WARNING else []))
    di, dr = i["dpd"].value, r["dpd"].value
    if bool(di) != bool(dr):
        p.findings.append(_finding(INFO, "dpd-differs", "INFORMATIONAL" if p.version == 2 else "INFO",
                                   f"DPD: {i['dpd']} on {_who(i)}, {r['dpd']} on {_who(r)}: only one end probes; "
                                   f"the other answers", [i["dpd"], r["dpd"]], []))


def _life(v: Value) -> str:
    return f"{v} (no rekeying)" if v.value == 0 else str(v)


def _pfs(c: Conn) -> str:
    if c["pfs_from_ike"].value:
        groups = sorted(frozenset().union(*(s.dh for s in c["esp"].value.suites)) - {"none"})
        return "/".join(groups) if groups else "yes (the IKE SA's group)"
    groups = sorted(frozenset().union(*(s.dh for s in c["esp"].value.suites)) - {"none"})
    return "/".join(groups) if groups else "no"


def table(p: Pair) -> list[tuple[str, str, str, bool]]:
    """The how-to's Configuration Table for a pair: (parameter, initiator, responder, differs); IDs and
    subnets are mirrored (one end's local against the other's remote)."""
    i, r = p.init, p.resp
    codes = {f.code for f in p.findings}

    def ver(c: Conn) -> str:
        acc = "/".join(f"v{n}" for n in sorted(c["accepts"].value))
        return f"IKEv{c['initiates'].value} (accepts {acc})"

    def mode(c: Conn) -> str:
        return "Aggressive" if c["aggressive"].value else "Main"
    rows = [
        ("IKE version", ver(i), ver(r), "ike-version-mismatch" in codes),
        ("Phase 1 mode", mode(i), mode(r), p.version == 1 and mode(i) != mode(r)),
        ("Authentication", i["local_auth"].value, r["local_auth"].value, "auth-method-mismatch" in codes),
        ("ID sent / expected", f"{i['local_id']}", f"{r['remote_id']}",
         not id_match(r["remote_id"].value, i["local_id"].value)),
        ("ID expected / sent", f"{i['remote_id']}", f"{r['local_id']}",
         not id_match(i["remote_id"].value, r["local_id"].value)),
        ("Pre-shared key", "(set)" if any(s.kind == "PSK" for s in i.secrets) else "-",
         "(set)" if any(s.kind == "PSK" for s in r.secrets) else "-", "psk-mismatch" in codes),
        ("Phase 1 proposals", str(i["ike"]), str(r["ike"]), codes & {"proposal-mismatch", "dh-group-mismatch"}
         and any(f.at in ("MM1", "AM1", "IKE_SA_INIT") for f in p.findings if "mismatch" in f.code)),
        ("IKE SA lifetime", _life(i["ike_lifetime"]), _life(r["ike_lifetime"]), i["ike_lifetime"].value != r["ike_lifetime"].value),
        ("Phase 2 proposals", str(i["esp"]), str(r["esp"]),
         any(f.code == "proposal-mismatch" and f.at in ("QM1", "IKE_AUTH") for f in p.findings)),
        ("PFS group", _pfs(i), _pfs(r), "pfs-mismatch" in codes),
        ("Local / remote subnet", ", ".join(i["local_ts"].value), ", ".join(r["remote_ts"].value),
         set(i["local_ts"].value) != set(r["remote_ts"].value)),
        ("Remote / local subnet", ", ".join(i["remote_ts"].value), ", ".join(r["local_ts"].value),
         set(i["remote_ts"].value) != set(r["local_ts"].value)),
        ("IPsec SA lifetime", _life(i["child_lifetime"]), _life(r["child_lifetime"]),
         i["child_lifetime"].value != r["child_lifetime"].value),
        ("UDP encapsulation", str(i["encap"]), str(r["encap"]), "encap-differs" in codes),
        ("IKE fragmentation", str(i["fragmentation"]), str(r["fragmentation"]), "fragmentation-differs" in codes),
        ("DPD delay", str(i["dpd"]), str(r["dpd"]), "dpd-differs" in codes),
    ]
    return [(a, b, c, bool(d)) for a, b, c, d in rows]
