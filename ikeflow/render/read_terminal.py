"""Terminal report: a headline per peer pair (a summary table of them when there are several), then
per pair its IKE SAs as ladders, the ESP flows and the findings.

Laid out line by line for a width (the terminal's, `--width`, or none without a terminal: each line as
long as its content); a value is wrapped at spaces or given a line of its own, never cut.
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.text import Text

from ikeflow.decode.proposals import summarize_sa
from ikeflow.diagnose.finding import ERROR, INFO, WARNING, Finding
from ikeflow.diagnose.findings import first_errors
from ikeflow.model import decryption
from ikeflow.model.analysis import Analyzer
from ikeflow.model.attribution import Owners
from ikeflow.model.esp import EspTable
from ikeflow.model.esp_inner import EspInner, protocol_name
from ikeflow.model.ikesa import IkeSa, Seen
from ikeflow.render.common import (PROPOSAL_STRINGS, headline, ip, merge_info, nat_text, pair_of, pair_words,
                                   relative, span_text, stamp, where)
from ikeflow.render.layout import grid, wrap
from ikeflow.sources.capture import FileInfo, split_ref

STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "cyan"}
MAX_LADDER = 60  # messages drawn per SA before leaving out the middle
NOTES_MIN = 24  # narrower than this beside the arrow, the notes go on the lines below it
FROM_CONSOLE = -1


def render(console: Console, an: Analyzer, files: list[FileInfo], findings: list[Finding], verdicts: dict,
           title: str | None = None, width: int | None = FROM_CONSOLE, quiet: bool = False,
           utc: bool = False, narrowed: str = "") -> None:
    """Print the report.  `width`: columns to lay out for (None: no limit; default: the console's width on a
    terminal, no limit elsewhere); `quiet`: the headlines and the findings only; `utc`: times in UTC;
    `narrowed`: the narrowing options the model and findings went through, to say so."""
    if width == FROM_CONSOLE:
        width = console.width if console.is_terminal else None
    several = len(files) > 1

    def frame(ref: int) -> str:
        f, n = split_ref(ref)
        return f"{f + 1}:{n}" if several else str(n)

    def out(lines: list[Text] | Text) -> None:
        for line in [lines] if isinstance(lines, Text) else lines:
            console.print(line, soft_wrap=True)

    s = an.stats
    out(wrap(Text(title or "ikeflow read " + " ".join(f.name for f in files), style="bold"), width, 2))
    times = [t for f in files for t in f.span() if t is not None]
    if times:
        out(wrap(f"capture {span_text(min(times), max(times), utc)}", width, 2))
    out(wrap(f"{s.packets} packet{'s' if s.packets != 1 else ''}: {s.ike} IKE, {s.esp} ESP, "
             f"{f'{s.ah} AH, ' if an.ah.flows else ''}{s.keepalives} NAT-T keepalives, {s.icmp} ICMP errors, "
             f"{s.fragments} IP fragments, {s.malformed} malformed, {s.skipped} other (skipped)", width, 2))
    if narrowed:
        out(wrap(f"narrowed to {narrowed} (the counts are the whole capture's)", width, 2))
    if an.skipped and not an.pairs:
        out(wrap("skipped: " + "; ".join(f"{why} ×{n}" for why, n in an.skipped.most_common()), width, 2))
    if not an.pairs:
        out(wrap(f"No peer pair in this capture matches {narrowed}." if narrowed and "--peer" in narrowed
                 else "No IKE or ESP traffic in this capture.", width, 2))
    errors, owners = first_errors(an, findings), an.owners
    heads = {key: headline(pair, verdicts.get(key, ""), errors.get(key)) for key, pair in an.pairs.items()}
    counts: dict = {}
    for f in findings:
        if f.severity != INFO:
            counts.setdefault(pair_of(f), Counter())[f.severity] += 1
    told = {key: ", ".join(f"{n} {sev}{'s' if n > 1 else ''}" for sev, n in sorted(counts.get(key, {}).items()))
            for key in an.pairs}
    if len(an.pairs) > 1:
        out(Text(""))
        out(grid(["peer pair", "IKE SAs", "findings", "what happened"],
                 [[pair_words(key), str(len(pair.sas)), told[key], Text(heads[key], style=_style(key, errors))]
                  for key, pair in an.pairs.items()], width, right=(1,)))
    elif quiet and an.pairs:
        key = next(iter(an.pairs))
        out(Text(""))
        out(wrap(Text(f"{pair_words(key)}  {heads[key]}", style=_style(key, errors)), width, 2))
    if not quiet:
        day = _day(min(times), utc) if times else None
        for key, pair in an.pairs.items():
            out(Text(""))
            more = f"  ({told[key]}: see Findings)" if told[key] and key not in errors else ""
            out(wrap(Text(f"━━ {pair_words(key)}  {heads[key]}{more}", style=_style(key, errors)), width, 3))
            if key in errors:
                out(wrap(f"   evidence: {errors[key].summary}", width, 3))
            out(_pair_table(pair, an.esp.directions(), owners, width))
            for sa in pair.sas:
                out(_sa_block(sa, frame, width, utc, day, an.ike_port))
        if an.esp.flows:
            out(Text(""))
            out(_esp_table(an.esp, frame, owners, width))
            if an.esp_inner is not None:
                out(_inner_table(an.esp, an.esp_inner, width))
        if an.ah.flows:
            out(Text(""))
            out(_esp_table(an.ah, frame, owners, width, "AH flows"))
    out(Text(""))
    if findings:
        out(Text("Findings", style="bold"))
        out(finding_lines(findings, frame, width))
    else:
        out(Text(f"No findings match {narrowed}." if narrowed else "No findings.", style="green"))


def _style(key, errors: dict) -> str:
    return "bold red" if key in errors else "bold green"


def _day(t: float, utc: bool) -> str:
    return stamp(t, utc)[:10]


def finding_lines(findings: list[Finding], frame, width: int | None) -> list[Text]:
    """Each finding: severity, code, where (peer pair and IKE SA), its text, frames, causes and hint;
    alike informational findings once, with their count."""
    lines: list[Text] = []
    for f, alike in merge_info(findings):
        head = Text.assemble((f"{f.severity.upper():8}", STYLE[f.severity]), f"{f.code} at {f.at}" if f.at else f.code)
        place = where(alike)
        if place:
            head.append(f"  {place}")
        lines += wrap(head, width, 8)
        refs = sorted({r for g in alike for r in g.frames})
        frames = ""
        if refs:
            frames = f" (frame{'s' if len(refs) > 1 else ''} {', '.join(frame(r) for r in refs[:8])}"
            frames += f" and {len(refs) - 8} more)" if len(refs) > 8 else ")"
        text = f.summary.rstrip(".") + frames + "."
        lines += wrap(" " * 8 + text, width, 8)
        if f.causes:
            lines += wrap(" " * 8 + f"causes, most likely first: {', '.join(f.causes)}", width, 10)
        if f.hint and f.severity != INFO:
            lines += wrap(Text(" " * 8 + f"→ {f.hint}", style="dim"), width, 10)
    return lines


def _pair_table(pair, directions: dict, owners: Owners, width: int | None) -> list[Text]:
    """One row per IKE SA with the ESP attributed to it, then the pair total when that is not one SA's."""
    flows = [*directions.get((pair.a, pair.b), []), *(directions.get((pair.b, pair.a), []) if pair.a != pair.b else [])]

    def esp(of) -> str:
        out = sum(f.packets for f in of if f.src == pair.a)
        return f"{ip(pair.a)}→ {out}, ← {sum(f.packets for f in of) - out}" if of else "—"

    rows = []
    for sa in pair.sas:
        state = sa.state() + (f" (closed: {sa.closed[0]}, frame {split_ref(sa.closed[1])[1]})" if sa.closed else "")
        rows.append([sa.ispi.hex(), f"IKEv{sa.version}", sa.mode(), state, nat_text(sa), esp(owners.esp_of(sa))])
    loose = [f for f in flows if owners.sa[f] is None]
    if not pair.sas:
        rows.append(["—", "", "", "no IKE seen", "", esp(flows)])
    elif loose or len({id(owners.sa[f]) for f in flows}) > 1:
        why = sorted({owners.why[f] for f in loose})
        note = f"{len(loose)} ESP SA{'s' if len(loose) > 1 else ''} not attributed ({', '.join(why)})" if loose else ""
        rows.append(["pair total", "", "", note, "", esp(flows)])
    lines = grid(["IKE SA (SPIi)", "version", "mode", "state", "NAT", "ESP"], rows, width, indent=3)
    if pair.keepalives:
        lines += wrap("   NAT-T keepalives: " + ", ".join(f"{ip(a)} sent {n}" for a, n in pair.keepalives.items()),
                      width, 5)
    churn = owners.churn(pair)
    if any(churn.values()):
        names = {"rekeys": ("rekey", "rekeys"), "collisions": ("collision", "collisions"),
                 "short_lived": ("short-lived IKE SA", "short-lived IKE SAs")}
        lines += wrap("   churn: " + ", ".join(f"{n} {names[what][n != 1]}" for what, n in churn.items() if n),
                      width, 5)
    return lines


