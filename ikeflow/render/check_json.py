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
                   "findings": [finding_json(f, str) for f in p.findings],
                   "table": [{"parameter": a, "initiator": b, "responder": c, "differs": d} for a, b, c, d in p.table()]}
                  for p in res.pairs],
        "unpaired": res.unpaired,
        "captures": res.captures,
        "capture_findings": [{"finding": finding_json(n.finding, frame), "paired": n.pair is not None,
                              "explained_by": [finding_json(c, str) for c in n.explained_by],
                              "ruled_out": [{"cause": c, "why": w} for c, w in n.ruled_out], "causes": n.causes}
                             for n in res.notes],
        "exit_code": res.exit_code,
    }
    return json.dumps(doc, indent=2)
