"""`ikeflow compare --json`: one document, schema 1, kind "compare" (documented in README.md)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from ikeflow import __version__
from ikeflow.render.common import endpoint, finding_json, ip
from ikeflow.sources.capture import split_ref

if TYPE_CHECKING:
    from ikeflow.compare.comparison import Comparison
    from ikeflow.compare.points import Msg
    from ikeflow.compare.segment import EspSa, Segment

MAX_LISTED = 1000  # matched frame pairs listed per direction


def frame(ref: int) -> list[int]:
    """A frame_ref as [point, frame number]."""
    p, n = split_ref(ref)
    return [p, n]


def build(cmp: Comparison) -> dict:
    """The JSON document (schema 1, kind "compare"), documented in README.md."""
    offsets = cmp.offsets()
    doc = {
        "schema": 1,
        "kind": "compare",
        "tool": {"name": "ikeflow", "version": __version__},
        "points": [{"index": p.index, "file": p.path, "packets": p.packets, "first_time": p.first_time,
                    "last_time": p.last_time, "clock_offset": offsets[p.index],
                    "warning": p.infos[0].warning if p.infos else None, "stats": vars(p.an.stats).copy()}
                   for p in cmp.points],
        "clock_offset": cmp.segments[0].clock.offset if cmp.segments else None,
        "segments": [{"points": list(s.points), "clock_offset": s.clock.offset, "method": s.clock.method,
                      "matches": s.clock.matches, "one_way": s.clock.one_way} for s in cmp.segments],
        "pairs": [],
        "nat_mappings": [],
        "fragments_incomplete": [],
        "icmp_one_side": [],
    }
    for s in cmp.segments:
        doc["pairs"] += _pairs(s)
        for m in s.nat:
            conv = s.convs[m.conv]
            near = conv.init_side if m.endpoint == "I" else s.other(conv.init_side).index
            doc["nat_mappings"].append({
                "segment": list(s.points), "endpoint": "initiator" if m.endpoint == "I" else "responder",
                "inside_point": near, "inside": endpoint(m.inside), "port": m.kind,
                "outside": [{"address": endpoint(o), "first_time": v.first_time, "last_time": v.last_time,
                             "messages": v.count, "frames": [frame(r) for r in v.frames]}
                            for o, v in m.outside],
                "changed": len(m.outside) > 1,
            })
        for fr in s.fragments:
            m = fr.message
            doc["fragments_incomplete"].append({
                "segment": list(s.points), "point": fr.point, "frames": [frame(r) for r in fr.frames],
                "src": ip(fr.src), "dst": ip(fr.dst), "bytes": fr.bytes, "has_first": fr.has_first,
                "time": fr.first_time, "message": _message(s, m) if m else None})
        for e in s.icmp_one_side:
            ev = e.event
            doc["icmp_one_side"].append({
                "segment": list(s.points), "point": e.point, "frame": frame(s.point(e.point).ref(ev.ref)),
                "time": ev.time, "from": ip(ev.src), "error": ev.text,
                "about": {"src": ip(ev.about[0]), "sport": ev.about[1], "dst": ip(ev.about[2]), "dport": ev.about[3]},
                "ispi": ev.sa[1].hex() if ev.sa else None})
    doc["findings"] = [{**finding_json(f, frame), "segment": list(f.segment) if f.segment else None}
                       for f in cmp.findings()]
    return doc


def _pairs(s: Segment) -> list[dict]:
    """One object per conversation of the segment, with its two directions (none when the captures could not
    be compared)."""
    if not s.compared:
        return []
    out = []
    for conv in s.convs:
        dirs = []
        for d in conv.directions.values():
            ref_up, ref_down = s.point(d.up).ref, s.point(d.down).ref
            dirs.append({
                "direction": "initiator_to_responder" if d.role == "I" else "responder_to_initiator",
                "from": d.src, "to": d.dst, "sent_at": d.up, "arrives_at": d.down,
                "ike": {"sent": d.sent, "arrived": d.arrived, "lost": [_message(s, m) for m in d.lost],
                        "duplicated": d.duplicated, "reordered": d.reordered,
                        "not_seen_upstream": [_message(s, m) for m in d.not_seen_upstream],
                        "outside_other_capture": d.outside, "delay": _delay(d.delays),
                        "matched": [[frame(ref_up(u.ref)), frame(ref_down(w.ref))] for u, w in d.matched[:MAX_LISTED]]},
                "esp": [_esp(e, ref_up, ref_down) for e in d.esp],
            })
        out.append({
            "segment": list(s.points),
            "at": [{"point": p, "initiator": ip(conv.initiator[p]) if p in conv.initiator else None,
                    "responder": ip(conv.responder[p]) if p in conv.responder else None,
                    "peers": [[ip(a), ip(b)] for a, b in conv.pairs[p]]} for p in s.points],
            "initiator_side": conv.init_side, "orientation": conv.orientation,
            "ike_sas": [k[1].hex() for k in conv.sas],
            "directions": dirs,
        })
    return out


def _message(s: Segment, m: Msg) -> dict:
    return {"label": m.label, "ispi": m.sa[1].hex(), "rspi": m.rspi.hex(), "message_id": m.message_id,
            "exchange_type": m.exchange_type, "sender": "initiator" if m.sender == "I" else "responder",
            "request": m.request, "size": m.size, "time": m.time, "frame": frame(s.point(m.point).ref(m.ref)),
            "src": ip(m.src), "sport": m.sport, "dst": ip(m.dst), "dport": m.dport, "natt": m.natt,
            "ip_fragments": m.fragments}


def _delay(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _esp(e: EspSa, ref_up, ref_down) -> dict:
    f, g = e.flow_up, e.flow_down
    return {"spi": f"{e.spi:08x}", "sent": e.sent, "arrived": e.arrived, "lost": e.lost,
            "duplicated": e.duplicated, "reordered": e.reordered, "judged": e.judged,
            "note": e.note or None, "seq_sent": [f.seq_min, f.seq_max],
            "seq_arrived": [g.seq_min, g.seq_max] if g else None,
            "frames_sent": [frame(ref_up(f.first_frame)), frame(ref_up(f.last_frame))],
            "frames_arrived": [frame(ref_down(g.first_frame)), frame(ref_down(g.last_frame))] if g else None,
            "lost_seq": e.lost_seq, "lost_frames": e.lost_frames,
            "transit": _delay(e.transit) if e.transit else None}
