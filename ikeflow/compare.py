"""`ikeflow compare A.pcap B.pcap [C.pcap ...]`: did the packets reach the peer?

Each capture goes through the same core as `read`.  IKE messages are matched between
neighbouring capture points by content (SPIs, message ID, exchange, flags, size and payload
layout are the same on both sides of a NAT; only addresses and ports change), the k-th copy
at one point with the k-th at the other.  ESP is compared per SPI (the SPI is kept across NAT).
Which point is nearer to a message's sender is read from the message itself: where it shows
up first, or, with answers, where the round trip is longer.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field

import click

from ikeflow.analysis import Analyzer
from ikeflow.capture import CaptureError, FileInfo, read_files, split_ref
from ikeflow import sequences
from ikeflow.findings import ERROR, WARNING, Finding
from ikeflow.report import ip

SCHEMA = 1


@dataclass(slots=True)
class Msg:
    """One IKE message at one capture point."""

    key: tuple  # content and sender: the same at every point the message passes
    ref: int
    time: float
    src: bytes
    dst: bytes
    sport: int
    dport: int
    label: str
    sender: str  # "I" / "R" of the IKE SA
    request: bool
    expects_answer: bool  # the expected sequence has a next step from the other side
    fragmented: bool
    ispi: bytes


def _expects_answer(version: int, exchange_type: int, label: str, request: bool) -> bool:
    ex = sequences.exchange(version, exchange_type)
    step = next((st for st in ex.steps if st.label == label and (st.sender == "I") == request), None) if ex else None
    nxt = sequences.next_step(ex, step) if step else None
    return nxt is not None and nxt.sender != step.sender


@dataclass
class Point:
    path: str
    an: Analyzer
    infos: list[FileInfo]
    msgs: list[Msg] = field(default_factory=list)


def load(path: str, ike_port: int, natt_port: int) -> Point:
    an = Analyzer(ike_port, natt_port)
    point = Point(path, an, [])

    def keep(event, obj):
        if event != "message":
            return
        sa, s = obj
        m = s.msg
        key = (m.ispi, m.rspi, m.message_id, m.exchange_type, m.flags, s.size, s.sender,
               tuple((p.type, p.length) for p in m.payloads))
        point.msgs.append(Msg(key, s.ref, s.time, s.src, s.dst, s.sport, s.dport, s.label, s.sender, s.request,
                              _expects_answer(m.version, m.exchange_type, s.label, s.request), bool(s.fragments), m.ispi))

    an.listeners.append(keep)
    for batch in read_files([path], an.esp, point.infos):
        for rec in batch:
            an.record(rec)
    an.finish(sum(i.packets for i in point.infos))
    return point


@dataclass
class Segment:
    """What happened between two neighbouring capture points A and B."""

    a: Point
    b: Point
    offset: float | None = None  # B's clock minus A's
    matched: list[tuple[Msg, Msg]] = field(default_factory=list)
    lost: list[tuple[Msg, str]] = field(default_factory=list)  # (message at the point nearer its sender, "A>B"/"B>A")
    nat: dict = field(default_factory=dict)  # (a addr, a port) -> {(b addr, b port): [first time, last time]}
    directions: dict = field(default_factory=dict)  # "A>B"/"B>A" -> sent, arrived, lost, duplicated, reordered, delay
    esp: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _copies(msgs: list[Msg]) -> dict[tuple, list[Msg]]:
    out: dict[tuple, list[Msg]] = {}
    for m in msgs:
        out.setdefault(m.key, []).append(m)
    return out


def compare_points(a: Point, b: Point) -> Segment:
    seg = Segment(a, b)
    at_a, at_b = _copies(a.msgs), _copies(b.msgs)
    for key, ms in at_a.items():
        for x, y in zip(ms, at_b.get(key, [])):
            seg.matched.append((x, y))
            for here, there in (((x.src, x.sport), (y.src, y.sport)), ((x.dst, x.dport), (y.dst, y.dport))):
                seen = seg.nat.setdefault(here, {}).setdefault(there, [x.time, x.time])
                seen[1] = x.time
    # which point is nearer to each IKE SA's initiator: where its messages show up, and the round trips
    near_i = _initiator_side(a, b, seg.matched)
    deltas = {"A>B": [], "B>A": []}
    for x, y in seg.matched:
        way = _way(x.sender, near_i.get(x.ispi, "A"))
        deltas[way].append(y.time - x.time)
    medians = [statistics.median(v) for v in deltas.values() if v]
    seg.offset = sum(medians) / len(medians) if medians else None
    span_a = _span(a)
    span_b = _span(b)
    off = seg.offset or 0.0
    for key in set(at_a) | set(at_b):
        xs, ys = at_a.get(key, []), at_b.get(key, [])
        if len(xs) == len(ys):
            continue
        sample = (xs or ys)[0]
        way = _way(sample.sender, near_i.get(sample.ispi, "A" if xs else "B"))
        sent, other_span, shift = (xs, span_b, off) if way == "A>B" else (ys, span_a, -off)
        got = ys if way == "A>B" else xs
        for m in sent[len(got):]:  # copies sent that the far point never saw, while it was capturing
            if other_span[0] <= m.time + shift <= other_span[1] + 1.0:
                seg.lost.append((m, way))
    seg.lost.sort(key=lambda t: t[0].time)
    seg.directions = _directions(seg, near_i, at_a, at_b)
    seg.esp = _esp(a, b, seg.offset or 0.0)
    seg.findings = _findings(seg, near_i)
    return seg


def _directions(seg: Segment, near_i: dict, at_a: dict, at_b: dict) -> dict:
    """Per direction: IKE messages sent, arrived, lost, duplicated (more copies arrived than were
    sent), reordered (arrived in another order than sent) and the one-way delay."""
    out = {w: {"sent": 0, "arrived": 0, "lost": 0, "duplicated": 0, "reordered": 0, "delay": None} for w in ("A>B", "B>A")}
    for key in set(at_a) | set(at_b):
        xs, ys = at_a.get(key, []), at_b.get(key, [])
        sample = (xs or ys)[0]
        way = _way(sample.sender, near_i.get(sample.ispi, "A"))
        sent, got = (xs, ys) if way == "A>B" else (ys, xs)
        d = out[way]
        d["sent"] += len(sent)
        d["arrived"] += min(len(sent), len(got))
        d["duplicated"] += max(0, len(got) - len(sent))
    for m, way in seg.lost:
        out[way]["lost"] += 1
    off = seg.offset or 0.0
    for way in out:
        pairs = sorted(((x, y) for x, y in seg.matched if _way(x.sender, near_i.get(x.ispi, "A")) == way),
                       key=lambda p: (p[0] if way == "A>B" else p[1]).time)
        arrival = [(y if way == "A>B" else x).time for x, y in pairs]
        out[way]["reordered"] = sum(1 for t, u in zip(arrival, arrival[1:]) if u < t)
        delays = [(y.time - x.time - off) * (1 if way == "A>B" else -1) for x, y in pairs]
        if delays and seg.offset is not None:
            out[way]["delay"] = {"min": round(min(delays), 6), "median": round(statistics.median(delays), 6),
                                 "max": round(max(delays), 6)}
    return out


def _span(p: Point) -> tuple[float, float]:
    """When the point was capturing; an empty capture is taken to have run the whole time."""
    times = [t for i in p.infos for t in (i.first_time, i.last_time) if t is not None]
    return (min(times), max(times)) if times else (float("-inf"), float("inf"))


def _way(sender: str, initiator_side: str) -> str:
    """The direction a message from `sender` ("I"/"R") crosses the segment."""
    from_a = (sender == "I") == (initiator_side == "A")
    return "A>B" if from_a else "B>A"


def _initiator_side(a: Point, b: Point, matched) -> dict[bytes, str]:
    """Per IKE SA, the point ("A"/"B") nearer to its initiator."""
    out: dict[bytes, str] = {}
    seen_a = {m.ispi for m in a.msgs}
    seen_b = {m.ispi for m in b.msgs}
    by_sa: dict[bytes, list] = {}
    for x, y in matched:
        by_sa.setdefault(x.ispi, []).append((x, y))
    for ispi in seen_a | seen_b:
        pairs = by_sa.get(ispi, [])
        requests = [(x, y) for x, y in pairs if x.sender == "I"]
        answers = [(x, y) for x, y in pairs if x.sender == "R"]
        if requests and answers:  # the round trip is longer at the point nearer the initiator
            rtt_a = answers[0][0].time - requests[0][0].time
            rtt_b = answers[0][1].time - requests[0][1].time
            out[ispi] = "A" if rtt_a >= rtt_b else "B"
        else:
            first_a = min((m.time for m in a.msgs if m.ispi == ispi and m.sender == "I"), default=None)
            first_b = min((m.time for m in b.msgs if m.ispi == ispi and m.sender == "I"), default=None)
            if first_b is None or (first_a is not None and len([m for m in a.msgs if m.ispi == ispi and m.sender == "I"])
                                   >= len([m for m in b.msgs if m.ispi == ispi and m.sender == "I"])):
                out[ispi] = "A"
            else:
                out[ispi] = "B"
    return out


def _esp(a: Point, b: Point, offset: float) -> list[dict]:
    """ESP per SPI at both points (the SPI survives NAT; addresses may not), and how many packets
    the point nearer the sender saw that the other did not."""
    fa = {(f.spi, f.encap): f for f in a.an.esp.flows.values()}
    fb = {(f.spi, f.encap): f for f in b.an.esp.flows.values()}
    out = []
    for key in sorted(set(fa) | set(fb)):
        x, y = fa.get(key), fb.get(key)
        lost = 0
        if x and y:
            up, down = (x, y) if x.first_time <= y.first_time - offset else (y, x)
            lost = max(0, up.packets - down.packets)
        out.append({"spi": f"{key[0]:08x}", "encap": key[1], "a": _flow(x), "b": _flow(y), "lost": lost})
    return out


def _flow(f) -> dict | None:
    if f is None:
        return None
    return {"src": ip(f.src), "dst": ip(f.dst), "packets": f.packets, "seq_min": f.seq_min, "seq_max": f.seq_max,
            "first_frame": split_ref(f.first_frame)[1], "first_time": f.first_time}


def _findings(seg: Segment, near_i: dict) -> list[Finding]:
    out: list[Finding] = []
    names = {"A>B": f"from {seg.a.path} to {seg.b.path}", "B>A": f"from {seg.b.path} to {seg.a.path}"}
    groups: dict[tuple, list] = {}
    for m, way in seg.lost:
        groups.setdefault((m.ispi, m.label, way, m.request), []).append(m)
    arrived = {(x.ispi, x.label, x.sender) for x, _ in seg.matched}
    for (ispi, label, way, request), ms in groups.items():
        total = sum(1 for x, _ in seg.matched if x.ispi == ispi and x.label == label and x.sender == ms[0].sender)
        source = seg.a if way == "A>B" else seg.b
        sent = sum(1 for m in source.msgs if m.ispi == ispi and m.label == label and m.sender == ms[0].sender)
        if (ispi, label, ms[0].sender) in arrived and total:
            severity, what = WARNING, f"{len(ms)} of {len(ms) + total} copies of {label} lost"
        else:
            severity = ERROR
            what = f"{label} sent {sent} time{'s' if sent > 1 else ''}, none arrived"
            if sent > len(ms):
                what += f" ({len(ms)} sent while both points were capturing)"
        earlier_500 = any(x.ispi == ispi and 4500 not in (x.sport, x.dport) for x, _ in seg.matched)
        if ms[0].fragmented:
            causes = ["fragments-dropped", "path-blocked"]
        elif 4500 in (ms[0].sport, ms[0].dport) and earlier_500:
            causes = ["udp4500-blocked", "path-blocked"]
        elif request:
            causes = ["path-blocked"]
        else:
            causes = ["reply-path-lost"]
        empty = [p.path for p in (seg.a, seg.b) if not p.infos or not sum(i.packets for i in p.infos)]
        note = f"; nothing at all was captured at {empty[0]}" if empty else ""
        out.append(Finding(severity, "lost-between-points", label,
                           f"{what} {names[way]}: lost between the capture points ({'IP-fragmented, ' if ms[0].fragmented else ''}"
                           f"UDP {ms[0].dport}){note}", _HINT[causes[0]], [m.ref for m in ms], causes))
    # requests that arrived and were never answered beyond the segment
    for x, y in seg.matched:
        if not x.expects_answer:
            continue
        far = y if _way(x.sender, near_i.get(x.ispi, "A")) == "A>B" else x
        far_point = seg.b if far is y else seg.a
        answered = any(m.ispi == far.ispi and m.time > far.time and m.sender != far.sender for m in far_point.msgs)
        if not answered and not any(m is x or m is y for m, _ in seg.lost):
            label_runs = [f for f in out if f.at == x.label and f.code == "unanswered-after-arrival"]
            if label_runs:
                label_runs[0].frames.append(far.ref)
                continue
            icmp = [e for pair in far_point.an.pairs.values() for e in pair.icmp]
            causes = ["peer-down"] if icmp else ["peer-ignores"]
            out.append(Finding(ERROR, "unanswered-after-arrival", x.label,
                               f"{x.label} arrived at {far_point.path} and was never answered there"
                               + (f" (ICMP {icmp[0].text})" if icmp else ""),
                               _HINT[causes[0]], [far.ref], causes))
    for e in seg.esp:
        xa, yb = e["a"], e["b"]
        if xa and yb:
            if e["lost"]:
                out.append(Finding(WARNING, "lost-between-points", "ESP",
                                   f"ESP SPI {e['spi']}: {e['lost']} of {max(xa['packets'], yb['packets'])} packets lost "
                                   f"between the capture points", "Loss or a policer between the points.",
                                   [xa["first_frame"]], []))
            continue
        f = xa or yb
        here = seg.a.path if xa else seg.b.path
        there = seg.b.path if xa else seg.a.path
        lo, hi = _span(seg.b) if xa else _span(seg.a)
        if lo <= f["first_time"] <= hi + 1:
            out.append(Finding(ERROR, "lost-between-points", "ESP",
                               f"ESP SPI {e['spi']} {f['src']} -> {f['dst']}: {f['packets']} packets at {here}, none at {there}",
                               _HINT["esp-blocked"], [f["first_frame"]], ["esp-blocked"]))
    return out


_HINT = {
    "path-blocked": "A filter between the two capture points drops it: check UDP 500/4500 rules there.",
    "reply-path-lost": "The answer is lost on the way back between the capture points: return routes, firewall or NAT state.",
    "udp4500-blocked": "UDP 4500 is dropped between the capture points after the NAT-T float.",
    "fragments-dropped": "IP fragments are dropped between the capture points: fix the MTU or enable IKE fragmentation.",
    "peer-ignores": "The message reaches the peer's side, which stays silent: its log says why (no matching connection?).",
    "peer-down": "The message reaches the peer's host, which answers with ICMP: is the IKE daemon running?",
    "esp-blocked": "ESP is dropped between the capture points in this direction: check protocol 50 / UDP 4500 rules.",
}


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="A.pcap B.pcap [C.pcap ...]")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (schema 1, kind compare).")
@click.option("--ike-port", default=500, show_default=True, type=click.IntRange(1, 65535))
@click.option("--natt-port", default=4500, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-color", is_flag=True, help="No colours, even on a terminal.")
def compare(files, as_json, ike_port, natt_port, no_color) -> None:
    """Match the IKE messages and ESP of captures taken at several points along a path.

    \b
      ikeflow compare local.pcap remote.pcap
      ikeflow compare gw-a.pcap firewall.pcap gw-b.pcap

    Names what was sent and never arrived between neighbouring points (with the frames on
    both sides), what arrived and was never answered, the NAT mappings between the points
    and their clock offset.  Exit codes as `ikeflow read`.
    """
    if len(files) < 2:
        raise click.UsageError("compare needs at least two captures")
    from ikeflow.cli import run_command

    run_command(_compare, list(files), as_json, ike_port, natt_port, no_color, usage_errors=(CaptureError,))


def _compare(files, as_json, ike_port, natt_port, no_color) -> int:
    points = [load(f, ike_port, natt_port) for f in files]
    segments = [compare_points(x, y) for x, y in zip(points, points[1:])]
    if as_json:
        json.dump(document(segments), sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        render(segments, no_color)
    return 1 if any(f.severity == ERROR for s in segments for f in s.findings) else 0


def document(segments: list[Segment]) -> dict:
    return {
        "schema": SCHEMA, "kind": "compare",
        "points": [p.path for p in [segments[0].a] + [s.b for s in segments]],
        "segments": [{
            "a": s.a.path, "b": s.b.path,
            "clock_offset": s.offset,
            "matched": len(s.matched),
            "messages": [{"label": x.label, "a_frame": split_ref(x.ref)[1], "b_frame": split_ref(y.ref)[1],
                          "delay": None if s.offset is None else round(y.time - x.time - s.offset, 6)}
                         for x, y in sorted(s.matched, key=lambda p: p[0].time)],
            "lost": [{"label": m.label, "direction": way, "frame": split_ref(m.ref)[1],
                      "file": s.a.path if way == "A>B" else s.b.path} for m, way in s.lost],
            "directions": s.directions,
            "nat_mappings": [{"a": f"{ip(k[0])}:{k[1]}", "b": f"{ip(v[0])}:{v[1]}", "first_time": t[0], "last_time": t[1]}
                             for k, vs in s.nat.items() for v, t in sorted(vs.items(), key=lambda i: i[1]) if v != k],
            "fragments_incomplete": [{"file": p.path, "frames": [split_ref(r)[1] for r in d["frames"]], "bytes": d["bytes"]}
                                     for p in (s.a, s.b) for d in p.an.reassembler.incomplete],
            "icmp_one_side": _icmp_one_side(s),
            "esp": s.esp,
            "findings": [{"severity": f.severity, "code": f.code, "at": f.at, "causes": f.causes,
                          "frames": [split_ref(r)[1] for r in f.frames], "summary": f.summary, "hint": f.hint}
                         for f in s.findings],
        } for s in segments],
    }


def _icmp_one_side(s: Segment) -> list[dict]:
    """ICMP errors about IKE/ESP at one point that the other point did not see (as many of the same kind)."""
    def events(p):
        return [e for pair in p.an.pairs.values() for e in pair.icmp]

    out = []
    ea, eb = events(s.a), events(s.b)
    for here, there, path in ((ea, eb, s.a.path), (eb, ea, s.b.path)):
        kinds: dict[str, int] = {}
        for e in there:
            kinds[e.text] = kinds.get(e.text, 0) + 1
        for e in here:
            if kinds.get(e.text, 0):
                kinds[e.text] -= 1
            else:
                out.append({"file": path, "frame": split_ref(e.ref)[1], "error": e.text, "from": ip(e.src)})
    return out


def render(segments: list[Segment], no_color: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(no_color=no_color, highlight=False)
    for s in segments:
        offset = "unknown" if s.offset is None else f"{s.offset * 1000:+.1f} ms"
        console.print(f"[bold]{s.a.path}[/bold] ⇄ [bold]{s.b.path}[/bold]   clock offset {offset}, "
                      f"{len(s.matched)} IKE messages seen at both points, {len(s.lost)} lost between them")
        t = Table(box=None, pad_edge=False)
        for col in ("time", "message", f"at {s.a.path}", f"at {s.b.path}"):
            t.add_column(col)
        rows = [(x.time, x.label, str(split_ref(x.ref)[1]), str(split_ref(y.ref)[1])) for x, y in s.matched]
        rows += [(m.time, m.label, str(split_ref(m.ref)[1]) if way == "A>B" else "LOST",
                  "LOST" if way == "A>B" else str(split_ref(m.ref)[1])) for m, way in s.lost]
        t0 = min((r[0] for r in rows), default=0.0)
        for r in sorted(rows):
            t.add_row(f"{r[0] - t0:.3f}", r[1], r[2], r[3], style="red" if "LOST" in r[2:] else "")
        console.print(t)
        for k, vs in s.nat.items():
            for v in vs:
                if v != k:
                    console.print(f"NAT: {ip(k[0])}:{k[1]} at {s.a.path} is {ip(v[0])}:{v[1]} at {s.b.path}")
        for way, d in s.directions.items():
            if d["sent"]:
                delay = f", delay median {d['delay']['median'] * 1000:.1f} ms" if d["delay"] else ""
                console.print(f"IKE {way}: {d['sent']} sent, {d['arrived']} arrived, {d['lost']} lost, "
                              f"{d['duplicated']} duplicated, {d['reordered']} reordered{delay}")
        for e in s.esp:
            a, b = e["a"]["packets"] if e["a"] else 0, e["b"]["packets"] if e["b"] else 0
            console.print(f"ESP SPI {e['spi']}: {a} packets at {s.a.path}, {b} at {s.b.path}")
        for f in s.findings:
            console.print(f"{f.severity.upper():8}{f.code} [{f.at}]: {f.summary}. Causes: {', '.join(f.causes)}.")
        if not s.findings:
            console.print("[green]Everything sent in the overlap of the two captures arrived.[/green]")
        console.print()
