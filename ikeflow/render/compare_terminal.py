"""`ikeflow compare` on a terminal: the points and their clocks, per segment and conversation a
table of the directions and a two-column ladder of the IKE messages, then the findings."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ikeflow.diagnose.finding import ERROR, INFO
from ikeflow.render.common import clock, endpoint, ip
from ikeflow.render.read_terminal import STYLE
from ikeflow.sources.capture import split_ref

if TYPE_CHECKING:
    from ikeflow.compare.comparison import Comparison
    from ikeflow.compare.points import Msg
    from ikeflow.compare.segment import Conversation, Segment

MAX_LADDER = 60  # ladder rows drawn per peer pair before eliding the middle


def render(console: Console, cmp: Comparison) -> None:
    offsets = cmp.offsets()
    console.print(Text("ikeflow compare " + " ".join(p.path for p in cmp.points), style="bold"))
    t = Table(box=None, pad_edge=False)
    for col in ("point", "file", "packets", "IKE", "ESP", "first", "last", "clock offset"):
        t.add_column(col)
    for p in cmp.points:
        s = p.an.stats
        t.add_row(f"#{p.index + 1}", p.path, str(s.packets), str(s.ike), str(s.esp),
                  clock(p.first_time) if p.first_time is not None else "—",
                  clock(p.last_time) if p.last_time is not None else "—",
                  "reference" if p.index == 0 else f"{offsets[p.index] * 1000:+.3f} ms")
    console.print(t)
    for seg in cmp.segments:
        _segment(console, seg)
    found = cmp.findings()
    if not found:
        console.print(Text("No findings: everything sent at one point arrived at the other.", style="green"))
        return
    console.print(Text("Findings", style="bold"))
    for f in found:
        frames = ", ".join(f"#{split_ref(r)[0] + 1}:{split_ref(r)[1]}" for r in f.frames[:8])
        frames = f" (frames {frames}{'…' if len(f.frames) > 8 else ''})" if frames else ""
        causes = f" Causes, most likely first: {', '.join(f.causes)}." if f.causes else ""
        console.print(Text.assemble((f"{f.severity.upper():8}", STYLE[f.severity]),
                                    f"{f.code} [{f.at}]: {f.summary}{frames}.{causes}"))
        if f.hint and f.severity != INFO:
            console.print(Text(f"         → {f.hint}", style="dim"))


def _segment(console: Console, seg: Segment) -> None:
    """The segment's clock offset, then one panel per conversation."""
    c = seg.clock
    how = {"ike": f"from {c.matches} matched IKE messages", "esp": "from ESP first/last times",
           "none": "nothing matched: assumed 0"}[c.method]
    console.print(Text(f"\n#{seg.x.index + 1} {seg.x.name} → #{seg.y.index + 1} {seg.y.name}: clock offset "
                       f"{c.offset * 1000:+.3f} ms ({how}"
                       f"{'; one direction only, so it includes the transit time' if c.one_way else ''})",
                       style="bold"))
    if not seg.compared:
        console.print(f"Not compared: {seg.findings[0].code} (see the findings).")
        return
    for conv in seg.elsewhere:
        p = seg.x if conv.pairs[seg.x.index] else seg.y
        console.print(f"{_name(conv, p.index)}: seen at #{p.index + 1} only, sent by both ends there, so not through "
                      f"#{seg.other(p.index).index + 1}: not compared.")
    if not seg.convs and not seg.elsewhere:
        console.print("No IKE or ESP traffic at either point.")
    for conv in seg.convs:
        body = [_directions(conv), _ladder(seg, conv)]
        nat = [m for m in seg.nat if seg.convs[m.conv] is conv]
        if nat:
            body.append(Text("NAT between the points: " + "; ".join(
                f"{'initiator' if m.endpoint == 'I' else 'responder'} {endpoint(m.inside)} → "
                + " then ".join(endpoint(o) for o, _ in m.outside)
                + (f" (UDP {m.kind})" if m.kind else "") for m in nat)))
        keys = conv.pairs[seg.x.index] + conv.pairs[seg.y.index]
        bad = any(f.severity == ERROR and f.pair in keys for f in seg.findings)
        title = f"#{seg.x.index + 1}: {_name(conv, seg.x.index)}  |  #{seg.y.index + 1}: {_name(conv, seg.y.index)}"
        console.print(Panel(Group(*body), title=Text(title, style="bold red" if bad else "bold"), title_align="left"))


