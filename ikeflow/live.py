"""`ikeflow live IFACE`: watch IKE/ESP negotiations as they happen.

    capture socket (sources.live) -> Pipeline.frame -> model events, findings -> a live view (Sink)

`LiveRun` owns the loop, in one thread: it drains the capture socket without
blocking, numbers every frame from 1 in capture order and hands it to
`Pipeline.frame` (plain ESP takes the reader's fast path), so the final report
is what `ikeflow read` prints for the same packets, e.g. for the `--write`
file.  Four times a second it refreshes the view; once a second it evaluates:
findings (`Pipeline.findings` on the analysis so far), "waiting for ..." lines
(`IkeSa.owed`), ESP rates and the kernel's drop counter.  Ctrl-C, SIGTERM,
--count or --duration end it; what already waits in the kernel is drained, and
`Pipeline.conclude` gives the report and the exit code of `ikeflow read`.

The views are renderers with one interface (`Sink`): render/live_json.py
(JSON lines, for pipes) and render/live_terminal.py (rich Live, on a terminal).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time
from typing import TYPE_CHECKING, Protocol

import click

from ikeflow.limits import DEFAULT, Limits
from ikeflow.model.events import MessageSeen
from ikeflow.sources.live import RETIRE_MS, PcapWriter, capture_filter, open_socket

if TYPE_CHECKING:
    from ikeflow.keys import KeyRing
    from ikeflow.diagnose.finding import Finding
    from ikeflow.model.esp import EspFlow
    from ikeflow.model.ikesa import IkeSa, Seen
    from ikeflow.model.sequences import Owed
    from ikeflow.pipeline import Options, Result
    from ikeflow.sources.live import CaptureSocket

BATCH = 2048  # frames drained per wake-up before the clock is looked at again
REFRESH = 0.25  # seconds between view refreshes
EVALUATE = 1.0  # seconds between findings / ESP rate / kernel drop updates
STALL_GRACE = 1.5  # a stall finding must persist this long before it is shown (an answer may be in flight)
WAIT_SHOWN = 2.0  # an unanswered message becomes a "waiting for ..." event after this many seconds
WAIT_STEPS = (2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)  # ages at which a wait is shown again
DRAIN = 3.0  # seconds at most to take in what arrived before the stop


class Sink(Protocol):
    """A live view: told what to show as it happens, then the final report (render/live_*.py)."""

    def start(self, run: LiveRun) -> None:
        """The capture is open: `run.interface`, `run.expr`, `run.sock`, `run.started`."""

    def message(self, sa: IkeSa, seen: Seen) -> None:
        """An IKE message, labelled within its SA."""

    def finding(self, f: Finding) -> None:
        """A finding, new or with a new severity (a stall once it has lasted STALL_GRACE)."""

    def waiting(self, sa: IkeSa, w: Owed) -> None:
        """An unanswered message, from WAIT_SHOWN seconds on: again at each WAIT_STEPS age and retransmission."""

    def esp(self, f: EspFlow, rate: float) -> None:
        """An ESP flow, when new and then at most once a second while it grows; `rate` in packets per second."""

    def tick(self, run: LiveRun, now: float) -> None:
        """Every REFRESH seconds: redraw, flush (`run.frames`, `run.rate`, `run.model`, `run.sock.drops`)."""

    def stop(self) -> None:
        """The capture is over: take the view down."""

    def report(self, run: LiveRun, result: Result, unshown: list[Finding]) -> None:
        """The end: `ikeflow read`'s report of `result`; `unshown` are the findings not shown as they came
        (`run.frames`, `run.elapsed`, `run.cpu`, `run.ended_by`, `run.sock.drops` say how the capture went)."""


class LiveRun:
    """One live capture: frames from `sock` into a pipeline until a stop, the view (`sink`) kept current."""

    def __init__(self, interface: str, expr: str, sock: CaptureSocket, sink: Sink, options: Options,
                 writer: PcapWriter | None = None, count: int | None = None, duration: float | None = None):
        from ikeflow.pipeline import Pipeline  # here, not at the top: `ikeflow --help` imports this module
        from ikeflow.sources.capture import FileInfo

        self.interface, self.expr, self.sock, self.sink = interface, expr, sock, sink
        self.writer, self.count = writer, count
        self.pipeline = Pipeline(options)
        self.model = self.pipeline.model
        self.info = FileInfo(f"{interface} (live)", format="live", linktypes=[sock.linktype])
        self.pipeline.source(self.info)
        self.model.listeners.append(self._event)
        self.ended_by: str | None = None  # SIGINT, SIGTERM, count, duration or interface
        self.frames = 0
        self.first: float | None = None  # time of the first and the last frame
        self.last: float | None = None
        self.rate = 0.0  # frames per second over the last EVALUATE period
        self.cpu = 0.0  # CPU seconds the capture used
        self.elapsed = 0.0  # wall-clock seconds, once the capture is over
        self.started = time.time()
        self.deadline = self.started + duration if duration else None
        self._rate_mark = (self.started, 0)
        self._shown: dict[tuple, str] = {}  # finding key -> severity last shown
        self._pending: dict[tuple, float] = {}  # stall finding key -> when first seen
        self._waits: dict[int, tuple] = {}  # id(run) -> (retransmissions, age step) last shown
        self._esp_mark: dict[bytes, tuple[float, int]] = {}  # flow key -> (time, packets) at its last event

    def capture(self) -> None:
        """Until a signal, --count, --duration or the interface goes away; then what still waits in the kernel."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.sink.start(self)
            cpu0 = time.process_time()
            self._loop()
            if self.ended_by not in ("count", "interface"):
                self._drain()
            self.sock.stats()
            self.cpu = time.process_time() - cpu0
        finally:
            self.sink.stop()
            for s, h in old.items():
                signal.signal(s, h)

    def finish(self) -> Result:
        """The socket is closed: conclude, show the report and (on stderr) what the capture took in."""
        self.elapsed = time.time() - self.started
        self.info.packets = self.frames
        self.info.first_time, self.info.last_time = self.first, self.last
        result = self.pipeline.conclude()
        self.sink.report(self, result, [f for f in result.findings if self._shown.get(_finding_key(f)) != f.severity])
        drops = self.sock.drops
        lost = f"the kernel dropped {drops} packets (the analysis misses them)" if drops else "no kernel drops"
        rate = self.frames / self.elapsed if self.elapsed else 0
        click.echo(f"ikeflow: {self.frames} packets captured on {self.interface} in {self.elapsed:.1f} s "
                   f"({rate:.0f}/s); {lost}", err=True)
        return result

    def _on_signal(self, signum, _frame) -> None:
        if self.ended_by is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: give up on the report
        self.ended_by = signal.Signals(signum).name

    def _loop(self) -> None:
        sock, sink, deadline = self.sock, self.sink, self.deadline
        next_tick = next_eval = time.time()
        while self.ended_by is None:
            now = time.time()
            wait = min(next_tick, deadline or next_tick) - now
            if wait > 0:
                try:
                    ready, _, _ = select.select([sock], [], [], wait)
                except InterruptedError:
                    ready = []
            else:
                ready = [sock]
            if ready:
                self._feed(self._read() or [])
            now = time.time()
            if deadline and now >= deadline:
                self.ended_by = "duration"
            if now >= next_eval:
                sock.stats()
                self._evaluate(now)
                next_eval = now + EVALUATE
            if now >= next_tick or self.ended_by:
                if self.writer:
                    self.writer.flush()
                sink.tick(self, now)
                next_tick = now + REFRESH

    def _drain(self) -> None:
        """What arrived before the stop and still waits in the kernel (a ring block not yet handed over,
        a backlog under load) belongs to the capture: take it, for up to DRAIN seconds."""
        until, idle = (self.deadline if self.ended_by == "duration" else time.time()), 0
        give_up = time.time() + DRAIN
        while time.time() < give_up and idle < 3:
            batch = self._read()
            if batch is None or self._feed(batch, until):
                break
            if not batch:
                idle += 1
                time.sleep(RETIRE_MS / 1000)
            else:
                idle = 0

    def _read(self) -> list | None:
        """The next batch of frames; None when the interface went away (the capture ends)."""
        try:
            return self.sock.read(BATCH)
        except OSError as e:
            if e.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
                click.echo(f"ikeflow: warning: {self.interface}: {os.strerror(e.errno)}; capture ended", err=True)
                self.ended_by = self.ended_by or "interface"
                return None
            raise

    def _feed(self, batch: list, until: float | None = None) -> bool:
        """Analyse (and save) a batch; True when --count is reached or a frame is later than `until`."""
        frame, linktype, writer, count = self.pipeline.frame, self.sock.linktype, self.writer, self.count
        frames, first, last, done = self.frames, self.first, self.last, False
        for sec, usec, data, wirelen in batch:
            ts = sec + usec * 1e-6
            if until is not None and ts > until:
                done = True
                break
            frames += 1
            if first is None:
                first = ts
            last = ts
            if writer:
                writer.write(sec, usec, data, wirelen)
            frame(frames, ts, linktype, data, wirelen)
            if count and frames >= count:
                self.ended_by = "count"
                done = True
                break
        self.frames, self.first, self.last = frames, first, last
        self.info.first_time, self.info.last_time = first, last
        return done

    def _event(self, event) -> None:
        if isinstance(event, MessageSeen):
            self.sink.message(event.sa, event.seen)

    def _evaluate(self, now: float) -> None:
        """Once a second: the frame rate, findings, waits, ESP flow updates."""
        t0, n0 = self._rate_mark
        if now > t0:
            self.rate = (self.frames - n0) / (now - t0)
        self._rate_mark = (now, self.frames)
        self.info.packets = self.frames
        current = set()
        for f in self.pipeline.findings():
            if f.code == "capture-ends-early":  # the capture goes on: the "waiting for ..." lines say it
                continue
            key = _finding_key(f)
            current.add(key)
            if f.code == "stall" and key not in self._shown:
                first = self._pending.setdefault(key, now)
                if now - first < STALL_GRACE:
                    continue
            if self._shown.get(key) != f.severity:  # shown again when it gets worse or better, not per retransmission
                self._shown[key] = f.severity
                self.sink.finding(f)
        self._pending = {k: v for k, v in self._pending.items() if k in current}
        for sa in list(self.model.sas.values()):
            for w in sa.owed(now):
                if w.seconds < WAIT_SHOWN:
                    continue
                mark = (w.retransmissions, sum(1 for s in WAIT_STEPS if w.seconds >= s))
                if self._waits.get(id(w.run)) != mark:
                    self._waits[id(w.run)] = mark
                    self.sink.waiting(sa, w)
        for key, f in self.model.esp.flows.items():
            last = self._esp_mark.get(key)
            if last is None or (f.packets != last[1] and now - last[0] >= 1.0):
                rate = (f.packets - last[1]) / (now - last[0]) if last else 0.0
                self._esp_mark[key] = (now, f.packets)
                self.sink.esp(f, rate)


