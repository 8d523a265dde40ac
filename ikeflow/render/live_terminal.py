"""`ikeflow live` on a terminal: a rich Live view, then `ikeflow read`'s report.

While capturing: a header (interface, time, packets, kernel drops), one row per
peer pair (IKE SA, state or what it waits for, last message, retransmissions,
NAT, ESP each way with its rate) and the last events below (messages, findings,
waits) with their local time.

The rows fit the terminal without cutting a value: from `WIDE` columns on a
table with the full IKE SPIs, the last message's time and the ESP SPIs; below,
a compact table (ESP as `↑12 ↓12`); where even that does not fit, two lines per
peer pair.  NAT is short everywhere: `I+R NAT, 4500@MM5` (both behind NAT,
floated to UDP 4500 at MM5), `R NAT`, `no NAT`, `no NAT-D` (none sent).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from rich import box
from rich.console import Group
from rich.cells import cell_len
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ikeflow.render.common import clock, endpoint, ip
from ikeflow.render.read_terminal import STYLE, render

WIDE = 160  # columns from which the table shows the SPIs and the last message's time


@dataclass
class PairRow:
    """What the view shows of one peer pair."""

    when: float  # its last activity (rows are sorted on it)
    a: str
    b: str
    version: str  # "v1", "v2", "v2 +1" (more IKE SAs), "—" (ESP only)
    spis: str  # initiator and responder SPI of its latest IKE SA, in full
    state: Text
    last: str  # "MM5 again → 2.6 s"
    last_at: str  # the last message's local time
    retr: str
    nat: str  # "I+R NAT, 4500@MM5"
    esp: tuple[str, str]  # a→b, b→a: "12", "41k 1.2k/s"
    esp_spis: tuple[str, str]  # the latest ESP SPI each way


class TerminalSink:
    """rich Live: one row per peer pair, recent events below.  A wait is red from `wait_shown` seconds
    on; ESP rates are per second over at least `rate_every` seconds."""

    EVENTS = 10

    def __init__(self, console, wait_shown: float, rate_every: float):
        self.console, self.wait_shown, self.rate_every = console, wait_shown, rate_every
        self.events: deque = deque(maxlen=200)
        self.retrans: dict[tuple, int] = {}
        self.esp_rate: dict[tuple[bytes, bytes], float] = {}
        self._esp_mark: tuple[float, dict] | None = None
        self.live = None

    def start(self, run) -> None:
        self.live = Live(self.view(run, time.time()), console=self.console, auto_refresh=False,
                         transient=True, redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def message(self, sa, seen) -> None:
        key = _key(sa.initiator[0], sa.responder[0])
        if seen.retransmission:
            self.retrans[key] = self.retrans.get(key, 0) + 1
        label = seen.label + (" (again)" if seen.retransmission else "")
        label += f" retry:{seen.retry}" if seen.retry else ""
        notes = " ".join(f"N({n})" for _, n in seen.msg.notifies)
        style = "yellow" if seen.retransmission else "red" if seen.msg.malformed else ""
        self.events.append(Text.assemble(
            (clock(seen.time, utc=False), "dim"), "  ",
            f"{endpoint((seen.src, seen.sport))} → {endpoint((seen.dst, seen.dport))}  ",
            (label, style or "bold"), f"  {notes}" if notes else "", (f"  frame {seen.ref}", "dim")))

    def finding(self, f) -> None:
        self.events.append(Text.assemble((clock(time.time(), utc=False), "dim"), "  ",
                                         (f"{f.severity.upper():8}", STYLE[f.severity]),
                                         f"{f.code} [{f.at}]: {f.summary}"))

    def waiting(self, sa, w) -> None:
        style = "bold red" if w.stalled else "yellow"
        self.events.append(Text.assemble((clock(time.time(), utc=False), "dim"), "  ", ("WAITING ", style),
                                         f"{ip(sa.initiator[0])} ⇄ {ip(sa.responder[0])} {sa.mode()}: {w.text}"))

    def esp(self, f, rate: float) -> None:
        pass  # the table shows ESP per direction with its rate

    def tick(self, run, now: float) -> None:
        if self.live is not None:
            self.live.update(self.view(run, now), refresh=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def report(self, run, result, unshown) -> None:
        render(self.console, result.model, result.infos, result.findings, result.verdicts,
               title=f"ikeflow live {run.interface}")

    def view(self, run, now: float) -> Group:
        """The screen at time `now`: header, peer pairs (laid out for the console's width), last events."""
        an = run.model
        esp: dict[tuple[bytes, bytes], int] = {}
        for f in an.esp.flows.values():
            esp[(f.src, f.dst)] = esp.get((f.src, f.dst), 0) + f.packets
        if self._esp_mark is None or now - self._esp_mark[0] >= self.rate_every:
            if self._esp_mark is not None:
                t0, old = self._esp_mark
                self.esp_rate = {k: (v - old.get(k, 0)) / (now - t0) for k, v in esp.items()}
            self._esp_mark = (now, esp)
        elapsed = max(0.0, now - run.started)
        head = Text.assemble(
            ("ikeflow live ", "bold"), (run.interface, "bold"),
            f"  {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}  {run.frames} packets ({run.rate:.0f}/s): "
            f"{an.stats.ike} IKE, {sum(esp.values())} ESP",
            (f"  kernel dropped {run.sock.drops}", "bold red") if run.sock.drops else "  no kernel drops",
            ("  Ctrl-C ends with the report", "dim"))
        rows = self._rows(an, esp, now)
        rows.sort(key=lambda r: r.when, reverse=True)
        width = self.console.size.width
        room = max(3, (self.console.size.height - self.EVENTS - 8) // (1 if width >= WIDE else 2))
        parts = [head, *self._layout(rows[:room], width)]
        if len(rows) > room:
            parts.append(Text(f"and {len(rows) - room} more peer pairs, the least recently active", style="dim"))
        if not rows:
            parts.append(Text(f"no IKE or ESP yet (filter: {run.expr})", style="dim"))
        parts.append(Text("events", style="bold"))
        parts.extend(list(self.events)[-self.EVENTS:])
        return Group(*parts)

    def _rows(self, an, esp: dict, now: float) -> list[PairRow]:
        spis: dict[tuple[bytes, bytes], object] = {}  # the latest ESP flow each way
        for f in an.esp.flows.values():
            old = spis.get((f.src, f.dst))
            if old is None or f.last_time >= old.last_time:
                spis[(f.src, f.dst)] = f
        keys = list(an.pairs)
        for (src, dst) in esp:
            k = _key(src, dst)
            if k not in an.pairs and k not in keys:
                keys.append(k)
        rows = []
        for k in keys:
            pair = an.pairs.get(k)
            a, b = (pair.a, pair.b) if pair else k
            row = PairRow(pair.first_time if pair else 0.0, ip(a), ip(b), "—", "", Text("ESP only"), "", "",
                          str(self.retrans.get(k, 0) or ""), "", ("", ""), ("", ""))
            # the IKE SA with the latest message: its state, SPIs, last message and NAT
            sa = max((x for x in pair.sas if x.messages), key=lambda x: x.messages[-1].time, default=None) \
                if pair else None
            if sa is not None:
                row.version = f"v{sa.version}" + (f" +{len(pair.sas) - 1}" if len(pair.sas) > 1 else "")
                row.spis = f"{sa.ispi.hex()} {sa.rspi.hex()}"
                row.state = self._state(sa, now)
                m = sa.messages[-1]
                row.when = max(row.when, m.time)
                row.last = f"{m.label}{' again' if m.retransmission else ''} {'→' if m.src == a else '←'} " \
                           f"{_ago(now - m.time)}"
                row.last_at = clock(m.time, utc=False)
                row.nat = short_nat(sa)
            counts = []
            for d in ((a, b), (b, a)):
                n, rate = esp.get(d, 0), self.esp_rate.get(d, 0.0)
                counts.append(_n(n) + (f" {_n(rate)}/s" if n and rate >= 0.5 else ""))
                if d in spis:
                    row.when = max(row.when, spis[d].last_time)
            row.esp = (counts[0], counts[1])
            row.esp_spis = tuple(f"{spis[d].spi:08x}" if d in spis else "" for d in ((a, b), (b, a)))
            rows.append(row)
        return rows

    def _state(self, sa, now: float) -> Text:
        waits = sa.owed(now)
        if waits:
            w = max(waits, key=lambda w: w.last.time)
            return Text(w.text, style="bold red" if w.stalled and w.seconds >= self.wait_shown else "yellow")
        return Text(sa.state(), style="green" if sa.ike_sa_up() else "")

    def _layout(self, rows: list[PairRow], width: int) -> list:
        """The widest layout that fits `width` without splitting a word: wide, compact, or two lines a pair."""
        if not rows:
            return []
        layouts = [_wide] if width >= WIDE else []
        for make in layouts + [_compact, _compact_two_lines]:
            headers, cells = make(rows)
            widths = fit(headers, cells, width, spread=make is _wide, whole=0 if make is _compact else None)
            if widths is not None:
                t = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=0, collapse_padding=True)
                for (header, just), w in zip(headers, widths):
                    t.add_column(header, justify=just, width=w, overflow="fold")
                for row in cells:
                    t.add_row(*row)
                return [t]
        return [_stacked(r) for r in rows]


def fit(headers: list[tuple[str, str]], cells: list[tuple], width: int, spread: bool = False,
        whole: int | None = None) -> list[int] | None:
    """Column widths for a table `width` columns wide (one column of space between columns) in which no
    word of a header or a cell is split (no line of column `whole`), or None when it cannot fit.  Columns
    take their widest line if there is room, else wide columns give up room down to their longest word;
    `spread` fills the width."""
    columns = list(zip(*([h for h, _ in headers], *cells)))
    lines = [[line for c in col for line in _plain(c).splitlines() or [""]] for col in columns]
    least = [max((cell_len(w) for line in col for w in line.split()), default=1) or 1 for col in lines]
    most = [max(cell_len(line) for line in col) or 1 for col in lines]
    if whole is not None:
        least[whole] = most[whole]
    room = width - (len(columns) - 1)
    if sum(least) > room:
        return None
    widths = list(most)
    while sum(widths) > room:  # take one column from the widest column that can still give one
        i = max((i for i in range(len(widths)) if widths[i] > least[i]), key=lambda i: widths[i])
        widths[i] -= 1
    if spread and sum(widths) < room:
        widths[-1] += room - sum(widths)
    return widths


def _plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _compact(rows: list[PairRow], two_lines: bool = False) -> tuple[list, list]:
    headers = [("peers a ⇄ b", "left"), ("IKE", "left"), ("state", "left"), ("last (ago)", "left"),
               ("retr", "right"), ("NAT", "left"), ("ESP ↑a→b ↓b→a", "left")]
    return headers, [(f"{r.a}{chr(10) if two_lines else ' '}⇄ {r.b}", r.version, r.state, r.last, r.retr, r.nat,
                      f"↑{r.esp[0]} ↓{r.esp[1]}") for r in rows]


def _compact_two_lines(rows: list[PairRow]) -> tuple[list, list]:
    return _compact(rows, two_lines=True)


def _wide(rows: list[PairRow]) -> tuple[list, list]:
    headers = [("peers a ⇄ b", "left"), ("IKE SA (SPIs I R)", "left"), ("state", "left"), ("last message", "left"),
               ("retr", "right"), ("NAT", "left"), ("ESP a→b", "right"), ("ESP b→a", "right")]
    cells = []
    for r in rows:
        esp = [f"{n} spi {spi}" if spi else n for n, spi in zip(r.esp, r.esp_spis)]
        cells.append((f"{r.a} ⇄ {r.b}", f"{r.version} {r.spis}".strip(), r.state,
                      f"{r.last} ({r.last_at})" if r.last else "", r.retr, r.nat, *esp))
    return headers, cells


def _stacked(r: PairRow) -> Text:
    """One peer pair on two lines (or more, wrapped between words) for a narrow terminal."""
    return Text.assemble(
        (f"{r.a} ⇄ {r.b}", "bold"), f"  {r.version}  ", r.state, "\n",
        f"  last {r.last or '—'} · retr {r.retr or 0} · NAT {r.nat or '—'} · ESP ↑{r.esp[0]} ↓{r.esp[1]}")


def short_nat(sa) -> str:
    """An IKE SA's NAT in a few characters: "I+R NAT, 4500@MM5", "R NAT", "no NAT", "no NAT-D"."""
    if sa.rewritten():
        return "rewritten"
    if sa.opening_missing():
        return "unknown"
    who = [r for r in "IR" if sa.behind_nat()[r]]
    text = "+".join(who) + " NAT" if who else "no NAT" if sa.natd else "no NAT-D"
    natt = next((m for m in sa.messages if m.natt), None)
    port = (m.dport if m.sender == "I" else m.sport) if (m := natt) else None
    if sa.float_at:
        text += f", {port}@{sa.float_at}"
    elif sa.started_natt:
        text += f", on {port}"
    return text


def _key(a: bytes, b: bytes) -> tuple[bytes, bytes]:
    """A peer pair's key in the model: the two addresses in order."""
    return (a, b) if a <= b else (b, a)


def _n(x: float) -> str:
    """A count or rate in at most 4 characters and a suffix: 812, 41k, 1.2M."""
    if x < 1000:
        return f"{x:.0f}"
    if x < 10_000:
        return f"{x / 1000:.1f}k"
    if x < 1_000_000:
        return f"{x / 1000:.0f}k"
    return f"{x / 1e6:.1f}M"


def _ago(seconds: float) -> str:
    """How long ago, to a tenth of a second under 10 s, in minutes from 2 min."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
