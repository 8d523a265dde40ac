"""Findings: what is abnormal in a capture, each with its evidence.

`RULES` is the table: each rule looks at the finished analysis and yields
findings.  A new rule is a function added to the table, plus a test.
"""

from __future__ import annotations

from ikeflow.model.analysis import Analyzer
from ikeflow.model.events import pair_key
from ikeflow.sources.capture import FileInfo, split_ref
from ikeflow.diagnose import capture_limits, capture_quality, policy, stalls
from ikeflow.diagnose.finding import ERROR, INFO, WARNING, Finding
from ikeflow.limits import OPTIONS
from ikeflow.model import attribution, lifecycle


def find(an: Analyzer, files: list[FileInfo]) -> list[Finding]:
    """Run every rule (these and the diagnosis rules); errors first, then warnings, then information."""
    out: list[Finding] = []
    with stalls.one_run(an):
        for rule in stalls.RULES + RULES:
            out.extend(rule(an, files))
    blocked = {f.pair for f in out if f.code == "esp-blocked"}
    out = [f for f in out if not (f.code == "esp-one-way" and f.pair in blocked)]  # the diagnosis says more
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    out.sort(key=lambda f: (order[f.severity], min(f.frames) if f.frames else 0))
    return out


def retransmissions(an: Analyzer, files):
    for sa in an.sas.values():
        if not sa.retransmitted:
            continue
        n = sum(sa.retransmitted.values())
        labels = ", ".join(f"{label} ×{k}" for label, k in sa.retransmitted.items())
        yield Finding(INFO, "retransmissions", next(iter(sa.retransmitted)),
                      f"{n} retransmitted message{'s' if n > 1 else ''} ({labels})",
                      "Retransmissions that are answered later mean loss or a slow peer.",
                      sa.retransmission_frames, [], sa)


def nat(an: Analyzer, files):
    """nat-t: who is behind NAT by NAT-D, and where the peers moved to the NAT-T port (or that they started there);
    a NAT-D mismatch the peers never acted on is rewritten addresses, not a NAT."""
    for sa in an.sas.values():
        frames = [m.ref for m in sa.natd[:2]]
        stayed = sa.rewritten()
        if stayed:
            off = sa.natd_translated()
            who = [("initiator's" if r == "I" else "responder's") for r in "IR" if off[r]]
            what = " and the ".join(who) + (" addresses and ports" if len(who) == 2 else " address and port")
            summary = (f"the NAT-D hashes do not match the {what} as captured, yet "
                       f"{stayed.label} (frame {split_ref(stayed.ref)[1]}) stayed on UDP {stayed.dport} and the peers "
                       f"never moved to UDP {an.natt_port}: the addresses were rewritten on the path, or the capture "
                       f"was anonymised or re-addressed; no NAT and no forceencaps is concluded")
            yield Finding(INFO, "nat-t", "NAT-T", summary,
                          "NAT-D hashes the addresses the peers themselves used: read NAT from a capture with the "
                          "original addresses.", frames + [stayed.ref], [], sa)
            continue
        behind = sa.behind_nat()
        who = [("initiator" if r == "I" else "responder") for r in ("I", "R") if behind[r]]
        if not who and not sa.float_at:
            continue
        parts = []
        if len(who) == 2:
            parts.append("the NAT-D of both sides differs from their addresses: NATs on both sides, or a peer "
                         "forcing UDP encapsulation (forceencaps / encapsulation=yes)")
        elif who:
            parts.append(f"{who[0]} behind NAT (NAT-D)")
        else:
            parts.append("no NAT (NAT-D verified)" if sa.natd else "NAT unknown (no NAT-D seen)")
        method = sa.natt_method() if sa.version == 1 else None
        if sa.float_at:
            parts.append(f"floated to UDP {an.natt_port} at {sa.float_at}")
        elif sa.started_natt:
            parts.append(f"started on UDP {an.natt_port} (no float to see)")
        elif method and not method.floats:
            parts.append(f"NAT-T of draft-ietf-ipsec-nat-t-ike-00/01 stays on UDP {an.ike_port} (no float)")
        hint = (f"Or the {who[0]} fakes its NAT-D to force UDP encapsulation (strongSwan forceencaps / encap = yes, "
                "libreswan encapsulation=yes): its configuration tells." if len(who) == 1 else "")
        yield Finding(INFO, "nat-t", sa.float_at or "NAT-T", "; ".join(parts), hint, frames, [], sa)