def _finding_key(f: Finding) -> tuple:
    """The same finding from one evaluation to the next."""
    return (f.code, f.at, f.sa.ispi if f.sa else None, f.pair, f.frames[0] if f.frames else None)


# -- the command ---------------------------------------------------------------------------



def run(interface: str, extra: str | None, write: str | None, count: int | None, duration: float | None,
        as_json: bool, ike_port: int, natt_port: int, no_color: bool, backend: str | None = None,
        limits: Limits = DEFAULT, keys: KeyRing | None = None) -> int:
    """The `live` command: capture on `interface` until a stop, show read's report; the exit code."""
    from ikeflow.pipeline import Options

    expr = capture_filter(ike_port, natt_port, extra)
    sock = open_socket(backend, interface, expr)  # looked up here, in this module: a test may replace it
    writer = None
    try:
        writer = PcapWriter(write, sock.linktype) if write else None
        if as_json or not sys.stdout.isatty():
            from ikeflow.render.live_json import JsonSink

            sink = JsonSink(sys.stdout)
        else:
            from rich.console import Console

            from ikeflow.render.live_terminal import TerminalSink

            sink = TerminalSink(Console(no_color=no_color, highlight=False), wait_shown=WAIT_SHOWN, rate_every=EVALUATE)
        session = LiveRun(interface, expr, sock, sink, Options(ike_port, natt_port, limits, keys=keys), writer, count, duration)
        session.capture()
    finally:
        sock.close()
        if writer:
            writer.close()
    return session.finish().exit_code
