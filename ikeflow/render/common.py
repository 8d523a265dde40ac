"""What every renderer shares: addresses, clock times, frame references, the JSON objects for one IKE
message, one ESP flow and one finding (read, live and compare print the same objects), dates with their
zone, headlines.  The terminal layout (lines and tables that never cut a value) is `render.layout`: the
JSON renderers do without rich."""

from __future__ import annotations

import functools
import ipaddress
import json
import time
from datetime import datetime, timezone

from ikeflow.diagnose.finding import INFO, Finding
from ikeflow.diagnose.findings import fails
from ikeflow.model.events import pair_key
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
_EXCHANGE: dict[tuple[int, int], str] = {}  # (version, exchange type) -> its fields of a `messages[]` object
_FLAGS: dict[tuple[int, int, bool], str] = {}  # (version, flag bits, encrypted) -> the "flags" field


def message_json(sa: IkeSa, m: Seen, frame, several: bool) -> str:
    """One `messages[]` object as JSON text.  Written out field by field: this runs for
    every IKE message, and building a dict to encode costs twice as much."""
    msg = m.msg
    file, number = split_ref(m.ref)
    payloads = msg.payloads
    if payloads:
        names = _text(tuple([p.name for p in payloads]))
        types = ",".join([str(p.type) for p in payloads])
    else:
        names, types = "[]", ""
    notify = ",".join([f'{{"type":{t},"name":{_text(n)}}}' for t, n in msg.notifies])
    fragments = ",".join([compact(frame(r)) for r in m.fragments]) if m.fragments else ""
    version, kind = msg.version, msg.exchange_type
    exchange = _EXCHANGE.get((version, kind))
    if exchange is None:
        exchange = _EXCHANGE[version, kind] = \
            f'"version":{version},"exchange_type":{kind},"exchange":{_text(msg.exchange)},'
    encrypted = msg.encrypted
    flags = _FLAGS.get((version, msg.flags, encrypted))
    if flags is None:
        flags = _FLAGS[version, msg.flags, encrypted] = (
            f'"flags":{{"initiator":{_BOOL[msg.initiator]},"response":{_BOOL[msg.response]},'
            f'"encrypted":{_BOOL[encrypted]},"commit":{_BOOL[msg.commit]}}},')
    return (
        f'{{"frame":{number},"time":{m.time!r},"src":"{ip(m.src)}","dst":"{ip(m.dst)}",'
        f'"sport":{m.sport},"dport":{m.dport},"natt":{_BOOL[m.natt]},{exchange}'
        f'"ispi":"{msg.ispi.hex()}","rspi":"{msg.rspi.hex()}","message_id":{msg.message_id},{flags}'
        f'"label":{_text(m.label)},"sender":"{"initiator" if m.sender == "I" else "responder"}",'
        f'"request":{_BOOL[m.request]},"size":{m.size},"payloads":{names},'
        f'"payload_types":[{types}],"notify":[{notify}],'
        f'"retransmission":{_BOOL[m.retransmission]},"retry":{_text(m.retry)},'
        f'"ip_fragments":[{fragments}],"malformed":{_text(msg.malformed)},'
        f'"encrypted_first":{_text(msg.encrypted_first)}'
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



# -- times -------------------------------------------------------------------------------------------------

def stamp(t: float, utc: bool = False, zone: bool = True) -> str:
    """"2026-11-29 14:41:16.123 UTC" (or local time, its zone named), or the raw seconds when no date holds `t`."""
    try:
        d = datetime.fromtimestamp(t, timezone.utc) if utc else datetime.fromtimestamp(t).astimezone()
    except (OverflowError, OSError, ValueError):
        return f"{t:.3f} s"
    text = f"{d:%Y-%m-%d %H:%M:%S}.{d.microsecond // 1000:03d}"
    return f"{text} {zone_name(d)}" if zone else text


def zone_name(d: datetime) -> str:
    """"UTC", or a local zone as "CET (UTC+01:00)"."""
    off = d.strftime("%z")
    off = f"UTC{off[:3]}:{off[3:]}" if off else ""
    name = d.tzname() or ""
    if off in ("UTC+00:00", "") and name in ("UTC", "GMT", ""):
        return "UTC"
    return f"{name} ({off})" if name and name[0] not in "+-" else off


def span_text(first: float, last: float, utc: bool = False) -> str:
    """"from 2026-11-29 14:41:16.123 to 14:52:00.456 UTC (644.3 s)": the date once, the zone once."""
    a, b = stamp(first, utc, zone=False), stamp(last, utc)
    if a[:10] == b[:10] and len(a) > 10 and a[4] == "-":
        b = b[11:]
    return f"from {a} to {b} ({last - first:.1f} s)"


def ms(seconds: float, places: int = 2, sign: bool = False) -> str:
    """Milliseconds as a report prints them: "+0.02", "-1.500", never "-0.00"."""
    text = f"{seconds * 1000:{'+' if sign else ''}.{places}f}"
    return text.replace("-", "+" if sign else "", 1) if float(text) == 0 and text.startswith("-") else text


def relative(dt: float) -> str:
    """Seconds since an IKE SA's first message, as the ladder shows them ("0.000", never "-0.000")."""
    text = f"{dt:.3f}"
    return "0.000" if text == "-0.000" else text


# -- headlines ---------------------------------------------------------------------------------------------

# The causes of diagnose.causes.CAUSES as a headline says them ("PSK mismatch likely (or peer ID mismatch)").
PLAIN = {
    "path-blocked": "a filter on the path",
    "peer-down": "peer down",
    "peer-ignores": "the peer ignoring it",
    "reply-path-lost": "answers lost on the way back",
    "udp4500-blocked": "UDP 4500 blocked",
    "fragments-dropped": "IP fragments dropped",
    "proposal-mismatch": "proposal mismatch",
    "ike-version-mismatch": "IKE version mismatch",
    "dh-group-mismatch": "DH group mismatch",
    "pfs-mismatch": "PFS mismatch",
    "psk-mismatch": "PSK mismatch",
    "peer-id-mismatch": "peer ID mismatch",
    "subnet-mismatch": "subnet mismatch",
    "aggressive-mode-refused": "Aggressive Mode refused",
    "esp-blocked": "ESP blocked one way",
    "peer-dead": "peer dead",
    "mtu-blackhole": "MTU black hole",
    "nat-mapping-expired": "NAT mapping expired",
    "cert-untrusted": "certificate not trusted",
    "xauth-failed": "XAUTH login failed",
    "eap-failed": "EAP login failed",
}

# The configuration strings of a proposal (decode.proposals.summarize_sa keys), labelled by dialect.
PROPOSAL_STRINGS = (("ike", "libreswan ike="), ("ipsec_conf", "strongSwan ipsec.conf ike="),
                    ("swanctl", "swanctl proposals="))


def pair_words(key: tuple[bytes, bytes]) -> str:
    return f"{ip(key[0])} ⇄ {ip(key[1])}"


def headline(pair, verdict: str, error: Finding | None) -> str:
    """A peer pair's verdict in plain words: where it fails and the most likely cause, or its state."""
    if error is None:
        return verdict or "no IKE or ESP"
    causes = [PLAIN.get(c, c) for c in error.causes[:2]]
    if causes and error.evidence == "decrypted":  # the decrypted payloads prove it: no look-alike to name
        return f"{fails(error)} — {causes[0]} (shown by the decrypted payloads)"
    why = f" — {causes[0]} likely" + (f" (or {causes[1]})" if len(causes) > 1 else "") if causes else ""
    return fails(error) + why


# -- findings ----------------------------------------------------------------------------------------------

def merge_info(findings: list[Finding]) -> list[tuple[Finding, list[Finding]]]:
    """Each finding with the findings it stands for: identical informational findings (code, place and
    text) once, with all of them; every other finding alone."""
    out: list[tuple[Finding, list[Finding]]] = []
    seen: dict[tuple, list[Finding]] = {}
    for f in findings:
        if f.severity != INFO:
            out.append((f, [f]))
            continue
        key = (f.code, f.at, f.summary, f.hint)
        if key in seen:
            seen[key].append(f)
        else:
            seen[key] = [f]
            out.append((f, seen[key]))
    return out


def pair_of(f: Finding) -> tuple[bytes, bytes] | None:
    """The peer pair a finding is about (its IKE SA's, or its own), or None for the capture."""
    if f.sa is not None:
        return pair_key(f.sa.initiator[0], f.sa.responder[0])
    return f.pair


def where(alike: list[Finding]) -> str:
    """The peer pair and IKE SA of a finding; for alike findings, how many and of which pairs."""
    pairs = list(dict.fromkeys(p for p in map(pair_of, alike) if p))
    sas = list(dict.fromkeys(f.sa.ispi.hex() for f in alike if f.sa is not None))
    if len(alike) == 1:
        f = alike[0]
        return ", ".join(([pair_words(pairs[0])] if pairs else []) + ([f"IKE SA {sas[0]}"] if sas else []))
    count = f"{len(alike)} times" + (f", {len(sas)} IKE SAs" if sas else "")
    if len(pairs) == 1:
        return f"{pair_words(pairs[0])} ({count})"
    return f"{count} ({len(pairs)} peer pairs)" if pairs else count