def malformed(an: Analyzer, files):
    cut = set().union(*(f.quality.cut_decoded for f in files))  # capture-snaplen explains these
    listed = [(ref, why) for ref, why in an.malformed if ref not in cut]
    n = an.stats.malformed - (len(an.malformed) - len(listed))
    if n:
        listed = listed[:10]
        text = "; ".join(f"frame {ref & 0xFFFFFFFFFF}: {why}" for ref, why in listed[:3])
        yield Finding(WARNING, "malformed", "capture", f"{n} malformed packet{'s' if n > 1 else ''}: {text}",
                      "Malformed IKE is counted and skipped; look at these frames in Wireshark.",
                      [ref for ref, _ in listed])


def _owner(an: Analyzer, flow):
    """The IKE SA an ESP flow is attributed to (model.attribution), or None."""
    return an.owners.sa[flow] if an.owners else None


def esp(an: Analyzer, files):
    for f in an.esp.flows.values():
        if f.lost:
            yield Finding(WARNING, "esp-loss", "ESP",
                          f"ESP SPI {f.spi:08x} {f.src_ip} → {f.dst_ip}: {f.lost} of {f.seq_max - f.seq_min + 1} "
                          f"sequence numbers missing", "Loss before the capture point, or the capture dropped packets.",
                          [f.first_frame, f.last_frame], sa=_owner(an, f), pair=pair_key(f.src, f.dst))
        if f.duplicates:
            yield Finding(WARNING, "esp-duplicates", "ESP",
                          f"ESP SPI {f.spi:08x} {f.src_ip} → {f.dst_ip}: {f.duplicates} duplicated sequence numbers",
                          "Replayed or duplicated packets (a capture on two interfaces, or a looping path).",
                          [f.first_frame], sa=_owner(an, f), pair=pair_key(f.src, f.dst))
    directions = an.esp.directions()
    heard = None
    for (src, dst), flows in directions.items():
        if (dst, src) not in directions and any(x.packets > 1 for x in flows):
            f = flows[0]
            heard = capture_limits.senders(an) if heard is None else heard
            hint = "Check that protocol 50 (or UDP 4500) is allowed back, and the peer's SA and routes."
            if dst not in heard:
                hint = (f"Nothing at all from {f.dst_ip} is in the capture: if it holds one direction only "
                        "(asymmetric routing, a SPAN of one direction, a 'src' filter), capture both; otherwise: "
                        + hint[0].lower() + hint[1:])
            yield Finding(WARNING, "esp-one-way", "ESP",
                          f"ESP only from {f.src_ip} to {f.dst_ip} ({sum(x.packets for x in flows)} packets), none back",
                          hint, [x.first_frame for x in flows], pair=(src, dst) if src <= dst else (dst, src))


def icmp(an: Analyzer, files):
    for key, pair in an.pairs.items():
        if pair.icmp:
            e, n = pair.icmp[0], pair.icmp_errors
            yield Finding(WARNING, "icmp-error", "IP", f"{n} ICMP error{'s' if n > 1 else ''} about IKE/ESP: {e.text}",
                          "An ICMP error about IKE means the packet did not reach the IKE daemon.",
                          [x.ref for x in pair.icmp[:10]], [], None, key)


