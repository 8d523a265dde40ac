"""`ikeflow check --json`: one document, `"schema": 1, "kind": "check"`: the ends, and per pair of conns the
findings (as `read`'s findings), the verdict and the Configuration Table. Secrets are never included."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ikeflow.diagnose.finding import ERROR
from ikeflow.render.common import Frames, finding_json

if TYPE_CHECKING:
    from ikeflow.check.command import CheckResult


def _setting(v) -> dict:
    """A setting as written (or defaulted) and where; proposals also as the suites the daemon uses."""
    out = {"value": str(v), "where": v.where}
    if hasattr(v.value, "suites"):
        out["suites"] = [s.text() for s in v.value.suites]
    return out


def _conn(c) -> dict:
    return {"name": c.name, "config": c.config.source, "daemon": c.daemon, "daemon_how": c.daemon_how,
            "settings": {k: _setting(v) for k, v in c.v.items()}}


def config_finding(c) -> dict:
    """A finding of the configurations (or of the wire against them): as read's, with its `file:line`s."""
    out = finding_json(c, str)
    if getattr(c, "lines", None):
        out["lines"] = c.lines
    if c.evidence:
        out["evidence"] = c.evidence
    return out


def config_list(note, frame) -> list[dict]:
    """`read --config`: a capture finding's `config` list: what explains it, what is ruled out, the settled cause."""
    if note is None or note.pair is None:
        return []
    out = [{"verdict": "explains", **config_finding(c), "frames": [frame(r) for r in c.frames]}
           for c in note.explained_by]
    out += [{"verdict": "rules-out", "cause": c, "why": w} for c, w in note.ruled_out]
    if note.cause:
        out.append({"verdict": "settles", "cause": note.cause})
    return out


def beside_json(res: CheckResult) -> dict:
    """`read --config --json`: the `configurations` object: each end, each pair's verdict and findings, and what the
    wire shows other than the configurations (`capture_differs`, with frames)."""
    frame = Frames(len(res.captures))
    return {
        "ends": [{"config": cfg.source, "dialect": cfg.dialect, "files": cfg.files,
                  "daemon": conns[0].daemon if conns else None,
                  "warnings": cfg.warnings + [w for c in conns for w in c.warnings]}
                 for cfg, conns in zip(res.ends, res.conns)],
        "pairs": [{"initiator": {"conn": p.init.name, "config": p.init.config.source},
                   "responder": {"conn": p.resp.name, "config": p.resp.config.source}, "ike_version": p.version,
                   "agree": not p.breaks, "findings": [config_finding(f) for f in p.findings]} for p in res.pairs],
        "unpaired": res.unpaired,
        "capture_differs": [finding_json(n.finding, frame) for n in res.notes
                            if n.finding.code == "capture-differs-from-config"],
    }


def render(res: CheckResult, schema: int) -> str:
    frame = Frames(len(res.captures))
    doc = {
        "schema": schema, "kind": "check",
        "ends": [{"config": cfg.source, "dialect": cfg.dialect, "files": cfg.files,
                  "warnings": cfg.warnings + [w for c in conns for w in c.warnings],
                  "conns": [_conn(c) for c in conns]} for cfg, conns in zip(res.ends, res.conns)],
        "pairs": [{"initiator": {"conn": p.init.name, "config": p.init.config.source},
                   "responder": {"conn": p.resp.name, "config": p.resp.config.source},
                   "ike_version": p.version, "paired_by": p.how,
                   "agree": not any(f.severity == ERROR for f in p.findings),
                   "findings": [config_finding(f) for f in p.findings],
                   "table": [{"parameter": a, "initiator": b, "responder": c, "differs": d} for a, b, c, d in p.table()]}
                  for p in res.pairs],
        "unpaired": res.unpaired,
        "captures": res.captures,
        "decrypted": res.decrypted,
        "capture_findings": [{"finding": finding_json(n.finding, frame), "paired": n.pair is not None,
                              "explained_by": [{**config_finding(c), "frames": [frame(r) for r in c.frames]}
                                               for c in n.explained_by],
                              "ruled_out": [{"cause": c, "why": w} for c, w in n.ruled_out], "causes": n.causes,
                              "cause": n.cause}
                             for n in res.notes],
        "exit_code": res.exit_code,
    }
    return json.dumps(doc, indent=2)
