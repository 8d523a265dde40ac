"""Narrowing a report to some peers (`--peer`) and to findings of a severity and above (`--severity`),
before it is rendered, so that the terminal, JSON and HTML outputs show the same.

The views are shallow copies: the capture's counts (packets, stats) stay those of the whole capture.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
from typing import TYPE_CHECKING

from ikeflow.diagnose.finding import ERROR, INFO, WARNING, Finding
from ikeflow.model.analysis import Analyzer
from ikeflow.model.esp import Flows
from ikeflow.model.events import pair_key

if TYPE_CHECKING:
    from ikeflow.compare.comparison import Comparison

LEVELS = (ERROR, WARNING, INFO)  # --severity LEVEL keeps LEVEL and those before it


def peer_networks(values: list[str]) -> list:
    """`--peer` values (addresses or networks) as networks; ValueError names a bad one."""
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v.strip("[]"), strict=False))
        except ValueError:
            raise ValueError(f"--peer {v}: not an IPv4/IPv6 address or network") from None
    return out


class Narrowing:
    """Which peers and severities to keep: `peers` networks (none: all), `severity` a LEVELS name or None."""

    def __init__(self, peers: list | None = None, severity: str | None = None):
        self.peers = peers or []
        self.levels = set(LEVELS[: LEVELS.index(severity) + 1]) if severity else set(LEVELS)

    def __bool__(self) -> bool:
        return bool(self.peers) or len(self.levels) < len(LEVELS)

    def __str__(self) -> str:
        """The options as given ("--peer 203.0.113.7 --severity warning"), "" for none."""
        levels = [level for level in LEVELS if level in self.levels]
        return " ".join([f"--peer {n.network_address if n.num_addresses == 1 else n}" for n in self.peers]
                        + ([f"--severity {levels[-1]}"] if len(levels) < len(LEVELS) else []))

    def address(self, raw: bytes | None) -> bool:
        if not self.peers:
            return True
        if not raw:
            return False
        a = ipaddress.ip_address(raw)
        return any(a in n for n in self.peers)

    def listener(self, add):
        """`add` (a model listener) told only of events about kept peer pairs, or of none."""
        if not self.peers:
            return add

        def narrowed(event) -> None:
            sa = getattr(event, "sa", None)
            if sa is None or self.pair((sa.initiator[0], sa.responder[0])):
                add(event)
        return narrowed

    def pair(self, key) -> bool:
        return not self.peers or any(self.address(a) for a in key)

    def finding(self, f: Finding) -> bool:
        """Of a kept severity, and about a kept pair (findings about the whole capture are kept)."""
        if f.severity not in self.levels:
            return False
        key = pair_key(f.sa.initiator[0], f.sa.responder[0]) if f.sa is not None else f.pair
        return key is None or self.pair(key)

    def read(self, an: Analyzer, findings: list[Finding], verdicts: dict) -> tuple[Analyzer, list[Finding], dict]:
        """`read`'s model, findings and verdicts, narrowed."""
        found = [f for f in findings if self.finding(f)]
        if not self.peers:
            return an, found, verdicts
        view = copy.copy(an)
        view.pairs = {k: p for k, p in an.pairs.items() if self.pair(k)}
        view.sas = {k: sa for k, sa in an.sas.items() if self.pair((sa.initiator[0], sa.responder[0]))}
        view.esp, view.ah = self._flows(an.esp), self._flows(an.ah)
        return view, found, {k: v for k, v in verdicts.items() if k in view.pairs}

    def _flows(self, table):
        view = copy.copy(table)
        view.flows = Flows((k, f) for k, f in table.flows.items() if self.pair((f.src, f.dst)))
        return view

    def compare(self, cmp: Comparison) -> Comparison:
        """`compare`'s results, narrowed: conversations with a kept peer at some point, and their findings."""
        if not self:
            return cmp
        view = copy.copy(cmp)
        view.segments = []
        for seg in cmp.segments:
            s = copy.copy(seg)
            kept = {old: new for new, old in enumerate(i for i, c in enumerate(seg.convs) if self._conv(c))}
            s.convs = [seg.convs[i] for i in kept]
            s.elsewhere = [c for c in seg.elsewhere if self._conv(c)]
            s.nat = [dataclasses.replace(m, conv=kept[m.conv]) for m in seg.nat if m.conv in kept]  # conv: an index
            s.findings = [f for f in seg.findings if self.finding(f)]
            view.segments.append(s)
        return view

    def _conv(self, conv) -> bool:
        return not self.peers or any(self.pair(k) for keys in conv.pairs.values() for k in keys)
