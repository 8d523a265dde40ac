"""The HTML report: one self-contained page (inline CSS and SVG; no script, font, image or
network reference) that opens offline in any browser and prints.

    write_read_html(result, path, *, utc=False)         # ikeflow read --html FILE
    write_compare_html(comparison, path, *, utc=False)  # ikeflow compare --html FILE
    read_html(result, *, utc=False) -> str              # the same page as text
    compare_html(comparison, *, utc=False) -> str

`result` is a pipeline.Result, `comparison` a compare.Comparison that has run.  The write
functions raise OSError when the file cannot be written.  Every string from the capture
(IDs, vendor IDs, notify names, file names) is escaped (svg.esc).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ikeflow import __version__
from ikeflow.decode.proposals import summarize_sa
from ikeflow.diagnose.causes import CHECK
from ikeflow.diagnose.finding import Finding
from ikeflow.diagnose.findings import first_errors
from ikeflow.model.ikesa import IkeSa, Seen
from ikeflow.model.sequences import RETRY_NOTIFIES, is_error_notify
from ikeflow.render.common import (PROPOSAL_STRINGS, endpoint, headline, ip, merge_info, ms, nat_text, relative,
                                   span_text, stamp, where)
from ikeflow.render.svg import Arrow, Bar, Row, esc, ladder, time_chart
from ikeflow.sources.capture import split_ref

if TYPE_CHECKING:
    from ikeflow.compare.comparison import Comparison
    from ikeflow.compare.points import Msg
    from ikeflow.compare.segment import Conversation, Segment
    from ikeflow.pipeline import Result

MAX_ROWS = 400  # ladder arrows drawn per IKE SA (or conversation) before eliding the middle
MAX_LADDERS = 300  # ladders per report (read: IKE SAs, the others listed; compare: peer pairs per segment)
MAX_LISTED = 1000  # IKE SAs listed per peer pair
MAX_BARS = 120  # ESP SPIs charted per peer pair
STALL_CODES = {"stall", "esp-blocked"}

CSS = """
:root{--err:#c62828;--warn:#b26a00;--info:#1565c0;--ok:#2e7d32;--line:#444;--muted:#666;--band:#ffe0e0}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;padding:16px;max-width:1400px;
color:#111;background:#fff;overflow-wrap:break-word}
.nowrap,table.proposals td{white-space:nowrap}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:2px solid #ccc}
h3{font-size:1.05em;margin:1.2em 0 .3em}
code,.mono,td.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.95em}
table{border-collapse:collapse;margin:.4em 0;max-width:100%}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f2;font-weight:600}
.scroll{overflow-x:auto}
.meta{color:var(--muted)}
.verdict{font-weight:600}.verdict.bad{color:var(--err)}.verdict.good{color:var(--ok)}
.sev{font-weight:700;text-transform:uppercase;font-size:.85em;padding:0 4px;border-radius:3px;color:#fff}
.sev.error{background:var(--err)}.sev.warning{background:var(--warn)}.sev.info{background:var(--info)}
ul.findings{list-style:none;padding:0}ul.findings li{margin:.5em 0;padding-left:.5em;border-left:4px solid #ccc}
ul.findings li.error{border-color:var(--err)}ul.findings li.warning{border-color:var(--warn)}
ul.findings li.info{border-color:var(--info)}
.hint{color:#333;margin-left:1em}.hint::before{content:"→ "}
section.pair{margin-bottom:2em}
section.sa{margin:1em 0 1.5em 0;padding-left:.8em;border-left:3px solid #ddd}
svg{display:block;width:100%;height:auto;margin:.4em 0}
svg text{font:11px ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;fill:#111}
svg text.actor{font-weight:700}svg text.role{fill:var(--muted);font-size:10px}
svg rect.actor{fill:#eef3fb;stroke:#6b8cc7}
svg line.life{stroke:#999;stroke-dasharray:4 3}
svg .msg line.shaft{stroke:var(--line);stroke-width:1.6}svg .msg polygon.head{fill:var(--line)}
svg .msg.again line.shaft{stroke:var(--warn);stroke-dasharray:6 3}svg .msg.again polygon.head{fill:var(--warn)}
svg .msg.again text.label{fill:var(--warn)}
svg .msg.error line.shaft{stroke:var(--err)}svg .msg.error polygon.head{fill:var(--err)}
svg .msg.error text.label{fill:var(--err);font-weight:700}
svg .msg.lost line.shaft{stroke:var(--err);stroke-dasharray:3 3}svg path.cross{stroke:var(--err);stroke-width:2.5}
svg .msg.lost text.label{fill:var(--err)}
svg text.note,svg text.axis,svg text.time{fill:var(--muted);font-size:10px}
svg rect.stall-band{fill:var(--band);stroke:var(--err);stroke-width:1}
svg text.stall-text{fill:var(--err);font-weight:700}
svg line.grid{stroke:#e4e4e4}
svg .bar rect{fill:#5b8bd6}svg .bar.back rect{fill:#59a36b}svg .bar.ah rect{fill:#9a6fc2}
svg .bar.lost rect{stroke:var(--err);stroke-width:2}
svg .mark line{stroke:#b0b0b0;stroke-dasharray:2 2}svg .mark path{fill:#888}
.legend span{margin-right:1.2em;white-space:nowrap}
.sides{display:flex;gap:1em;flex-wrap:wrap}.sides>div{flex:1 1 300px}
@media (max-width:700px){table.headline,table.headline tbody,table.headline tr,table.headline td{display:block}
table.headline thead{display:none}table.headline tr{border-bottom:2px solid #ccc}table.headline td{border:0}
table.headline td[data-label]::before{content:attr(data-label) ": ";color:var(--muted)}}
@media print{body{max-width:none;padding:0;font-size:11px}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
section.sa,table,svg{break-inside:avoid}table{width:100%}td,table.proposals td{white-space:normal;overflow-wrap:anywhere}
.hover{display:none}h2,h3{break-after:avoid}.scroll{overflow:visible}}
"""

LEGEND = ('<p class="legend meta"><span>── request/response</span>'
          '<span style="color:var(--warn)">- - retransmission</span>'
          '<span style="color:var(--err)">── error / malformed</span><span style="color:var(--err)">- - ✗ lost</span>'
          '<span style="background:var(--band)">&nbsp;stall&nbsp;</span>'
          '<span class="hover">hover an arrow for its frame and payloads</span></p>')


def write_read_html(result: Result, path, *, utc: bool = False) -> None:
    """`ikeflow read --html FILE`."""
    Path(path).write_text(read_html(result, utc=utc), encoding="utf-8")


def write_compare_html(comparison: Comparison, path, *, utc: bool = False) -> None:
    """`ikeflow compare --html FILE`."""
    Path(path).write_text(compare_html(comparison, utc=utc), encoding="utf-8")


def _page(title: str, body: list[str]) -> str:
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><style>{CSS}</style></head><body>\n'
            + "\n".join(body)
            + f'\n<p class="meta">Written by ikeflow {esc(__version__)}.</p></body></html>\n')


def _table(columns: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table of already escaped cells; each cell names its column (data-label) for narrow screens."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f'<td data-label="{esc(h)}">{c}</td>' for h, c in zip(columns, r)) + "</tr>"
                   for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _scroll(picture: str) -> str:
    """A picture that scrolls sideways on a screen too narrow for it."""
    return f'<div class="scroll">{picture}</div>'


# -- read ----------------------------------------------------------------------------------------------------

def read_html(result: Result, *, utc: bool = False) -> str:
    an, files, findings = result.model, result.infos, result.findings
    several = len(files) > 1

    def frame(ref: int) -> str:
        f, n = split_ref(ref)
        return f"{f + 1}:{n}" if several else str(n)

    names = " ".join(f.name for f in files)
    times = [t for f in files for t in f.span() if t is not None]
    t0, t1 = (min(times), max(times)) if times else (None, None)
    s = an.stats
    body = [f"<h1>ikeflow read <span class=mono>{esc(names)}</span></h1>",
            f'<p class="meta">Capture {esc(span_text(t0, t1, utc)) if times else "without packet times"}'
            f"; {s.packets} packets: {s.ike} IKE, {s.esp} ESP, "
            f"{s.keepalives} NAT-T keepalives, {s.icmp} ICMP errors, {s.fragments} IP fragments, "
            f"{s.malformed} malformed, {s.skipped} other (skipped).</p>"]
    errors = first_errors(an, findings)
    if not an.pairs:
        body.append("<p>No IKE or ESP traffic in this capture.</p>")
    else:
        body.append("<h2>Peer pairs</h2>" + _headlines(an, result.verdicts, errors) + LEGEND)
    placed: set[int] = set()
    directions = an.esp.directions()
    ah = an.ah.directions()
    of_pair, of_sa = sort_findings(an, findings)
    drawn = 0
    for n, (key, pair) in enumerate(an.pairs.items()):
        bad = key in errors
        own = of_pair.get(key, [])
        placed.update(id(f) for f in own)
        part = [f'<section class="pair" id="pair-{n + 1}"><h2>{esc(ip(pair.a))} ⇄ {esc(ip(pair.b))}</h2>',
                f'<p class="verdict {"bad" if bad else "good"}">{esc(result.verdicts.get(key, ""))}</p>']
        shown = pair.sas[:max(0, MAX_LADDERS - drawn)]
        drawn += len(shown)
        if len(pair.sas) > 1:
            part.append(_sa_index(pair.sas, len(shown), n, frame, utc))
        for k, sa in enumerate(shown):
            part.append(_sa_section(sa, f"sa-{n + 1}-{k + 1}", frame, utc, of_sa.get(id(sa), [])))
        flows = [f for d in dict.fromkeys((key, key[::-1])) for f in (*directions.get(d, ()), *ah.get(d, ()))]
        if flows and times:
            part.append(_esp_chart(pair, flows, an.owners, t0, t1, frame))
        if own:
            part.append("<h3>Findings for this pair</h3>" + _findings(own, frame))
        body.append("\n".join(part) + "</section>")
    rest = [f for f in findings if id(f) not in placed]
    if rest:
        body.append("<h2>Findings about the capture</h2>" + _findings(rest, frame))
    if not findings:
        body.append('<p class="verdict good">No findings.</p>')
    return _page(f"ikeflow read {names}", body)


def sort_findings(an, findings: list[Finding]) -> tuple[dict[tuple, list[Finding]], dict[int, list[Finding]]]:
    """The findings per peer pair key (about the pair or one of its IKE SAs) and per IKE SA (by id)."""
    pair_of_sa = {id(sa): key for key, pair in an.pairs.items() for sa in pair.sas}
    of_pair: dict[tuple, list[Finding]] = {}
    of_sa: dict[int, list[Finding]] = {}
    for f in findings:
        keys = {f.pair, pair_of_sa.get(id(f.sa))} - {None}
        for key in keys:
            of_pair.setdefault(key, []).append(f)
        if f.sa is not None:
            of_sa.setdefault(id(f.sa), []).append(f)
    return of_pair, of_sa


def _headlines(an, verdicts: dict, errors: dict[tuple, Finding]) -> str:
    """One row per peer pair: addresses, the verdict, the top cause and what to check."""
    rows = []
    directions = an.esp.directions()
    for n, (key, pair) in enumerate(an.pairs.items()):
        e = errors.get(key)
        check = esc(CHECK.get(e.causes[0], "")) if e and e.causes else ""
        esp = sum(f.packets for d in dict.fromkeys((key, key[::-1])) for f in directions.get(d, ()))
        rows.append([f'<a href="#pair-{n + 1}" class="mono"><span class=nowrap>{esc(ip(pair.a))}</span> ⇄ '
                     f'<span class=nowrap>{esc(ip(pair.b))}</span></a>',
                     f'<span class="verdict {"bad" if e else "good"}">{esc(headline(pair, verdicts.get(key, ""), e))}</span>',
                     check, str(len(pair.sas)), str(esp)])
    return _table(["peer pair", "verdict", "what to check", "IKE SAs", "ESP packets"], rows, "headline")


def _sa_index(sas: list[IkeSa], drawn: int, n: int, frame, utc: bool) -> str:
    """A peer pair's IKE SAs, one line each, linked to their ladders (the first `drawn` have one)."""
    rows = [[f'<a href="#sa-{n + 1}-{k + 1}" class=mono>{esc(sa.ispi.hex())}</a>' if k < drawn
             else f"<span class=mono>{esc(sa.ispi.hex())}</span>",
             esc(stamp(sa.messages[0].time, utc) if sa.messages else ""), esc(_mode(sa)), esc(_state(sa, frame)),
             str(len(sa.messages))] for k, sa in enumerate(sas[:MAX_LISTED])]
    more = [f"… and {len(sas) - MAX_LISTED} more IKE SAs (see --json)."] if len(sas) > MAX_LISTED else []
    if drawn < len(sas):
        more.append(f"Ladders are drawn for the first {MAX_LADDERS} IKE SAs of the report only.")
    return _table(["IKE SA (SPIi)", "started", "version", "state", "messages"], rows) + \
        "".join(f'<p class="meta">{m}</p>' for m in more)


def _mode(sa: IkeSa) -> str:
    """"IKEv2", or "IKEv1 Main Mode"."""
    mode = sa.mode()
    return mode if mode.startswith(f"IKEv{sa.version}") else f"IKEv{sa.version} {mode}"


def _state(sa: IkeSa, frame) -> str:
    return sa.state() + (f" (closed: {sa.closed[0]}, frame {frame(sa.closed[1])})" if sa.closed else "")


def _sa_section(sa: IkeSa, anchor: str, frame, utc: bool, found: list[Finding]) -> str:
    i, r = sa.initiator, sa.responder
    msgs = sa.messages
    t0 = msgs[0].time if msgs else 0.0
    head = (f'<section class="sa" id="{anchor}"><h3>IKEv{sa.version} SA '
            f'<span class=mono>{esc(sa.ispi.hex())}/{esc(sa.rspi.hex())}'
            f'</span></h3><p class="meta">Started <b>{esc(stamp(t0, utc) if msgs else "—")}</b>; {esc(_mode(sa))}, state '
            f"{esc(_state(sa, frame))}; NAT: {esc(nat_text(sa))}"
            + ("; roles guessed: the first message was not seen" if sa.roles_guessed else "") + "</p>")
    vendors = [f"{who}: {', '.join(sorted(sa.vendors.get(k, ())))}"
               for k, who in (("I", "initiator"), ("R", "responder")) if sa.vendors.get(k)]
    if vendors:
        head += f'<p class="meta">Vendor IDs — {esc("; ".join(vendors))}</p>'
    stall = stall_point(sa, found)
    at = stall[0] if stall else None
    rows = [Row(relative(m.time - t0), (_arrow(m, frame),), k == at) for k, m in enumerate(msgs)]
    if len(rows) > MAX_ROWS:
        gap = Row("", (Arrow(True, f"… {len(rows) - MAX_ROWS} more messages, not drawn …", kind="absent"),))
        rows = rows[: MAX_ROWS // 2] + [gap] + rows[-MAX_ROWS // 2:]
    stall_text = f"⚠ stall: {stall[1].causes[0] if stall[1].causes else stall[1].code}" if stall else ""
    picture = _scroll(ladder([(f"initiator\n{endpoint(i)}", f"responder\n{endpoint(r)}")], rows,
                             f"ladder of IKEv{sa.version} SA {sa.ispi.hex()}", stall_text)) if msgs else ""
    return head + picture + _proposals(sa) + "</section>"


def stall_point(sa: IkeSa, found: list[Finding]) -> tuple[int, Finding] | None:
    """(index in sa.messages, the finding) of the message a stall finding of this SA points at: the last
    one with the stall's label among the finding's frames, else the last with that label."""
    for f in found:
        if f.code not in STALL_CODES:
            continue
        frames = set(f.frames)
        hits = [k for k, m in enumerate(sa.messages) if m.label == f.at and m.ref in frames] or \
               [k for k, m in enumerate(sa.messages) if m.label == f.at]
        if hits:
            return hits[-1], f
    return None


def _arrow(m: Seen, frame) -> Arrow:
    msg = m.msg
    errors = [n for t, n in msg.notifies if is_error_notify(msg.version, t)]
    shown = [n for t, n in msg.notifies if n in errors or n in RETRY_NOTIFIES]
    note = [*(["again"] if m.retransmission else []), *([f"retry: {m.retry}"] if m.retry else []),
            *(f"N({n})" for n in shown), *([f"UDP {m.dport}"] if m.natt else []),
            *([f"{len(m.fragments)} IP fragments"] if m.fragments else []),
            *(_fragment(p) for p in msg.payloads if p.name in ("SKF", "FRAG")), f"{m.size} B"]
    kind = "error" if msg.malformed or errors else "again" if m.retransmission else "msg"
    payloads = " ".join(p.name for p in msg.payloads)
    notifies = " ".join(f"N({n})" for _, n in msg.notifies)
    title = (f"frame {frame(m.ref)}  {endpoint((m.src, m.sport))} → {endpoint((m.dst, m.dport))}\n{m.label}"
             + (" (retransmission)" if m.retransmission else "") + f"\nmessage ID {msg.message_id}, {m.size} bytes"
             + (f"\npayloads: {payloads}" if payloads else "") + (f"\nnotify: {notifies}" if notifies else "")
             + (f"\nMALFORMED: {msg.malformed}" if msg.malformed else ""))
    return Arrow(m.sender == "I", m.label, ", ".join(note), kind, title, frame(m.ref))


def _fragment(p) -> str:
    """An IKE fragment (IKEv2 SKF, RFC 7383; IKEv1 FRAG) as "SKF 1/2" or "FRAG 2 last"."""
    if p.name == "SKF":
        return f"SKF {p.info.get('fragment')}/{p.info.get('total')}"
    return f"FRAG {p.info.get('number')}{' last' if p.info.get('last') else ''}"


def _proposals(sa: IkeSa) -> str:
    """The chosen proposal, or the offered ones when no answer was seen; the decoder's columns, the
    configuration strings labelled by dialect (common.PROPOSAL_STRINGS)."""
    chosen = summarize_sa(sa.chosen) if sa.chosen else []
    rows = chosen or (summarize_sa(sa.offered) if sa.offered else [])
    if not rows:
        return ""
    columns = [k for k in dict.fromkeys(k for r in rows for k in r)
               if any(r.get(k) not in (None, "", [], ()) for r in rows)]
    names = dict(PROPOSAL_STRINGS)

    def cell(v) -> str:
        text = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else "" if v is None else str(v)
        return f'<span class=mono>{esc(text)}</span>'

    title = "Chosen proposal" if chosen else f"Offered proposals ({len(rows)}), no answer seen"
    return f"<h4>{title}</h4>" + _table([names.get(c, c.replace("_", " ")) for c in columns],
                                         [[cell(r.get(c)) for c in columns] for r in rows], "proposals")


def _esp_chart(pair, flows: list, owners, t0: float, t1: float, frame) -> str:
    """ESP (and AH) per SPI and direction on the capture's time axis, with the IKE SA starts marked."""
    flows = sorted(flows, key=lambda f: f.first_time)
    bars = []
    for f in flows[:MAX_BARS]:
        sa = owners.sa[f]
        lost = f" lost {f.lost}," if f.lost else ""
        bars.append(Bar(f"{f.spi:08x} {f.src_ip} → {f.dst_ip}", f.first_time, f.last_time,
                        f"{f.packets} pkt{'s' if f.packets != 1 else ''},{lost} {f.last_time - f.first_time:.1f} s",
                        " ".join(k for k, on in (("back", f.src != pair.a), ("ah", f.encap == "ah"), ("lost", f.lost))
                                 if on),
                        f"SPI {f.spi:08x} {f.src_ip} → {f.dst_ip} ({f.encap.upper()})\n"
                        f"{f.packets} packets, {f.bytes} bytes, "
                        f"seq {f.seq_min}–{f.seq_max}, lost {f.lost}, duplicates {f.duplicates}\nframes "
                        f"{frame(f.first_frame)}–{frame(f.last_frame)}\nIKE SA "
                        + (sa.ispi.hex() if sa else "not attributed")))
    marks = [(sa.messages[0].time, f"IKE SA {sa.ispi.hex()} starts") for sa in pair.sas if sa.messages]
    more = f'<p class="meta">… and {len(flows) - MAX_BARS} more SPIs (see --json).</p>' if len(flows) > MAX_BARS else ""
    return ("<h3>ESP per SPI</h3><p class=meta>Each bar spans an SPI's first to last packet (ikeflow counts packets per "
            "SPI, it keeps no per-packet times); ▼ marks an IKE SA start.</p>"
            + _scroll(time_chart(bars, t0, t1, f"ESP per SPI between {ip(pair.a)} and {ip(pair.b)}", marks)) + more)


def _findings(found: list[Finding], frame) -> str:
    """The findings with their peer pair and IKE SA, causes and hint; identical informational ones once,
    with a count (common.merge_info)."""
    items = []
    for f, alike in merge_info(found):
        refs = sorted({r for g in alike for r in g.frames})
        frames = f" (frames {', '.join(frame(r) for r in refs[:12])}{'…' if len(refs) > 12 else ''})" if refs else ""
        causes = f"<br><span class=meta>Causes, most likely first: {esc(', '.join(f.causes))}</span>" if f.causes else ""
        hint = f'<div class="hint">{esc(f.hint)}</div>' if f.hint else ""
        items.append(f'<li class="{esc(f.severity)}"><span class="sev {esc(f.severity)}">{esc(f.severity)}</span> '
                     f"<b>{esc(f.code)}</b>{esc(f' at {f.at}' if f.at else '')} <span class=meta>{esc(where(alike))}</span>"
                     f"<br>{esc(f.summary)}{esc(frames)}{causes}{hint}</li>")
    return '<ul class="findings">' + "".join(items) + "</ul>"


# -- compare -------------------------------------------------------------------------------------------------

def compare_html(comparison: Comparison, *, utc: bool = False) -> str:
    cmp = comparison
    offsets = cmp.offsets()
    names = " ".join(p.path for p in cmp.points)
    body = [f"<h1>ikeflow compare <span class=mono>{esc(names)}</span></h1>"]
    rows = []
    for p in cmp.points:
        s = p.an.stats
        rows.append([f"#{p.index + 1}", f"<span class=mono>{esc(p.path)}</span>", str(s.packets), str(s.ike), str(s.esp),
                     esc(stamp(p.first_time, utc) if p.first_time is not None else "—"),
                     esc(stamp(p.last_time, utc) if p.last_time is not None else "—"),
                     "reference" if p.index == 0 else f"{offsets[p.index] * 1000:+.3f} ms"])
    body.append(_table(["point", "file", "packets", "IKE", "ESP", "first packet", "last packet", "clock offset"], rows))
    found = cmp.findings()
    errors = [f for f in found if f.severity == "error"]
    body.append(f'<p class="verdict {"bad" if errors else "good"}">'
                + (esc(f"{len(errors)} error finding{'s' if len(errors) > 1 else ''}: {errors[0].summary}")
                   if errors else "Everything sent at one point arrived at the other.") + "</p>")
    for seg in cmp.segments:
        body.append(_segment(seg, utc))
    if found:
        body.append("<h2>Findings</h2>" + _findings(found, _point_frame))
    return _page(f"ikeflow compare {names}", body)


def _point_frame(ref: int) -> str:
    p, n = split_ref(ref)
    return f"#{p + 1}:{n}"


def _segment(seg: Segment, utc: bool) -> str:
    c = seg.clock
    how = {"ike": f"from {c.matches} matched IKE messages", "esp": "from ESP first/last times",
           "none": "nothing matched: assumed 0"}[c.method]
    out = [f"<h2>#{seg.x.index + 1} <span class=mono>{esc(seg.x.name)}</span> → #{seg.y.index + 1} "
           f"<span class=mono>{esc(seg.y.name)}</span></h2>",
           f'<p class="meta">Clock offset {c.offset * 1000:+.3f} ms ({esc(how)}'
           f"{'; one direction only, so it includes the transit time' if c.one_way else ''}).</p>"]
    if not seg.compared:
        out.append(f"<p>Not compared: {esc(seg.findings[0].code)} (see the findings).</p>")
        return "\n".join(out)
    for conv in seg.elsewhere:
        p = seg.x if conv.pairs[seg.x.index] else seg.y
        out.append(f"<p>{esc(_conv_name(conv, p.index))}: seen at #{p.index + 1} only, sent by both ends there, so not "
                   f"through #{seg.other(p.index).index + 1}: not compared.</p>")
    if not seg.convs and not seg.elsewhere:
        out.append("<p>No IKE or ESP traffic at either point.</p>")
    for k, conv in enumerate(seg.convs):
        out.append(_conversation(seg, conv, utc, k < MAX_LADDERS))
    return "\n".join(out)


def _conv_name(conv: Conversation, point: int) -> str:
    a, b = conv.initiator.get(point), conv.responder.get(point)
    if a is not None and b is not None and conv.pairs.get(point):
        return f"{ip(a)} ⇄ {ip(b)}"
    return ", ".join(f"{ip(k[0])} ⇄ {ip(k[1])}" for k in conv.pairs.get(point) or []) or "not seen"


def _conversation(seg: Segment, conv: Conversation, utc: bool, draw: bool) -> str:
    """The directions table, the two points' ladders side by side with lost messages crossed (when `draw`),
    ESP per SPI."""
    x, y = seg.x.index, seg.y.index
    out = [f"<h3>#{x + 1}: <span class=mono>{esc(_conv_name(conv, x))}</span> &nbsp;|&nbsp; #{y + 1}: "
           f"<span class=mono>{esc(_conv_name(conv, y))}</span></h3>"]
    rows, esp_rows = [], []
    for d in conv.directions.values():
        lost = f', <b class="verdict bad">{len(d.lost)} lost</b>' if d.lost else ""
        delay = f"{ms(min(d.delays))}–{ms(max(d.delays))}" if d.delays else ""
        rows.append([esc(f"{d.src} → {d.dst} (#{d.up + 1} → #{d.down + 1})"),
                     f"{d.sent} sent, {d.arrived} arrived{lost}" + (f", {d.duplicated} dup" if d.duplicated else ""),
                     esc(delay)])
        for e in d.esp:
            esp_rows.append([f"<span class=mono>{e.spi:08x}</span>", esc(f"{d.src} → {d.dst}"), str(e.sent),
                             str(e.arrived), f'<b class="verdict bad">{e.lost}</b>' if e.lost else "0",
                             str(e.duplicated or ""), str(e.reordered or ""), esc(e.note)])
    out.append(_table(["IKE direction (sent at → arrives at)", "IKE messages", "transit ms (min–max)"], rows))
    out.append(_compare_ladder(seg, conv, utc) if draw else
               f'<p class="meta">Ladder not drawn: the first {MAX_LADDERS} peer pairs of a segment have one.</p>')
    if esp_rows:
        out.append("<h4>ESP per SPI</h4>" + _table(["SPI", "direction", "sent", "arrived", "lost", "dup", "reordered",
                                                   "note"], esp_rows))
    nat = [m for m in seg.nat if seg.convs[m.conv] is conv]
    if nat:
        out.append("<p>NAT between the points: " + esc("; ".join(
            f"{'initiator' if m.endpoint == 'I' else 'responder'} {endpoint(m.inside)} → "
            + " then ".join(endpoint(o) for o, _ in m.outside) + (f" (UDP {m.kind})" if m.kind else "")
            for m in nat)) + "</p>")
    return "\n".join(out)


def _compare_ladder(seg: Segment, conv: Conversation, utc: bool) -> str:
    x, y = seg.x.index, seg.y.index
    lost = {id(m) for d in conv.directions.values() for m in d.lost}

    def arrow(m: Msg, kind: str = "msg") -> Arrow:
        note = ", ".join([*(["again"] if m.copies > 1 else []), *([f"UDP {m.dport}"] if m.natt else []),
                          *([f"{m.fragments} IP fragments"] if m.fragments else []), f"{m.size} B"])
        ref = _point_frame(seg.point(m.point).ref(m.ref))
        title = (f"frame {ref}  {endpoint((m.src, m.sport))} → "
                 f"{endpoint((m.dst, m.dport))}\n{m.label}, message ID {m.message_id}, {m.size} bytes")
        if kind == "lost":
            return Arrow(m.sender == "I", f"{m.label} lost", f"sent at #{m.point + 1}, never arrived here", "lost",
                         title + "\nlost: not captured at the other point", ref)
        return Arrow(m.sender == "I", m.label, note, "again" if m.copies > 1 else "msg", title, ref)

    rows = []  # (time on x's clock, cell at x, cell at y)
    for a, b in conv.matches:
        rows.append((a.time, arrow(a), arrow(b)))
    for p in (x, y):
        for m in conv.only[p]:
            if id(m) in lost:
                miss = arrow(m, "lost")
            elif conv.directions[m.sender].up == p:
                miss = Arrow(m.sender == "I", "· not capturing", kind="absent", title="the other point was not capturing")
            else:
                miss = Arrow(m.sender == "I", "? not sent there", kind="absent",
                             title="seen here only, and not sent from the other point's side")
            t = m.time if p == x else m.time - seg.clock.offset
            here = arrow(m)
            rows.append((t, here, miss) if p == x else (t, miss, here))
    rows.sort(key=lambda r: r[0])
    if not rows:
        return ""
    t0 = rows[0][0]
    drawn = [Row(relative(t - t0), (a, b)) for t, a, b in rows]
    if len(drawn) > MAX_ROWS:
        gap = Arrow(True, f"… {len(drawn) - MAX_ROWS} more messages, not drawn …", kind="absent")
        drawn = drawn[: MAX_ROWS // 2] + [Row("", (gap, gap))] + drawn[-MAX_ROWS // 2:]

    def heads(p: int) -> tuple[str, str]:
        i, r = conv.initiator.get(p), conv.responder.get(p)
        return (f"initiator at #{p + 1}\n{ip(i) if i else 'not seen'}",
                f"responder at #{p + 1}\n{ip(r) if r else 'not seen'}")

    return (f'<p class="meta">Started {esc(stamp(t0, utc))} (on #{x + 1}\'s clock); times relative to it.</p>'
            + _scroll(ladder([heads(x), heads(y)], drawn, f"IKE messages at #{x + 1} and #{y + 1}")) + LEGEND)
