"""`ikeflow live` as JSON lines (for pipes): one object per event as it happens.

    {"event": "start", ...}      interface, link type, backend, filter, time
    {"event": "message", ...}    an IKE message: the object of read's `messages[]`
    {"event": "finding", ...}    read's finding object; "code": "waiting" for an unanswered message
    {"event": "esp", ...}        read's `esp_flows[]` object and "rate" (at most once a second per flow)
    {"event": "capture", ...}    at the end: packets, kernel drops, seconds, CPU seconds, ended_by
    {"event": "report", "report": {...}}   the `ikeflow read --json` document
"""

from __future__ import annotations

import json

from ikeflow.model.events import MessageSeen
from ikeflow.render.common import Frames, finding_json, flow_json, message_json
from ikeflow.render.read_json import MessageSpool, build, write


class JsonSink:
    """One JSON object per line per event; the messages are also spooled for the final report."""

    def __init__(self, out):
        self.out = out
        self.frame = Frames(1)
        self.spool = MessageSpool(1)

    def emit(self, obj: dict) -> None:
        self.out.write(json.dumps(obj) + "\n")

    def start(self, run) -> None:
        self.emit({"event": "start", "interface": run.interface, "linktype": run.info.linktypes[0],
                   "backend": run.sock.name, "filter": run.expr, "time": run.started})
        self.out.flush()

    def message(self, sa, seen) -> None:
        self.out.write('{"event":"message",' + message_json(sa, seen, self.frame, False)[1:] + "\n")
        self.spool.add(MessageSeen(sa, seen))

    def finding(self, f) -> None:
        self.emit({"event": "finding", **finding_json(f, self.frame)})

    def waiting(self, sa, w) -> None:
        self.emit({"event": "finding", "severity": "error" if w.stalled else "warning", "code": "waiting",
                   "at": w.last.label, "causes": [], "frames": [self.frame(m.ref) for m in w.sends],
                   "summary": w.text, "hint": "", "ispi": sa.ispi.hex(), "next": w.wanted,
                   "seconds": round(w.seconds, 1), "retransmissions": w.retransmissions, "live": True})

    def esp(self, f, rate: float) -> None:
        self.emit({"event": "esp", **flow_json(f, self.frame), "rate": round(rate, 1)})

    def tick(self, run, now: float) -> None:
        self.out.flush()

    def stop(self) -> None:
        self.out.flush()

    def report(self, run, result, unshown) -> None:
        for f in unshown:
            self.finding(f)
        self.emit({"event": "capture", "interface": run.interface, "packets": run.frames,
                   "kernel_drops": run.sock.drops, "seconds": round(run.elapsed, 3),
                   "cpu_seconds": round(run.cpu, 3), "ended_by": run.ended_by})
        self.out.write('{"event":"report","report":')
        write(self.out, build(result.model, result.infos, result.findings, result.verdicts), self.spool, end="}\n")
        self.out.flush()
