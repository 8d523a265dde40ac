"""Inline SVG pictures for the HTML report: the ladder (a sequence diagram, one or more panels
of two lifelines side by side) and the time chart (one bar per row on a shared time axis).

Pure functions from plain data to SVG text.  Every string is escaped here (`esc`); a label
too long for its arrow is shortened, with the full text in the arrow's `<title>` tooltip.
The pictures scale with the page (viewBox, width 100%) down to 3/5 of their size, below which the page
scrolls them sideways; colours come from the page's CSS.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

CHAR_W = 6.6  # px: the width of one character at the ladder's 11 px font (a safe upper bound)
TIME_W = 70  # px: the time column left of the ladder
PANEL_W = 540  # px: one panel (two lifelines)
PANEL_GAP = 30
HEAD_H = 46  # px: the participant boxes
ROW_H = 34  # px: one arrow
LIFE_INSET = 100  # px: a lifeline from the panel's edge (half a participant box, and some)
STALL_W = 200  # px: room right of the ladder for the stall text
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def esc(text) -> str:
    """Text for HTML or SVG: markup characters escaped, control characters shown as \\xNN."""
    return html.escape(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text)), quote=True)


def shorten(text: str, room: float) -> str:
    """`text` cut to what fits in `room` px, ending in "…" when cut."""
    most = max(4, int(room / CHAR_W))
    return text if len(text) <= most else text[: most - 1] + "…"


@dataclass(frozen=True)
class Arrow:
    """One message in one panel.  `kind`: "msg", "again" (a retransmission), "error" (malformed, or an
    error notify), "lost" (sent, never arrived: drawn half way and crossed), "absent" (no arrow: `label`
    says why, e.g. "not capturing")."""

    rightward: bool  # from the panel's left lifeline to its right one
    label: str
    note: str = ""  # small text under the arrow: retry, port, size
    kind: str = "msg"
    title: str = ""  # the full text for the tooltip
    frame: str = ""  # the frame it was captured in (data-frame)


@dataclass(frozen=True)
class Row:
    time: str  # relative time, as printed left of the arrows
    cells: tuple  # one Arrow (or None) per panel
    stall: bool = False  # the message the negotiation stalls at: highlighted


def ladder(panels: list[tuple[str, str]], rows: list[Row], label: str, stall_text: str = "") -> str:
    """A sequence diagram: per panel two lifelines headed by `panels[i]` (left, right; "role\naddress"),
    one arrow per row and panel.  Each arrow is a `<g class="msg KIND" data-frame="N">`; a row with `stall`
    gets a `<rect class="stall-band">`, its arrows the class "stall" and `stall_text` beside them."""
    width = TIME_W + len(panels) * PANEL_W + (len(panels) - 1) * PANEL_GAP + 10
    if stall_text and any(r.stall for r in rows):
        width += STALL_W
    height = HEAD_H + max(1, len(rows)) * ROW_H + 16
    out = [f'<svg class="ladder" viewBox="0 0 {width} {height}" '
           f'style="max-width:{width}px;min-width:{width * 3 // 5}px" role="img" aria-label="{esc(label)}">'
           f'<title>{esc(label)}</title>']
    for i, _ in enumerate(panels):
        left, right = _lifelines(i)
        for x, name in zip((left, right), panels[i]):
            role, _, where = name.partition("\n")
            out.append(f'<g class="actor"><title>{esc(name)}</title>'
                       f'<rect class="actor" x="{x - 95}" y="2" width="190" height="36" rx="4"/>'
                       f'<text class="role" x="{x}" y="15" text-anchor="middle">{esc(shorten(role, 180))}</text>'
                       f'<text class="actor" x="{x}" y="31" text-anchor="middle">{esc(shorten(where, 180))}</text></g>'
                       f'<line class="life" x1="{x}" y1="38" x2="{x}" y2="{height - 6}"/>')
    out.append(f'<text class="axis" x="{TIME_W - 8}" y="{HEAD_H - 2}" text-anchor="end">s</text>')
    for n, row in enumerate(rows):
        y = HEAD_H + n * ROW_H + ROW_H - 12  # the arrow's line
        if row.stall:
            out.append(f'<rect class="stall-band" x="2" y="{y - ROW_H + 15}" width="{width - 4}" height="{ROW_H}"/>')
        out.append(f'<text class="time" x="{TIME_W - 8}" y="{y + 4}" text-anchor="end">{esc(row.time)}</text>')
        for i, cell in enumerate(row.cells):
            if cell is not None:
                out.append(_arrow(cell, *_lifelines(i), y, row.stall and stall_text))
    out.append("</svg>")
    return "".join(out)


def _lifelines(panel: int) -> tuple[int, int]:
    x0 = TIME_W + panel * (PANEL_W + PANEL_GAP)
    return x0 + LIFE_INSET, x0 + PANEL_W - LIFE_INSET


def _arrow(a: Arrow, left: int, right: int, y: int, stall_text: str) -> str:
    tip = esc(a.title or a.label)
    room = right - left - 16
    mid = (left + right) / 2
    if a.kind == "absent":
        return (f'<g class="msg absent"><title>{tip}</title><text class="note" x="{mid}" y="{y + 4}" '
                f'text-anchor="middle">{esc(shorten(a.label, room))}</text></g>')
    x1, x2 = (left, right) if a.rightward else (right, left)
    end = mid if a.kind == "lost" else x2
    d = 1 if end > x1 else -1
    head = (f'<path class="cross" d="M{end - 5},{y - 5}l10,10m0,-10l-10,10"/>' if a.kind == "lost" else
            f'<polygon class="head" points="{end},{y} {end - 9 * d},{y - 4} {end - 9 * d},{y + 4}"/>')
    parts = [f'<g class="msg {a.kind}{" stall" if stall_text else ""}" data-frame="{esc(a.frame)}"><title>{tip}</title>',
             f'<line class="shaft" x1="{x1}" y1="{y}" x2="{end - 9 * d if a.kind != "lost" else end}" y2="{y}"/>',
             head,
             f'<text class="label" x="{(x1 + end) / 2 if a.kind == "lost" else mid}" y="{y - 5}" text-anchor="middle">'
             f'{esc(shorten(a.label, room))}</text>']
    if a.note:
        parts.append(f'<text class="note" x="{mid}" y="{y + 12}" text-anchor="middle">{esc(shorten(a.note, room))}</text>')
    if stall_text:
        parts.append(f'<text class="stall-text" x="{right + LIFE_INSET}" y="{y + 4}">'
                     f'{esc(shorten(stall_text, STALL_W - 10))}</text>')
    parts.append("</g>")
    return "".join(parts)


@dataclass(frozen=True)
class Bar:
    """One row of the time chart: a span from `start` to `end` (seconds, on the chart's clock)."""

    label: str  # left of the bar
    start: float
    end: float
    text: str  # right of the bar
    kind: str = ""  # CSS class: e.g. "out", "back", "lost"
    title: str = ""


def time_chart(bars: list[Bar], t0: float, t1: float, label: str, marks: list[tuple[float, str]] = ()) -> str:
    """Bars on a shared time axis from t0 to t1 (relative seconds on the ticks); `marks` are vertical
    lines (time, text), e.g. where each IKE SA started."""
    lab_w, chart_w, text_w, bar_h = 300, 520, 200, 18
    width = lab_w + chart_w + text_w
    height = 30 + len(bars) * (bar_h + 6) + 24
    span = max(t1 - t0, 1e-6)

    def x(t: float) -> float:
        return round(lab_w + (t - t0) / span * chart_w, 1)

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" style="max-width:{width}px" '
           f'role="img" aria-label="{esc(label)}"><title>{esc(label)}</title>']
    bottom = height - 20
    for k in range(5):
        t = t0 + span * k / 4
        out.append(f'<line class="grid" x1="{x(t)}" y1="20" x2="{x(t)}" y2="{bottom}"/>'
                   f'<text class="axis" x="{x(t)}" y="{height - 6}" text-anchor="middle">{_seconds(t - t0)}</text>')
    for t, text in marks:
        out.append(f'<g class="mark"><title>{esc(text)}</title><line x1="{x(t)}" y1="14" x2="{x(t)}" y2="{bottom}"/>'
                   f'<path d="M{x(t) - 4},12l4,6l4,-6z"/></g>')
    for n, b in enumerate(bars):
        y = 26 + n * (bar_h + 6)
        w = max(2.0, x(b.end) - x(b.start))
        out.append(f'<g class="bar {esc(b.kind)}"><title>{esc(b.title or b.text)}</title>'
                   f'<text class="label" x="{lab_w - 8}" y="{y + 13}" text-anchor="end">'
                   f'{esc(shorten(b.label, lab_w - 12))}</text>'
                   f'<rect x="{x(b.start)}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="2"/>'
                   f'<text class="note" x="{lab_w + chart_w + 8}" y="{y + 13}">'
                   f'{esc(shorten(b.text, text_w - 10))}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _seconds(s: float) -> str:
    return f"+{s:.3f} s" if s < 10 else f"+{s:.1f} s"
