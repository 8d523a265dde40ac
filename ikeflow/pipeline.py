"""The one pipeline that `read`, `live`, `compare` and the tests run.

    sources (capture files, a live socket) -> decode -> model -> diagnose

    result = pipeline.read_captures(["tun.pcap"])        # files, as one timeline
    p = Pipeline(options); p.frame(...); p.conclude()   # frame by frame (live)

`Result` carries the model (peer pairs, IKE SAs, ESP flows), the per-file
facts, the findings, the verdicts and the exit code; renderers read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ikeflow import EXIT_FINDINGS, EXIT_OK
from ikeflow.diagnose.finding import ERROR, Finding
from ikeflow.diagnose.findings import find, verdicts
from ikeflow.limits import DEFAULT, Limits
from ikeflow.model.analysis import Analyzer
from ikeflow.sources.capture import (CUT_KEPT, FAST, FileInfo, Previous, Record, fast_esp, read_files,
                                     split_ref)

if TYPE_CHECKING:
    from ikeflow.keys import KeyRing

COPY = "duplicate frame (the same packet captured twice)"  # the `skipped` reason of a copy the reader dropped
FILTERED = "not kept by --filter"  # the `skipped` reason of a frame `keep` refused


@dataclass(frozen=True)
class Options:
    ike_port: int = 500
    natt_port: int = 4500
    limits: Limits = DEFAULT
    keys: KeyRing | None = None  # --keys: IKE (and ESP) keys to decrypt with; None reads as before


@dataclass
class Result:
    model: Analyzer
    infos: list[FileInfo]
    findings: list[Finding] = field(default_factory=list)
    verdicts: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """1 when at least one finding is an error, else 0."""
        return EXIT_FINDINGS if any(f.severity == ERROR for f in self.findings) else EXIT_OK


class Pipeline:
    """Frames in (from files or a live socket), a `Result` out.

    `listeners` get the model's events as they happen (see model.events).
    """

    def __init__(self, options: Options = Options(), listeners: Iterable[Callable] = ()):
        self.options = options
        self.model = Analyzer(options.ike_port, options.natt_port, options.limits, options.keys)
        self.model.listeners.extend(listeners)
        self.infos: list[FileInfo] = []
        self._fast = None
        self._previous: Previous | None = None  # live: the frame before

    def read(self, paths: list[str], esp_fast: bool = True, progress: Callable | None = None,
             keep: Callable[[int, bytes], bool] | None = None) -> None:
        """Every frame of the capture files, merged on time; `progress(infos)` after each batch.

        With `esp_fast`, one file's plain ESP is counted by the reader itself (no
        per-packet event).  `keep(linktype, frame)` (read --filter, sources.bpf.FrameFilter): only
        the frames it keeps are analysed, the others are counted as skipped (FILTERED), and the
        fast path is off.  Raises sources.capture.CaptureError on unreadable input.
        """
        records = self.model.records
        filtered = 0
        fast = esp_fast and keep is None and self.model.esp_inner is None  # ESP keys: every packet is opened
        for batch in read_files(paths, self.model.esp if fast else None, self.infos):
            if keep is not None:
                kept = [rec for rec in batch if keep(rec.linktype, rec.data)]
                filtered += len(batch) - len(kept)
                batch = kept
            for rec in batch:
                if len(rec.data) < rec.wirelen:
                    self._cut(rec.ref)
            records(batch)
            if progress:
                progress(self.infos)
        self._skip_copies(sum(info.quality.copies for info in self.infos))
        if filtered:  # frames read --filter did not keep: counted, not lost
            self.model.stats.skipped += filtered
            self.model.skipped[FILTERED] += filtered

    def source(self, info: FileInfo) -> None:
        """A live source: its frames come through `frame`."""
        self.infos.append(info)
        self._fast = FAST.get(info.linktypes[0]) if self.model.esp_inner is None else None
        self._previous = Previous(info.quality)

    def frame(self, ref: int, ts: float, linktype: int, data: bytes, wirelen: int) -> None:
        """One frame of a live source (plain ESP takes the reader's fast path; a copy of the frame before
        is dropped, as the file reader does)."""
        if self._previous.copy(ref, ts, linktype, data, 0, len(data), wirelen):
            self._skip_copies(1)
        elif not (self._fast and fast_esp(data, 0, len(data), self._fast, self.model.esp, ts, ref)):
            if len(data) < wirelen:
                self._cut(ref)
            self.model.record(Record(ref, ts, linktype, data, wirelen))

    def _cut(self, ref: int) -> None:
        """Remember a cut frame that the model decodes: its damage is the capture's, not the path's."""
        cut = self.infos[split_ref(ref)[0]].quality.cut_decoded
        if len(cut) < CUT_KEPT:
            cut.add(ref)

    def _skip_copies(self, n: int) -> None:
        """Copies are frames too: counted as skipped, so that the stats still add up."""
        if n:
            self.model.stats.skipped += n
            self.model.skipped[COPY] += n

    def finish(self) -> Analyzer:
        """No more frames: close the model's books."""
        self.model.finish(sum(i.packets for i in self.infos))
        return self.model

    def findings(self) -> list[Finding]:
        """The findings on the model so far (also while a live capture runs)."""
        return find(self.model, self.infos)

    def diagnose(self) -> Result:
        """Findings and verdicts on the model as it is."""
        found = self.findings()
        return Result(self.model, self.infos, found, verdicts(self.model, found))

    def conclude(self) -> Result:
        self.finish()
        return self.diagnose()


def read_captures(paths: list[str], options: Options = Options(), listeners: Iterable[Callable] = ()) -> Result:
    """Capture files, analysed and diagnosed."""
    p = Pipeline(options, listeners)
    p.read(paths)
    return p.conclude()
