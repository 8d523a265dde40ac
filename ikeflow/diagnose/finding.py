"""A finding: one abnormal thing in a capture, its severity, evidence and likely causes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ikeflow.model.ikesa import IkeSa

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass
class Finding:
    severity: str
    code: str
    at: str  # a message label, "ESP", "NAT-T", "IP" or "capture"
    summary: str
    hint: str = ""
    frames: list[int] = field(default_factory=list)  # capture.frame_ref values
    causes: list[str] = field(default_factory=list)  # names from diagnose.causes.CAUSES, most likely first
    sa: IkeSa | None = None
    pair: tuple[bytes, bytes] | None = None  # peer pair key
    evidence: str = ""  # "decrypted" when decrypted payloads decided the cause


def merge_alike(found: list[Finding]) -> Finding:
    """The first of alike findings of one peer pair's IKE SAs, counting the others and taking their frames."""
    f = found[0]
    if len(found) > 1:
        f.summary += f" (and {len(found) - 1} more IKE SA{'s' if len(found) > 2 else ''} between these peers alike)"
        f.frames = sorted({x for g in found for x in g.frames})[:20]
    return f


def times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def duration(seconds: float) -> str:
    """A short span as an admin reads it: "120 ms" below 10 s, else "42.0 s"."""
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
