"""The JSON document (schema 3): ikeflow's machine interface.

Documented field by field in README.md; change a field only with a new schema
number.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

from ikeflow import __version__
from ikeflow.decode.ike import IkeMessage, Payload
from ikeflow.decode.proposals import summarize_sa
from ikeflow.diagnose.finding import Finding
from ikeflow.model import decryption
from ikeflow.model.analysis import Analyzer, PeerPair
from ikeflow.model.attribution import Owners
from ikeflow.model.esp_inner import EspInner, InnerTraffic
from ikeflow.model.events import MessageSeen
from ikeflow.model.ikesa import IkeSa
from ikeflow.render.common import Frames, compact, finding_json, flow_json, ip, message_json
from ikeflow.sources.capture import FileInfo

# 2: ike_sas[].closed.by lost "expired", gained "superseded" and "delete-unanswered" (README)
# 3: with --keys, messages[] gain decrypted, inner_payloads, inner_payload_types, inner, inner_text and
#    decrypt_note, notify lists the decrypted notifies too, and findings[] gain evidence
SCHEMA = 3


class MessageSpool:
    """The `messages` array, written to a temporary file as messages arrive, so that
    memory does not grow with the number of IKE messages.  Register `add` as an
    Analyzer listener."""

    BATCH = 512  # messages written at once: one by one, between the model's steps, each costs twice as much

    def __init__(self, files: int):
        import tempfile

        self.frame = Frames(files)
        self.several = files > 1
        self.file = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.count = 0
        self.waiting: list[MessageSeen] = []  # a message's fields are final once the model has told of it

    def add(self, event) -> None:
        if isinstance(event, MessageSeen):
            self.waiting.append(event)
            if len(self.waiting) >= self.BATCH:
                self._write()

    def _write(self) -> None:
        texts = []
        for event in self.waiting:
            text = message_json(event.sa, event.seen, self.frame, self.several)
            if event.sa.decryption is not None:  # read with keys: what decrypting gave, before the closing brace
                text = text[:-1] + decrypted_json(event.seen.msg) + "}"
            texts.append(text)
        if texts:
            self.file.write(("," if self.count else "") + ",".join(texts))
            self.count += len(texts)
        self.waiting.clear()

    def copy_to(self, out) -> None:
        """The messages written so far, copied to `out`: as bytes, in a third of the time, where `out` has a
        binary buffer and an encoding that writes ASCII as ASCII (the spool is ASCII, as JSON encodes it)."""
        self._write()
        self.file.flush()
        raw = getattr(out, "buffer", None)
        if raw is not None and _ascii_as_is(getattr(out, "encoding", None)):
            out.flush()
            self.file.buffer.seek(0)
            shutil.copyfileobj(self.file.buffer, raw, 1 << 20)
            return
        self.file.seek(0)
        while chunk := self.file.read(1 << 20):
            out.write(chunk)


_PRINTABLE = bytes(range(32, 127))


def _ascii_as_is(encoding: str | None) -> bool:
    """Printable ASCII comes out of this text encoding byte for byte (UTF-8, Latin-1...; not UTF-16)."""
    try:
        return bool(encoding) and _PRINTABLE.decode("ascii").encode(encoding) == _PRINTABLE
    except (LookupError, UnicodeError):
        return False


def decrypted_json(msg: IkeMessage) -> str:
    """The `messages[]` fields of decryption, each after a comma: decrypted (true verified, false keys that
    do not verify, null no keys for this message), the inner payloads (names, types in wire order, decoded)
    the one-line text of them, and why the keys did not verify (or which IKEv1 IV did, where unusual)."""
    inner = msg.inner
    return (f',"decrypted":{compact(msg.decrypted)},"inner_payloads":{compact([p.name for p in inner])},'
            f'"inner_payload_types":{compact([p.type for p in inner])},'
            f'"inner":{compact([_inner(p) for p in inner])},"inner_text":{compact(decryption.text(msg) or None)},'
            f'"decrypt_note":{compact(msg.decrypt_note)}')


def _inner(p: Payload) -> dict:
    """One decrypted payload: its type, name, text and decoded fields (bytes as hex; certificates by size)."""
    out = {"type": p.type, "name": p.name, "text": decryption.describe(p)}
    for key, value in p.info.items():
        if key == "proposals":
            out["proposals"] = summarize_sa(p)
        elif key == "data" and p.name in ("CERT", "CR", "CERTREQ"):
            out["length"] = len(value)
        elif key == "attributes":
            out[key] = [{"type": t, "name": n, "value": v.hex()} for t, n, v in value]
        elif key == "spis":
            out[key] = [s.hex() for s in value]
        else:
            out[key] = value.hex() if isinstance(value, bytes) else value
    return out


def write(out, doc: dict, spool: MessageSpool, end: str = "\n") -> None:
    """Write the document with the spooled messages in their place (after `peers`).  The arrays
    that grow with the capture are iterators in `doc`, encoded one element at a time."""
    out.write("{")
    for i, (key, value) in enumerate(doc.items()):
        out.write(("," if i else "") + json.dumps(key) + ":")
        if isinstance(value, Iterator):
            out.write("[")
            for j, item in enumerate(value):
                out.write(("," if j else "") + compact(item))
            out.write("]")
        else:
            out.write(compact(value))
        if key == "peers":
            out.write(',"messages":[')
            spool.copy_to(out)
            out.write("]")
    out.write("}" + end)


def build(an: Analyzer, files: list[FileInfo], findings: list[Finding], verdicts: dict, config=None) -> dict:
    """The document without `messages` (see MessageSpool and write); the long arrays are iterators. `config`
    (read --config): a finding -> its `config` list."""
    frame = Frames(len(files))
    directions = an.esp.directions()
    owners = an.owners
    times = [t for f in files for t in f.span() if t is not None]
    return {
        "schema": SCHEMA,
        "tool": {"name": "ikeflow", "version": __version__},
        "capture": {
            "files": [{"name": f.name, "format": f.format, "linktypes": f.linktypes, "packets": f.packets,
                       "first_time": f.first_time, "last_time": f.last_time,
                       "truncated_at": f.truncated_at, "warning": f.warning,
                       "quality": _quality(f, frame)} for f in files],
            "packets": an.stats.packets,
            "first_time": min(times) if times else None,
            "last_time": max(times) if times else None,
        },
        **({"keys": {**an.keys.counts, "notes": an.keys.notes}} if an.keys else {}),  # --keys: what was given
        "stats": vars(an.stats).copy(),
        "skipped": dict(an.skipped.most_common()),
        "malformed": [{"frame": frame(ref), "reason": why} for ref, why in an.malformed],
        "peers": (_pair(p, directions, verdicts.get(k), frame, owners.churn(p)) for k, p in an.pairs.items()),
        "esp_flows": (_flow(f, frame, owners, an.esp_inner) for f in an.esp.flows.values()),
        "ah_flows": (_flow(f, frame, owners) for f in an.ah.flows.values()),
        "ike_sas": (_sa(sa, frame, owners) for sa in an.sas.values()),
        "findings": (_finding(f, frame, config) for f in findings),
    }


def _finding(f: Finding, frame, config=None) -> dict:
    """A finding; "evidence": "decrypted" when decrypted payloads decided its cause (only then); "config" with
    read --config."""
    out = {**finding_json(f, frame), "evidence": f.evidence} if f.evidence else finding_json(f, frame)
    return {**out, "config": config(f)} if config else out


def _quality(f: FileInfo, frame) -> dict:
    q = f.quality
    return {"duplicates": q.copies, "duplicate_frames": [frame(r) for r in q.copy_frames],
            "routed_duplicates": q.routed,
            "cut": q.cut, "snaplen": q.cut_at or None, "cut_frames": [frame(r) for r in q.cut_frames],
            "time_back": q.back, "time_back_frames": [frame(r) for r in q.back_frames], "time_back_max": q.back_most,
            "out_of_order": q.late, "same_time": q.same_time, "zero_time": q.zero_time,
            "no_time": q.no_time(f.packets)}


def _flow(f, frame, owners: Owners, inner: EspInner | None = None) -> dict:
    sa = owners.sa[f]
    out = {**flow_json(f, frame), "ike_sa": sa.ispi.hex() if sa else None}
    if inner is not None:  # --keys with ESP keys
        out["inner"] = _opened(inner.traffic.get((f.src, f.dst, f.spi)))
    return out


def _opened(seen: InnerTraffic | None) -> dict | None:
    """What the flow's packets carried, opened with its key (None: no key for this SA)."""
    if seen is None:
        return None
    return {
        "decrypted": seen.verified, "opened": seen.opened, "failed": seen.failed, "reason": seen.reason or None,
        "key_source": seen.key_source,
        "flows": [{"src": g.src or None, "dst": g.dst or None, "protocol": g.proto, "sport": g.sport,
                   "dport": g.dport, "packets": g.packets, "bytes": g.bytes, "first_time": g.first,
                   "last_time": g.last} for g in seen.flows.values()],
        "other_packets": seen.other,
    }


