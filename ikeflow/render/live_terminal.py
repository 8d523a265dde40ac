"""`ikeflow live` on a terminal: a rich Live view, then `ikeflow read`'s report.

While capturing: a header (interface, time, packets, kernel drops), one row per
peer pair (IKE SA, state or what it waits for, last message, retransmissions,
NAT, ESP each way with its rate) and the last events below (messages, findings,
waits) with their local time.
"""

from __future__ import annotations

import time
from collections import deque

from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ikeflow.render.common import clock, ip, nat_text
from ikeflow.render.read_terminal import STYLE, render


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
        self.live = Live(self._render(run, time.time()), console=self.console, auto_refresh=False,
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
            f"{ip(seen.src)}:{seen.sport} → {ip(seen.dst)}:{seen.dport}  ",
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
            self.live.update(self._render(run, now), refresh=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def report(self, run, result, unshown) -> None:
        render(self.console, result.model, result.infos, result.findings, result.verdicts,
               title=f"ikeflow live {run.interface}")

    def _render(self, run, now: float):
        an = run.model
        esp: dict[tuple[bytes, bytes], int] = {}
        for f in an.esp.flows.values():
            esp[(f.src, f.dst)] = esp.get((f.src, f.dst), 0) + f.packets
        if self._esp_mark is None or now - self._esp_mark[0] >= self.rate_every:
            if self._esp_mark is not None:
                t0, old = self._esp_mark
                self.esp_rate = {k: (v - old.get(k, 0)) / (now - t0) for k, v in esp.items()}
            self._esp_mark = (now, esp)
        elapsed = now - run.started
        head = Text.assemble(
            ("ikeflow live ", "bold"), (run.interface, "bold"),
            f"  {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}  {run.frames} packets ({run.rate:.0f}/s): "
            f"{an.stats.ike} IKE, {sum(esp.values())} ESP",
            (f"  kernel dropped {run.sock.drops}", "bold red") if run.sock.drops else "  no kernel drops",
            ("  Ctrl-C ends with the report", "dim"))
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col, just, wrap, least, most in (
                ("peers a ⇄ b", "left", False, None, None), ("IKE SA", "left", False, None, None),
                ("state", "left", True, 20, None), ("last (ago)", "left", False, None, None),
                ("retr", "right", False, None, None), ("NAT", "left", True, None, 12),
                ("ESP a→b", "right", False, None, None), ("ESP b→a", "right", False, None, None)):
            t.add_column(col, justify=just, no_wrap=not wrap, overflow="fold" if wrap else "ellipsis",
                         min_width=least, max_width=most)
        keys = list(an.pairs)
        for (src, dst) in esp:
            k = _key(src, dst)
            if k not in an.pairs and k not in keys:
                keys.append(k)
        rows = []
        for k in keys:
            pair = an.pairs.get(k)
            a, b = (pair.a, pair.b) if pair else k
            last_time = pair.first_time if pair else 0.0
            sa = pair.sas[-1] if pair and pair.sas else None
            sa_text, state, last, nat = "—", Text("ESP only" if not pair or not pair.sas else ""), "", ""
            if sa is not None:
                sa_text = f"v{sa.version} {sa.ispi.hex()[:8]}" + (f" +{len(pair.sas) - 1}" if len(pair.sas) > 1 else "")
                waits = sa.owed(now)
                if waits:
                    w = max(waits, key=lambda w: w.last.time)
                    style = "bold red" if w.stalled and w.seconds >= self.wait_shown else "yellow"
                    state = Text(w.text, style=style)
                else:
                    state = Text(sa.state(), style="green" if sa.ike_sa_up() else "")
                m = max((x.messages[-1] for x in pair.sas if x.messages), key=lambda m: m.time)
                last_time = max(last_time, m.time)
                arrow = "→" if m.src == a else "←"
                last = f"{m.label}{' again' if m.retransmission else ''} {arrow} {_ago(now - m.time)}"
                nat = nat_text(sa, short=True)
            out, back = esp.get((a, b), 0), esp.get((b, a), 0)
            ro, rb = self.esp_rate.get((a, b), 0.0), self.esp_rate.get((b, a), 0.0)
            rows.append((last_time, (f"{ip(a)}\n⇄ {ip(b)}", sa_text, state, last, str(self.retrans.get(k, 0) or ""),
                                     nat, f"{_n(out)} {_n(ro)}/s" if out else "0",
                                     f"{_n(back)} {_n(rb)}/s" if back else "0")))
        room = max(3, self.console.size.height - self.EVENTS - 8)
        rows.sort(key=lambda r: r[0], reverse=True)
        for _, cells in rows[:room]:
            t.add_row(*cells)
        parts = [head, t]
        if len(rows) > room:
            parts.append(Text(f"… {len(rows) - room} more peer pairs (the least recently active)", style="dim"))
        if not rows:
            parts.append(Text(f"no IKE or ESP yet (filter: {run.expr})", style="dim"))
        parts.append(Text("events", style="bold"))
        parts.extend(list(self.events)[-self.EVENTS:])
        return Group(*parts)


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
