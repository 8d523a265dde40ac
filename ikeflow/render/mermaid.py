"""`--mermaid FILE`: each IKE SA's ladder as a Mermaid sequence diagram, for pasting into tickets
and Markdown (GitHub, GitLab and most wikis draw ```mermaid blocks).

    read_mermaid(result, *, utc=False) -> str   # Markdown: per IKE SA a heading and a ```mermaid block

Participants are the initiator and responder by address:port; one arrow per message with its
label and time since the SA's first message (requests ->>, responses -->>, a retransmission -),
a message with an error notify or a malformed one ends in x); notes mark retransmissions and the
stall.  Text from the capture is written with Mermaid's entity codes (#35; for #, #59; for ;):
Mermaid's sequence grammar ends a message at # or ;, and %% starts a comment
(mermaid-js/mermaid packages/mermaid/src/diagrams/sequence/parser/sequenceDiagram.jison).
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from ikeflow.diagnose.finding import Finding
from ikeflow.diagnose.findings import first_errors
from ikeflow.model.ikesa import IkeSa, Seen
from ikeflow.model.sequences import is_error_notify
from ikeflow.render.common import endpoint, headline, ip, stamp
from ikeflow.render.html import sort_findings, stall_point

if TYPE_CHECKING:
    from ikeflow.pipeline import Result

MAX_ARROWS = 200  # messages drawn per IKE SA before eliding the middle
MAX_DIAGRAMS = 300  # IKE SAs drawn (a flood of SAs: the first ones)

# Characters Mermaid would read as syntax or markup, and the Markdown fence's backtick, as entity codes.
ENTITIES = str.maketrans({"#": "#35;", ";": "#59;", "%": "#37;", "<": "#lt;", ">": "#gt;", "&": "#amp;",
                          "`": "#96;", "\n": " ", "\r": " ", "\t": " "})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def text(s) -> str:
    """Capture text made safe for a Mermaid message, note, title or participant name.  Mermaid first drops
    the last ; of a line holding `style…:…#` or `classDef…:…#` (encodeEntities in mermaidAPI.ts): one
    letter of those words is written as a code too."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(s)).translate(ENTITIES).strip() or "-"
    return out.replace("style", "#115;tyle").replace("classDef", "#99;lassDef")


def _prose(s: str) -> str:
    """Text for the Markdown around the blocks: one line, markup and backticks as HTML entities."""
    return " ".join(html.escape(s, quote=False).replace("`", "&#96;").split())


def read_mermaid(result: Result, *, utc: bool = False) -> str:
    """Markdown with one Mermaid sequenceDiagram per IKE SA, grouped by peer pair under its headline and
    verdict."""
    out = []
    _, of_sa = sort_findings(result.model, result.findings)
    errors = first_errors(result.model, result.findings)
    drawn = 0
    for key, pair in result.model.pairs.items():
        if not pair.sas or drawn >= MAX_DIAGRAMS:
            continue
        verdict = result.verdicts.get(key, "")
        out.append(f"## {ip(pair.a)} ⇄ {ip(pair.b)}\n\n**{_prose(headline(pair, verdict, errors.get(key)))}**\n\n"
                   f"{_prose(verdict)}\n")
        for sa in pair.sas[:MAX_DIAGRAMS - drawn]:
            start = stamp(sa.messages[0].time, utc) if sa.messages else "unknown"
            out.append(f"### IKEv{sa.version} SA {sa.ispi.hex()}/{sa.rspi.hex()}, started {start}\n")
            out.append("```mermaid\n" + diagram(sa, of_sa.get(id(sa), []), start) + "```\n")
            drawn += 1
    total = sum(len(p.sas) for p in result.model.pairs.values())
    if total > drawn:
        out.append(f"({total - drawn} more IKE SAs not drawn: the first {MAX_DIAGRAMS} are.)\n")
    return "\n".join(out) if out else "No IKE SA in this capture.\n"


def diagram(sa: IkeSa, found: list[Finding], start: str) -> str:
    """One IKE SA as a sequenceDiagram (the text inside the fence)."""
    lines = ["sequenceDiagram",
             f"    title {text(f'IKEv{sa.version} SA {sa.ispi.hex()}, started {start}')}",
             f"    participant I as {text(f'initiator {endpoint(sa.initiator)}')}",
             f"    participant R as {text(f'responder {endpoint(sa.responder)}')}"]
    msgs = sa.messages
    stall = stall_point(sa, found)
    t0 = msgs[0].time if msgs else 0.0
    shown = list(enumerate(msgs))
    if len(shown) > MAX_ARROWS:
        shown = shown[: MAX_ARROWS // 2] + [None] + shown[-MAX_ARROWS // 2:]
    for item in shown:
        if item is None:
            lines.append(f"    Note over I,R: {len(msgs) - MAX_ARROWS} more messages, not drawn")
            continue
        k, m = item
        lines.append("    " + _arrow(m, t0))
        if m.retransmission:
            lines.append(f"    Note over {m.sender}: retransmission")
        if stall is not None and k == stall[0]:
            f = stall[1]
            why = f"likely {f.causes[0]}" if f.causes else f.code
            lines.append(f"    Note over I,R: {text(f'stall at {f.at}: {why}')}")
    return "\n".join(lines) + "\n"


def _arrow(m: Seen, t0: float) -> str:
    msg = m.msg
    errors = [n for t, n in msg.notifies if is_error_notify(msg.version, t)]
    label = m.label + "".join(f" N({n})" for n in errors) + (f" retry:{m.retry}" if m.retry else "")
    if msg.malformed:
        label += " MALFORMED"
    head = "x" if errors or msg.malformed else ")" if m.retransmission else ">>"
    line = "-" if m.request else "--"
    a, b = ("I", "R") if m.sender == "I" else ("R", "I")
    dt = max(m.time - t0, 0.0)
    return f"{a}{line}{head}{b}: {text(label)} +{dt:.3f} s"