def _name(conv: Conversation, point: int) -> str:
    """The peer pair as seen at one point."""
    a, b = conv.initiator.get(point), conv.responder.get(point)
    if a is not None and b is not None and conv.pairs.get(point):
        return f"{ip(a)} ⇄ {ip(b)}"
    keys = conv.pairs.get(point) or []
    return ", ".join(f"{ip(k[0])} ⇄ {ip(k[1])}" for k in keys) or "not seen"


def _directions(conv: Conversation) -> Table:
    t = Table(box=None, pad_edge=False)
    for col in ("direction (sent at → arrives at)", "IKE", "ESP", "transit ms (min–max)"):
        t.add_column(col)

    def counts(sent, arrived, lost, dup=0, reord=0):
        text = f"{sent} sent, {arrived} arrived" + (f", {lost} lost" if lost else "")
        return text + (f", {dup} dup" if dup else "") + (f", {reord} reordered" if reord else "")

    for d in conv.directions.values():
        delay = (f"{statistics.median(d.delays) * 1000:.2f} ({min(d.delays) * 1000:.2f}–{max(d.delays) * 1000:.2f})"
                 if d.delays else "")
        esp = counts(sum(e.sent for e in d.esp), sum(e.arrived for e in d.esp), sum(e.lost for e in d.esp),
                     sum(e.duplicated for e in d.esp), sum(e.reordered for e in d.esp)) if d.esp else ""
        t.add_row(f"{d.src} → {d.dst} (#{d.up + 1} → #{d.down + 1})",
                  counts(d.sent, d.arrived, len(d.lost), d.duplicated, d.reordered), esp, delay)
    return t


def _ladder(seg: Segment, conv: Conversation) -> Table:
    """Two columns of arrivals: each IKE message at the first point and at the second, lost ones marked."""
    x, y = seg.x.index, seg.y.index
    lost = {id(m) for d in conv.directions.values() for m in d.lost}

    def cell(m: Msg) -> Text:
        label = (m.label + (" (again)" if m.copies > 1 else "")
                 + (f" :{m.dport}" if m.natt or m.dport != seg.ike_port else "")
                 + (f" [{m.fragments} IP frags]" if m.fragments else ""))
        arrow = f"──{label}──▶" if m.sender == "I" else f"◀──{label}──"
        return Text(f"{split_ref(m.ref)[1]:>5}  {arrow}")

    rows = []  # (time on x's clock, cell at x, cell at y, transit)
    for a, b in conv.matches:
        up = conv.directions[a.sender].up
        d = seg.to_y(b.point, b.time) - seg.to_y(a.point, a.time)
        rows.append((a.time, cell(a), cell(b), f"{(d if up == x else -d) * 1000:+.2f} ms"))
    for p in (x, y):
        for m in conv.only[p]:
            if id(m) in lost:
                miss = Text("      ✗ lost", style="bold red")
            elif conv.directions[m.sender].up == p:
                miss = Text("      · not capturing", style="dim")
            else:
                miss = Text("      ? not sent there", style="yellow")
            t = m.time if p == x else m.time - seg.clock.offset
            rows.append((t, cell(m), miss, "") if p == x else (t, miss, cell(m), ""))
    rows.sort(key=lambda r: r[0])
    t = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    t.add_column("time", justify="right")
    t.add_column(f"at #{x + 1} {seg.x.name}")
    t.add_column(f"at #{y + 1} {seg.y.name}")
    t.add_column("transit", justify="right")
    t0 = rows[0][0] if rows else 0.0
    shown = rows if len(rows) <= MAX_LADDER else rows[: MAX_LADDER // 2] + [None] + rows[-MAX_LADDER // 2:]
    for r in shown:
        if r is None:
            t.add_row("", f"… {len(rows) - MAX_LADDER} more …", "", "")
        else:
            t.add_row(f"{r[0] - t0:.3f}", r[1], r[2], r[3])
    return t