def _carried(flows) -> list[dict]:
    return [{"spi": f"{f.spi:08x}", "src": f.src_ip, "dst": f.dst_ip, "packets": f.packets} for f in flows]


def _pair(p: PeerPair, directions: dict, verdict, frame, churn: dict) -> dict:
    ways = {"a_to_b": directions.get((p.a, p.b), []), "b_to_a": directions.get((p.b, p.a), []) if p.a != p.b else []}
    esp = {way: sum(f.packets for f in flows) for way, flows in ways.items()}
    spis = {way: [f"{f.spi:08x}" for f in flows] for way, flows in ways.items()}
    return {
        "a": ip(p.a), "b": ip(p.b),
        "verdict": verdict,
        "ike_sas": [sa.ispi.hex() for sa in p.sas],
        "keepalives": {ip(k): v for k, v in p.keepalives.items()},
        "esp_packets": esp,
        "esp_spis": spis,
        "icmp": [{"frame": frame(e.ref), "time": e.time, "from": ip(e.src), "error": e.text,
                  "about": {"src": ip(e.about[0]), "sport": e.about[1], "dst": ip(e.about[2]), "dport": e.about[3]},
                  "ispi": e.sa[1].hex() if e.sa else None} for e in p.icmp],
        "icmp_errors": p.icmp_errors,
        "churn": churn,
    }