def fragments(an: Analyzer, files):
    """Incomplete IP datagrams, one finding per direction; overlapping fragments, one per datagram."""
    from ipaddress import ip_address as ip

    ra = an.reassembler
    unlisted = ra.given_up - len(ra.incomplete)
    ways: dict[tuple[bytes, bytes], list[dict]] = {}
    for d in ra.incomplete:
        if not (files and capture_quality.cut(files, d["frames"])):  # cut by the snap length: capture-snaplen
            ways.setdefault((d["src"], d["dst"]), []).append(d)
    filtered = bool(ways) and bool(capture_limits.judge(an, files).cut)  # the capture filter cut them
    for (src, dst), ds in ways.items():
        n, frags, size = len(ds), sum(d["fragments"] for d in ds), sum(d["bytes"] for d in ds)
        yield Finding(ERROR if any(d["has_first"] for d in ds) and not filtered else WARNING, "fragments-incomplete",
                      "IP", f"{n} IP datagram{'s' if n > 1 else ''} {ip(src)} → {ip(dst)} never completed: "
                      f"{frags} fragment(s), {size} bytes" +
                      (f" ({unlisted} more in the capture, past the {len(ra.incomplete)} listed)" if unlisted else ""),
                      "The capture's filter dropped the non-first fragments (see capture-filtered): not a loss on the "
                      "path." if filtered else
                      "Fragments are lost on the path; lower the MTU or enable IKE fragmentation (fragmentation=yes).",
                      [f for d in ds[:10] for f in d["frames"][:10]][:10], [])
    for d in ra.overlaps:
        yield Finding(WARNING, "fragments-overlap", "IP",
                      f"overlapping IP fragments {ip(d['src'])} → {ip(d['dst'])}: {d['text']}",
                      "Overlapping fragments are an evasion technique (an IDS and the receiver may reassemble different "
                      "bytes) or a broken stack; Linux keeps the first copy of a repeated fragment and drops a "
                      "datagram with any other overlap (RFC 5722).", d["frames"][:10], [])


def capture_problems(an: Analyzer, files):
    for i, f in enumerate(files):
        if f.warning:
            yield Finding(WARNING, "capture-truncated" if f.truncated_at is not None else "capture-error",
                          "capture", f"{f.name}: {f.warning}; analysed the {f.packets} whole packets before it", "")


def overflow(an: Analyzer, files):
    """One finding for every cap (limits.Limits) that turned entries away."""
    parts, options = [], []
    for cap, n in an.stats.overflow.items():
        option, what = OPTIONS.get(cap, (None, cap.replace("_", " ")))
        parts.append(f"{what} (cap {getattr(an.limits, cap, '?')}): {n} turned away")
        if option:
            options.append(option)
    if parts:
        yield Finding(WARNING, "overflow", "capture", "more than the analysis keeps: " + "; ".join(parts),
                      "Every frame is counted in stats, but what a cap turned away is not analysed."
                      + (f" Raise the cap with {', '.join(options)} (more memory)." if options else ""))


# Short-lived IKE SAs per pair from which a warning is due: one or two are a restart or a test, three
# set up and dropped without carrying ESP are a loop that the daemons repeat.
CHURN_WARNING = 3


def churn(an: Analyzer, files):
    """Many IKE SAs between the same peers that came up, carried nothing and ended quickly (once the analysis
    is finished: what an SA carried and how it ended are known only then)."""
    owners = an.owners
    if owners is None:  # a live capture, not finished yet
        return
    for key, pair in an.pairs.items():
        short = lifecycle.short_lived(pair, owners.used)
        if len(short) >= CHURN_WARNING:
            up = next((m.label for m in short[0].messages if m.time == short[0].up_time), "IKE_AUTH")
            unseen = "" if key in owners.carried else " (the capture holds no ESP between these peers at all)"
            yield Finding(WARNING, "ike-churn", up,
                          f"{len(short)} IKE SAs came up and ended within {lifecycle.SHORT_LIFE:.0f} s without "
                          f"carrying ESP{unseen}",
                          "Each was set up and dropped again: look in both daemons' logs at why it was deleted or "
                          "replaced right after it came up (a duplicate-SA policy such as uniqueids/unique=replace, "
                          "a refused CHILD_SA, an initiation on demand that repeats).",
                          [sa.closed[1] for sa in short[:10]], [], None, key)



RULES = [retransmissions, nat, malformed, esp, icmp, fragments, capture_problems, overflow, churn,
         *capture_limits.RULES, *capture_quality.RULES, *policy.RULES]


