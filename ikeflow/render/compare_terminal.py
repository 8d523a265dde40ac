"""`ikeflow compare` on a terminal: the points and their clocks, per segment and conversation a
table of the directions and a two-column ladder of the IKE messages, then the findings.

Laid out line by line like `read` (render.layout.wrap/grid): a value is wrapped, never cut.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from ikeflow.diagnose.finding import ERROR
from ikeflow.render.common import endpoint, ip, ms, relative, span_text, stamp
from ikeflow.render.layout import grid, wrap
from ikeflow.render.read_terminal import FROM_CONSOLE, finding_lines
from ikeflow.sources.capture import split_ref

if TYPE_CHECKING:
    from ikeflow.compare.comparison import Comparison
    from ikeflow.compare.points import Msg
    from ikeflow.compare.segment import Conversation, Segment

MAX_LADDER = 60  # ladder rows drawn per peer pair before leaving out the middle


def render(console: Console, cmp: Comparison, width: int | None = FROM_CONSOLE, quiet: bool = False,
           utc: bool = False, narrowed: str = "") -> None:
    """Print the comparison; `width`, `quiet`, `utc` and `narrowed` as for read_terminal.render."""
    if width == FROM_CONSOLE:
        width = console.width if console.is_terminal else None

    def out(lines: list[Text]) -> None:
        for line in lines:
            console.print(line, soft_wrap=True)

    offsets = cmp.offsets()
    out(wrap(Text("ikeflow compare " + " ".join(p.path for p in cmp.points), style="bold"), width, 2))
    times = [t for p in cmp.points for t in (p.first_time, p.last_time) if t is not None]
    if times:
        out(wrap(f"captures {span_text(min(times), max(times), utc)}", width, 2))
    if narrowed:
        out(wrap(f"narrowed to {narrowed} (the counts are the whole captures')", width, 2))
    day = stamp(min(times), utc)[:10] if times else ""

    def when(t: float | None) -> str:
        if t is None:
            return "—"
        at = stamp(t, utc, zone=False)
        return at[11:] if at[:10] == day else at

    rows = [[f"#{p.index + 1}", p.path, str(p.an.stats.packets), str(p.an.stats.ike), str(p.an.stats.esp),
             when(p.first_time), when(p.last_time), "reference" if p.index == 0 else f"{ms(offsets[p.index], 3, sign=True)} ms"]
            for p in cmp.points]
    out(grid(["point", "file", "packets", "IKE", "ESP", "first", "last", "clock offset"], rows, width,
             right=(2, 3, 4), bare_first=True))
    if not quiet:
        for seg in cmp.segments:
            out(_segment(seg, width, narrowed))
    found = cmp.findings()
    out([Text("")])
    if not found:
        out(wrap(Text(f"No findings match {narrowed}." if narrowed else
                      "No findings: everything sent at one point arrived at the other.", style="green"), width, 2))
        return
    out([Text("Findings", style="bold")])
    out(finding_lines(found, lambda r: f"#{split_ref(r)[0] + 1}:{split_ref(r)[1]}", width))


def _segment(seg: Segment, width: int | None, narrowed: str) -> list[Text]:
    """The segment's clock offset, then per conversation its directions and its ladder."""
    c = seg.clock
    how = {"ike": f"from {c.matches} matched IKE messages", "esp": "from ESP first/last times",
           "none": "nothing matched: assumed 0"}[c.method]
    lines = [Text("")] + wrap(Text(f"#{seg.x.index + 1} {seg.x.name} → #{seg.y.index + 1} {seg.y.name}: clock offset "
                                   f"{ms(c.offset, 3, sign=True)} ms ({how}"
                                   f"{'; one direction only, so it includes the transit time' if c.one_way else ''})",
                                   style="bold"), width, 2)
    if not seg.compared:
        return lines + wrap(f"Not compared: {seg.findings[0].code} (see the findings).", width, 2)
    for conv in seg.elsewhere:
        p = seg.x if conv.pairs[seg.x.index] else seg.y
        lines += wrap(f"{_name(conv, p.index)}: seen at #{p.index + 1} only, sent by both ends there, so not through "
                      f"#{seg.other(p.index).index + 1}: not compared.", width, 2)
    if not seg.convs and not seg.elsewhere:
        lines += wrap(f"No conversation matches {narrowed}." if narrowed and "--peer" in narrowed
                      else "No IKE or ESP traffic at either point.", width, 2)
    for conv in seg.convs:
        keys = conv.pairs[seg.x.index] + conv.pairs[seg.y.index]
        bad = any(f.severity == ERROR and f.pair in keys for f in seg.findings)
        title = f"━━ #{seg.x.index + 1}: {_name(conv, seg.x.index)}  |  #{seg.y.index + 1}: {_name(conv, seg.y.index)}"
        lines += [Text("")] + wrap(Text(title, style="bold red" if bad else "bold"), width, 3)
        lines += _directions(conv, width)
        nat = [m for m in seg.nat if seg.convs[m.conv] is conv]
        if nat:
            lines += wrap("   NAT between the points: " + "; ".join(
                f"{'initiator' if m.endpoint == 'I' else 'responder'} {endpoint(m.inside)} → "
                + " then ".join(endpoint(o) for o, _ in m.outside)
                + (f" (UDP {m.kind})" if m.kind else "") for m in nat), width, 5)
        lines += _ladder(seg, conv, width)
    return lines