def _sa_block(sa: IkeSa, frame, width: int | None, utc: bool, day: str | None, ike_port: int) -> list[Text]:
    i, r = sa.initiator, sa.responder
    t0 = sa.messages[0].time if sa.messages else None
    started = ""
    if t0 is not None:
        at = stamp(t0, utc, zone=False)
        started = f"  started {at if at[:10] != day else at[11:]}"
    head = Text(f"IKEv{sa.version} SA {sa.ispi.hex()}/{sa.rspi.hex()}  initiator {ip(i[0])}:{i[1]}  "
                f"responder {ip(r[0])}:{r[1]}{started}", style="bold")
    if sa.roles_guessed:
        head.append("  (roles guessed: the first message was not seen)", style="dim")
    lines = [Text("")] + wrap(Text("   ") + head, width, 5)
    msgs = sa.messages
    natted = "differs" if sa.rewritten() or sa.opening_missing() else "NATed"
    shown = msgs if len(msgs) <= MAX_LADDER else msgs[: MAX_LADDER // 2] + [None] + msgs[-MAX_LADDER // 2:]
    arrow = max(16, max((len(m.label) for m in msgs), default=0) + 8)
    frames = max([len("frame")] + [len(frame(m.ref)) for m in msgs])
    timew = max([len("time")] + [len(relative(m.time - t0)) for m in msgs])
    lead = 3 + timew + 2 + frames + 2 + arrow + 2
    beside = width is None or width - lead >= NOTES_MIN
    lines.append(Text(f"   {'time':>{timew}}  {'frame':>{frames}}  {'initiator ⇄ responder':<{arrow}}"
                      f"  {'payloads / notes' if beside else ''}".rstrip(), style="dim"))
    for m in shown:
        if m is None:
            lines.append(Text(f"   ({len(msgs) - MAX_LADDER} more messages not shown)", style="dim"))
            continue
        row = Text(f"   {relative(m.time - t0):>{timew}}  {frame(m.ref):>{frames}}  ") + _arrow(m, arrow)
        notes = _notes(m, natted, ike_port)
        if beside:
            lines += wrap(row + Text("  " + notes), width, lead)
        else:
            lines.append(row)
            lines += wrap(" " * 6 + notes, width, 6)
    return lines + _proposal(sa, width)


def _arrow(m: Seen, width: int) -> Text:
    """The message as an arrow of `width` columns from its sender, with only its label inside."""
    fill = "─" * (width - len(m.label) - 3)
    style = "yellow" if m.retransmission else "red" if m.msg.malformed else ""
    return Text(f"──{m.label}{fill}▶" if m.sender == "I" else f"◀{fill}{m.label}──", style=style)


def _notes(m: Seen, natted: str, ike_port: int) -> str:
    """Beside the arrow: retransmission, retry, a port other than IKE's, then the payloads, IP fragments, NAT-D
    result and size; `natted` is what a NAT-D hash that does not match is called ("NATed", or "differs" where
    the SA's NAT reading is rewritten/unknown)."""
    msg = m.msg
    how = (["again"] if m.retransmission else []) + ([f"retry after {m.retry}"] if m.retry else [])
    if m.natt or m.dport != ike_port:
        how.append(f"to port {m.dport}")
    lead = [", ".join(how) + ":"] if how else []
    if msg.malformed:
        return " ".join(lead + [f"MALFORMED: {msg.malformed}"])
    names: list[str] = []
    for p in msg.payloads:
        if p.name == "N":
            continue
        if p.name in ("SK", "ENC", "SKF") and msg.decrypted is not None:  # --keys: what it held, or why not
            names.append(f"decrypted [{decryption.text(msg)}]" if msg.decrypted else f"[{decryption.text(msg)}]")
        elif p.name == "SK":  # the first inner payload's type is in clear (RFC 7296 3.14)
            first = msg.encrypted_first
            names.append(f"encrypted {p.info.get('encrypted_length', '')}B "
                         + ("(empty)" if first == "NONE" else f"({first} first)"))
        elif p.name == "ENC":
            names.append(f"encrypted {p.info.get('encrypted_length', '')}B")
        elif p.name == "SKF":
            names.append(f"SKF {p.info.get('fragment')}/{p.info.get('total')}")
        elif p.name in ("VID", "V"):
            vendor = (p.info.get("vendor") or "unknown").replace("\\n", " ")  # the hashed string ends in a newline
            names.append(f"VID({' '.join(vendor.split())})")
        elif p.name == "FRAG":
            names.append(f"FRAG {p.info.get('number')}{' last' if p.info.get('last') else ''}")
        else:
            names.append(p.name)
    names += [f"N({p.info['notify_name']})" for p in msg.payloads if p.name == "N" and "notify_type" in p.info]
    if msg.decrypted is None:
        names += [f"N({p.info['notify_name']})" for p in msg.inner if p.name == "N" and "notify_type" in p.info]
    text = " ".join(lead + names)
    if m.fragments:
        text += f"  [{len(m.fragments)} IP fragments]"
    if m.natd:
        flags = []
        if m.natd.get("sender_translated"):
            flags.append(f"sender {natted}")
        if m.natd.get("receiver_translated"):
            flags.append(f"receiver {natted}")
        text += f"  [NAT-D: {', '.join(flags) or 'no NAT'}]"
    return text + f"  {m.size}B"


def _proposal(sa: IkeSa, width: int | None) -> list[Text]:
    """The chosen proposal (or the offered ones when no answer was seen): its algorithms on one line, then
    each configuration string on a line of its own."""
    chosen = summarize_sa(sa.chosen) if sa.chosen else []
    offered = summarize_sa(sa.offered) if sa.offered else []
    rows = chosen or offered
    if not rows:
        return []
    lines = wrap(Text("   " + ("chosen proposal" if chosen else f"offered proposals ({len(offered)}), no answer seen"),
                      style="bold"), width, 3)
    for n, p in enumerate(rows[:6], 1):
        if sa.version == 1:
            life = f"{p['lifetime'] // 60} min" if p.get("lifetime") else ""
            group = f"{p.get('group')} ({p.get('group_name')})" if p.get("group") is not None else ""
            parts = [("encryption", p.get("encryption")), ("hash", p.get("hash")), ("DH group", group),
                     ("auth", p.get("auth")), ("lifetime", life)]
        else:
            parts = [("encryption", ", ".join(p["encryption"])), ("integrity", ", ".join(p["integrity"])),
                     ("PRF", ", ".join(p["prf"])), ("DH groups", ", ".join(p["groups"]))]
        number = f"#{n} " if len(rows) > 1 else ""
        lines += wrap("   " + number + "; ".join(f"{name} {value}" for name, value in parts if value), width, 5)
        for key, label in PROPOSAL_STRINGS:
            if p.get(key):
                lines += wrap(f"     {label}{p[key]}", width, 5)
    if len(rows) > 6:
        lines.append(Text(f"   ({len(rows) - 6} more proposals not shown; --json lists them all)", style="dim"))
    return lines


def _inner_table(table: EspTable, inner: EspInner, width: int | None) -> list[Text]:
    """What the ESP carried, opened with --keys: per ESP SA its inner hosts, protocol and ports."""
    rows = []
    for f in sorted(table.flows.values(), key=lambda f: f.first_time):
        seen = inner.traffic.get((f.src, f.dst, f.spi))
        if seen is None:
            rows.append([f"{f.spi:08x}", "no key for this SA", "", "", ""])
            continue
        if seen.failed:
            rows.append([f"{f.spi:08x}", f"{seen.failed} packet{'s' if seen.failed > 1 else ''} did not open: "
                         f"{seen.reason}", "", str(seen.failed), ""])
        for g in seen.flows.values():
            what = protocol_name(g.proto) + (f" {g.sport}→{g.dport}" if g.sport is not None else "")
            hosts = f"{g.src} → {g.dst}" if g.src else "transport mode (outer addresses)"
            rows.append([f"{f.spi:08x}", hosts, what, str(g.packets), f"{g.last - g.first:.1f} s"])
        if seen.other:
            rows.append([f"{f.spi:08x}", "other inner flows", "", str(seen.other), ""])
    return [Text(""), Text("Inside the ESP (opened with --keys)", style="bold")] + grid(
        ["SPI", "inner from → to", "protocol", "packets", "time"], rows, width, right=(3, 4))


def _esp_table(table: EspTable, frame, owners: Owners, width: int | None, title: str = "ESP flows") -> list[Text]:
    rows = []
    for f in sorted(table.flows.values(), key=lambda f: f.first_time):
        encap = f"UDP {f.sport}→{f.dport}" if f.encap == "udp" else f.encap.upper()
        rows.append([f"{f.spi:08x}", f"{ip(f.src)} → {ip(f.dst)}", encap, str(f.packets), str(f.bytes),
                     f"{f.seq_min}–{f.seq_max}", str(f.lost) if f.lost else "", str(f.duplicates) if f.duplicates else "",
                     f"{f.last_time - f.first_time:.1f} s",
                     owners.sa[f].ispi.hex() if owners.sa[f] else f"pair total ({owners.why[f]})"])
    return [Text(title, style="bold")] + grid(["SPI", "from → to", "encap", "packets", "bytes", "seq", "lost", "dup",
                                               "time", "IKE SA"], rows, width, right=(3, 4, 6, 7, 8))