def verdicts(an: Analyzer, findings: list[Finding]) -> dict[tuple[bytes, bytes], str]:
    """One line per peer pair that an admin reads first: is the tunnel up, and if not, where it fails.

    The ESP/AH named after an IKE SA's state is the ESP attributed to that SA (model.attribution); the
    pair's when none is: "(pair total)", or whose child SAs it runs on.  Needs the finished analysis."""
    out = {}
    errors = first_errors(an, findings)
    owners = an.owners
    esp, ah = an.esp.directions(), an.ah.directions()
    for key, pair in an.pairs.items():
        flows = [f for d in dict.fromkeys((key, key[::-1])) for f in (*esp.get(d, ()), *ah.get(d, ()))]
        plane = _plane(flows)
        e = errors.get(key)
        if e:
            out[key] = f"{fails(e)} — {stalls.without_exchange(e.summary)}"
        elif pair.alive:  # the IKE SA alive at the end of the capture
            out[key] = f"{'tunnel up: ' if plane else ''}{pair.alive.state()}, {_carried(pair.alive, flows, owners)}"
        elif pair.last_up:  # every SA that came up has ended since
            last = max((sa for sa in pair.sas if sa.closed), key=lambda sa: sa.closed[2], default=pair.last_up)
            end = ", " + ENDED[last.closed[0]].format(frame=split_ref(last.closed[1])[1]) if last.closed else ""
            out[key] = f"{pair.last_up.state()}{end}, {_carried(pair.last_up, flows, owners)}"
        elif pair.sas:
            out[key] = "; ".join(sorted({sa.state() for sa in pair.sas}))
        elif plane:
            names = "ESP" if any(f.encap != "ah" for f in flows) else "AH"
            out[key] = f"{names} only, no IKE in the capture ({plane})"
        else:
            out[key] = "no IKE or ESP"
    return out


def _plane(flows: list) -> str:
    """"ESP both ways, AH one way only" for these flows, "" for none."""
    ways = {1: "one way only", 2: "both ways"}
    parts = []
    for name, kind in (("ESP", [f for f in flows if f.encap != "ah"]), ("AH", [f for f in flows if f.encap == "ah"])):
        dirs = {(f.src, f.dst) for f in kind}
        if dirs:
            parts.append(f"{name} {ways[len(dirs)]}")
    return ", ".join(parts)


def _carried(sa, flows: list, owners: attribution.Owners) -> str:
    """The data plane of an IKE SA: its own flows, else the pair's, said as such."""
    own = _plane([f for f in flows if owners.sa[f] is sa])
    if own or not flows:
        return own or "no ESP seen"
    others = {owners.sa[f] for f in flows}
    if len(others) == 1 and None not in others:
        return f"{_plane(flows)} (on the child SAs of IKE SA {others.pop().ispi.hex()})"
    return f"{_plane(flows)} (pair total)"


ENDED = {  # model.lifecycle's reasons, in a verdict
    "delete": "then deleted at frame {frame}",
    "collision": "then dropped in a collision at frame {frame}",
    "replaced": "then replaced at frame {frame}",
    "delete-unanswered": "then a Delete at frame {frame}, unanswered",
    "superseded": "then the peers started over at frame {frame}, without a Delete",
}


def fails(e: Finding) -> str:
    """Where a peer pair's first error stops it, in the words of its IKE version (a verdict's opening)."""
    sa, at = e.sa, e.at
    if sa is None:
        return {"IP": "IP fragments never complete", "": "fails"}.get(at, f"{at} fails")
    up = sa.ike_sa_up()
    if sa.version == 1:
        if not up:
            return f"phase 1 fails at {at}"
        if at.startswith("QM"):
            return f"Quick Mode fails at {at}"
        if at == "CFG":
            return "XAUTH / Mode Config fails"
    else:
        if not up:
            return f"{at} fails"
        if at in ("IKE_AUTH", "CREATE_CHILD_SA"):
            return f"child SA fails in {at}"
    return f"tunnel fails at {at}"


def first_errors(an: Analyzer, findings: list[Finding]) -> dict[tuple[bytes, bytes], Finding]:
    """Per peer pair, its first error finding (about the pair or one of its kept IKE SAs)."""
    out: dict[tuple[bytes, bytes], Finding] = {}
    for f in findings:
        if f.severity == ERROR:
            if f.pair:
                out.setdefault(f.pair, f)
            if f.sa:
                out.setdefault(pair_key(f.sa.initiator[0], f.sa.responder[0]), f)
    return out