def _name(conv: Conversation, point: int) -> str:
    """The peer pair as seen at one point."""
    a, b = conv.initiator.get(point), conv.responder.get(point)
    if a is not None and b is not None and conv.pairs.get(point):
        return f"{ip(a)} ⇄ {ip(b)}"
    keys = conv.pairs.get(point) or []
    return ", ".join(f"{ip(k[0])} ⇄ {ip(k[1])}" for k in keys) or "not seen"


def _directions(conv: Conversation, width: int | None) -> list[Text]:
    def counts(sent, arrived, lost, dup=0, reord=0):
        text = f"{sent} sent, {arrived} arrived" + (f", {lost} lost" if lost else "")
        return text + (f", {dup} dup" if dup else "") + (f", {reord} reordered" if reord else "")

    rows = []
    for d in conv.directions.values():
        delay = (f"{ms(statistics.median(d.delays))} ({ms(min(d.delays))}–{ms(max(d.delays))})"
                 if d.delays else "")
        esp = counts(sum(e.sent for e in d.esp), sum(e.arrived for e in d.esp), sum(e.lost for e in d.esp),
                     sum(e.duplicated for e in d.esp), sum(e.reordered for e in d.esp)) if d.esp else ""
        rows.append([f"{d.src} → {d.dst} (#{d.up + 1} → #{d.down + 1})",
                     counts(d.sent, d.arrived, len(d.lost), d.duplicated, d.reordered), esp, delay])
    return grid(["direction (sent at → arrives at)", "IKE", "ESP", "transit ms (min–max)"], rows, width, indent=3,
                bare_first=True)


def _ladder(seg: Segment, conv: Conversation, width: int | None) -> list[Text]:
    """Each IKE message at the first point and at the second, lost ones marked; times on the first point's
    clock from the conversation's first message; retransmissions and ports beside the arrows."""
    x, y = seg.x.index, seg.y.index
    lost = {id(m) for d in conv.directions.values() for m in d.lost}
    msgs = [m for pair in conv.matches for m in pair] + [m for p in (x, y) for m in conv.only[p]]
    span = max((len(m.label) for m in msgs), default=0) + 4

    def arrow(m: Msg) -> Text:
        fill = "─" * (span - len(m.label) - 2)
        return Text(f"─{m.label}{fill}▶" if m.sender == "I" else f"◀{fill}{m.label}─")

    def notes(m: Msg) -> list[str]:
        return ((["again"] if m.copies > 1 else []) + ([f":{m.dport}"] if m.natt or m.dport != seg.ike_port else [])
                + ([f"{m.fragments} IP frags"] if m.fragments else []))

    def frame(m: Msg) -> str:
        return str(split_ref(m.ref)[1])

    rows = []  # (time on x's clock, frame at x, arrow at x, frame at y, arrow at y, notes)
    for a, b in conv.matches:
        up = conv.directions[a.sender].up
        d = seg.to_y(b.point, b.time) - seg.to_y(a.point, a.time)
        side = notes(a) + [f"at #{y + 1} {n}" for n in notes(b) if n not in notes(a)]
        rows.append((a.time, frame(a), arrow(a), frame(b), arrow(b),
                     "; ".join([f"{ms(d if up == x else -d, sign=True)} ms"] + side)))
    for p in (x, y):
        for m in conv.only[p]:
            if id(m) in lost:
                miss = Text("✗ lost", style="bold red")
            elif conv.directions[m.sender].up == p:
                miss = Text("· not capturing", style="dim")
            else:
                miss = Text("? not sent there", style="yellow")
            t = m.time if p == x else m.time - seg.clock.offset
            rows.append((t, frame(m), arrow(m), "", miss, "; ".join(notes(m))) if p == x
                        else (t, "", miss, frame(m), arrow(m), "; ".join(notes(m))))
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0] if rows else 0.0
    shown = rows if len(rows) <= MAX_LADDER else rows[: MAX_LADDER // 2] + [None] + rows[-MAX_LADDER // 2:]
    cells = [["", "", Text(f"({len(rows) - MAX_LADDER} more not shown)", style="dim"), "", "", ""] if r is None
             else [relative(r[0] - t0), *r[1:]] for r in shown]
    return [Text("")] + grid(["time", "", f"at #{x + 1}", "", f"at #{y + 1}", "transit; notes"], cells, width,
                             right=(0, 1, 3), indent=3, last_min=12)
