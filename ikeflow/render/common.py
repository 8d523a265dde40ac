"""What every renderer shares: addresses, clock times, frame references, and the JSON
objects for one IKE message, one ESP flow and one finding (read, live and compare
print the same objects)."""

from __future__ import annotations

import functools
import ipaddress
import json
import time

from ikeflow.diagnose.finding import Finding
from ikeflow.model.ikesa import IkeSa, Seen
from ikeflow.sources.capture import split_ref

compact = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps(separators=) builds one per call


@functools.lru_cache(maxsize=4096)
def ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw)) if raw else ""


def nat_text(sa: IkeSa, short: bool = False) -> str:
    """What NAT-D and the ports tell of an IKE SA's NAT, in an admin's words (`short`: for live's table)."""
    if sa.rewritten():
        text = "rewritten" if short else "addresses rewritten (NAT-D mismatch, no float)"
    elif sa.opening_missing():
        text = "unknown (opening not captured)"
    else:
        behind = sa.behind_nat()
        who = [r for r in "IR" if behind[r]]
        if short and who:
            text = "both behind NAT" if len(who) == 2 else f"{who[0]} behind NAT"
        elif short:
            text = "none (NAT-D verified)" if sa.natd else "unknown (no NAT-D seen)"
        else:
            text = (", ".join(f"{'initiator' if r == 'I' else 'responder'} behind NAT" for r in who)
                    or ("no NAT (NAT-D verified)" if sa.natd else "unknown (no NAT-D seen)"))
    if sa.float_at:
        text += f"; float at {sa.float_at}"
    elif sa.started_natt:
        text += "; started on NAT-T" if short else "; started on the NAT-T port"
    return text


class Frames:
    """Frame references as JSON: plain frame numbers for one file, [file, frame] for several."""

    def __init__(self, files: int):
        self.several = files > 1

    def __call__(self, ref: int):
        file, frame = split_ref(ref)
        return [file, frame] if self.several else frame


def endpoint(ep) -> str:
    """address:port, with brackets around an IPv6 address."""
    a = ip(ep[0])
    return f"[{a}]:{ep[1]}" if ":" in a else f"{a}:{ep[1]}"


def clock(t: float, utc: bool = True) -> str:
    """HH:MM:SS.mmm (UTC, or local time), or the raw epoch seconds when no date can hold `t`."""
    try:
        return time.strftime("%H:%M:%S", time.gmtime(t) if utc else time.localtime(t)) + f".{int((t % 1) * 1000):03d}"
    except (OverflowError, OSError, ValueError):
        return f"{t:.3f} s"


_text = functools.lru_cache(maxsize=4096)(json.dumps)  # names and labels repeat: encode each once
_BOOL = {True: "true", False: "false", None: "null"}


def message_json(sa: IkeSa, m: Seen, frame, several: bool) -> str:
    """One `messages[]` object as JSON text.  Written out field by field: this runs for
    every IKE message, and building a dict to encode costs twice as much."""
    msg = m.msg
    file, number = split_ref(m.ref)
    names = _text(tuple(p.name for p in msg.payloads)) if msg.payloads else "[]"
    notify = ",".join(f'{{"type":{t},"name":{_text(n)}}}' for t, n in msg.notifies)
    fragments = ",".join(compact(frame(r)) for r in m.fragments)
    return (
        f'{{"frame":{number},"time":{m.time!r},"src":"{ip(m.src)}","dst":"{ip(m.dst)}",'
        f'"sport":{m.sport},"dport":{m.dport},"natt":{_BOOL[m.natt]},"version":{msg.version},'
        f'"exchange_type":{msg.exchange_type},"exchange":{_text(msg.exchange)},'
        f'"ispi":"{msg.ispi.hex()}","rspi":"{msg.rspi.hex()}","message_id":{msg.message_id},'
        f'"flags":{{"initiator":{_BOOL[msg.initiator]},"response":{_BOOL[msg.response]},'
        f'"encrypted":{_BOOL[msg.encrypted]},"commit":{_BOOL[msg.commit]}}},'
        f'"label":{_text(m.label)},"sender":"{"initiator" if m.sender == "I" else "responder"}",'
        f'"request":{_BOOL[m.request]},"size":{m.size},"payloads":{names},'
        f'"payload_types":[{",".join(str(p.type) for p in msg.payloads)}],"notify":[{notify}],'
        f'"retransmission":{_BOOL[m.retransmission]},"retry":{_text(m.retry)},'
        f'"ip_fragments":[{fragments}],"malformed":{_text(msg.malformed)},"encrypted_first":{_text(msg.encrypted_first)}'
        + (f',"file":{file}}}' if several else "}")
    )


def flow_json(f, frame) -> dict:
    return {
        "src": ip(f.src), "dst": ip(f.dst), "spi": f"{f.spi:08x}", "encap": f.encap,
        "sport": f.sport or None, "dport": f.dport or None,
        "packets": f.packets, "bytes": f.bytes,
        "first_time": f.first_time, "last_time": f.last_time,
        "first_frame": frame(f.first_frame), "last_frame": frame(f.last_frame),
        "seq_first": f.seq_first, "seq_last": f.seq_max, "seq_min": f.seq_min,
        "lost": f.lost, "duplicates": f.duplicates, "reordered": f.reordered,
    }


def finding_json(f: Finding, frame) -> dict:
    return {
        "severity": f.severity, "code": f.code, "at": f.at, "causes": f.causes,
        "frames": [frame(r) for r in f.frames], "summary": f.summary, "hint": f.hint,
        "ispi": f.sa.ispi.hex() if f.sa else None,
        "pair": [ip(a) for a in f.pair] if f.pair else None,
    }