def _sa(sa: IkeSa, frame, owners: Owners) -> dict:
    behind = sa.behind_nat()
    return {
        "ispi": sa.ispi.hex(), "rspi": sa.rspi.hex(), "version": sa.version,
        "mode": sa.mode(),
        "initiator": _endpoint(sa.initiator), "responder": _endpoint(sa.responder),
        "roles_guessed": sa.roles_guessed,
        "state": sa.state(),
        "up": sa.ike_sa_up(),
        "messages": [frame(m.ref) for m in sa.messages],
        "message_count": sa.count,
        "nat": {"initiator_behind_nat": behind["I"], "responder_behind_nat": behind["R"],
                "float_at": sa.float_at, "started_on_natt_port": sa.started_natt, "natd_checked": bool(sa.natd),
                "addresses_rewritten": sa.rewritten() is not None, "opening_captured": not sa.opening_missing(),
                "natd_frames": [frame(m.ref) for m in sa.natd],
                "nat_oa": {"initiator": sorted(sa.nat_oa.get("I", ())), "responder": sorted(sa.nat_oa.get("R", ()))}},
        "proposal": {"offered": summarize_sa(sa.offered) if sa.offered else [],
                     "chosen": summarize_sa(sa.chosen) if sa.chosen else []},
        "vendors": {"initiator": sorted(sa.vendors.get("I", ())), "responder": sorted(sa.vendors.get("R", ()))},
        "retried_by": sa.retried_by,
        "closed": {"by": sa.closed[0], "frame": frame(sa.closed[1])} if sa.closed else None,
        "esp": _carried(owners.esp_of(sa)),
        "ah": _carried(owners.ah_of(sa)),
    }


def _endpoint(ep) -> dict | None:
    return {"ip": ip(ep[0]), "port": ep[1]} if ep else None
