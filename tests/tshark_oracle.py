"""tshark as an independent oracle for ikeflow: what Wireshark's dissectors say about a capture.

One `tshark -T pdml` run per capture, parsed with ElementTree, boiled down to
the facts test_tshark_agreement.py compares:

* the number of frames;
* every ISAKMP message outside an ICMP quote: header fields, the flag bits,
  the *top-level* payload types (tshark nests IKEv1 proposals/transforms and
  IKEv2 proposals as `isakmp.typepayload` inside the SA payload, so only the
  direct children of the isakmp protocol node count) and the notify types
  of the top-level Notify payloads;
* every ESP packet outside an ICMP quote: addresses, SPI and sequence number;
* NAT-keepalives, and the ICMP errors that quote IKE/ESP (tshark nests the
  quoted datagram's layers inside the icmp/icmpv6 node).

tshark runs with an empty configuration directory so that no user
preferences (decryption tables, heuristics, port mappings) leak in.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

# Protocol layers kept in the PDML (with their children); everything else is
# cut by -J to keep the XML small.  _ws.malformed marks dissector exceptions.
LAYERS = "frame ip ipv6 udp udpencap isakmp esp icmp icmpv6 _ws.malformed"


@dataclass
class IsakmpMsg:
    frame: int
    src: str
    dst: str
    sport: int
    dport: int
    natt: bool  # carried by the udpencap dissector (UDP 4500 after a non-ESP marker)
    ispi: str
    rspi: str
    next_payload: int
    version: int  # major version (isakmp.mjver)
    minor: int
    exchange_type: int
    flags: int  # the raw flags octet (isakmp.flags)
    flag_bits: dict  # sub-fields present: flag_e/flag_c/flag_a (v1), flag_i/flag_v/flag_r (v2) -> bool
    message_id: int
    length: int
    payload_types: list[int]  # top-level payloads in wire order
    notify_types: list[int]  # isakmp.notify.msgtype of the top-level Notify payloads
    malformed: bool  # tshark hit an exception (_ws.malformed) in this frame
    fragments: list[int]  # frames of the IP fragments it was reassembled from ([] if not fragmented)


@dataclass
class EspPkt:
    frame: int
    src: str
    dst: str
    spi: int
    seq: int | None  # None: the capture cuts the packet short before the sequence number
    udp: bool  # ESP in UDP (udpencap dissector)


@dataclass
class Dissection:
    frames: int = 0
    isakmp: dict[int, IsakmpMsg] = field(default_factory=dict)  # frame -> message
    esp: list[EspPkt] = field(default_factory=list)
    protocols: dict[int, str] = field(default_factory=dict)  # frame -> frame.protocols
    malformed_frames: set[int] = field(default_factory=set)
    keepalives: list[tuple[int, str]] = field(default_factory=list)  # (frame, sender) of NAT-keepalives
    icmp_about_ipsec: set[int] = field(default_factory=set)  # ICMP errors quoting IKE, ESP or UDP 500/4500
    extra_isakmp: list[int] = field(default_factory=list)  # frames with more than one ISAKMP layer


_ENV: dict | None = None


def environment() -> dict:
    """Environment for tshark with a private, empty Wireshark configuration.

    Built once; call it from the main thread before starting worker threads
    (copying os.environ while another thread changes it, as CliRunner does, is not safe).
    """
    global _ENV
    if _ENV is None:
        config = tempfile.mkdtemp(prefix="ikeflow-tshark-")
        env = dict(os.environ)
        env.update(HOME=config, XDG_CONFIG_HOME=config, WIRESHARK_CONFIG_DIR=config, LC_ALL="C")
        env.pop("IKEFLOW_DEBUG", None)
        _ENV = env
    return _ENV


def run_pdml(tshark: str, path: Path) -> bytes:
    proc = subprocess.run([tshark, "-n", "-r", str(path), "-T", "pdml", "-J", LAYERS],
                          capture_output=True, env=environment(), timeout=120)
    # tshark exits 2 when the file ends in a cut-short record, after printing every packet it read.
    if proc.returncode not in (0, 2) or not proc.stdout.strip():
        raise RuntimeError(f"tshark failed on {path} (exit {proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _show(el: ET.Element) -> str:
    return el.get("show", "")


def _int(text: str) -> int:
    return int(text, 0)


def _fields(proto: ET.Element) -> dict[str, ET.Element]:
    """First occurrence of every field anywhere below `proto`."""
    out: dict[str, ET.Element] = {}
    for f in proto.iter("field"):
        out.setdefault(f.get("name", ""), f)
    return out


def _isakmp(proto: ET.Element, frame: int, ip: tuple, ports: tuple, natt: bool, malformed: bool,
            fragments: list[int]) -> IsakmpMsg | None:
    top = {}
    payloads, notifies = [], []
    for f in proto:
        name = f.get("name")
        if name == "isakmp.typepayload":
            payloads.append(_int(_show(f)))
            for sub in f:
                if sub.get("name") == "isakmp.notify.msgtype":
                    notifies.append(_int(_show(sub)))
        elif name and name not in top:
            top[name] = f
    if "isakmp.ispi" not in top:
        return None
    flags = top.get("isakmp.flags")
    bits = {}
    if flags is not None:
        for sub in flags:
            n = sub.get("name", "")
            if n.startswith("isakmp.flag_"):
                bits[n[len("isakmp."):]] = _show(sub) not in ("0", "False", "")
    ver = top.get("isakmp.version")
    major = minor = -1
    if ver is not None:
        for sub in ver:
            if sub.get("name") == "isakmp.mjver":
                major = _int(_show(sub))
            elif sub.get("name") == "isakmp.mnver":
                minor = _int(_show(sub))

    def num(name: str, default: int = -1) -> int:
        el = top.get(name)
        return _int(_show(el)) if el is not None else default

    return IsakmpMsg(
        frame=frame, src=ip[0], dst=ip[1], sport=ports[0], dport=ports[1], natt=natt,
        ispi=top["isakmp.ispi"].get("value", ""),
        rspi=top["isakmp.rspi"].get("value", "") if "isakmp.rspi" in top else "",
        next_payload=num("isakmp.nextpayload"), version=major, minor=minor,
        exchange_type=num("isakmp.exchangetype"),
        flags=_int(_show(flags)) if flags is not None else -1, flag_bits=bits,
        message_id=num("isakmp.messageid"), length=num("isakmp.length"),
        payload_types=payloads, notify_types=notifies, malformed=malformed, fragments=fragments,
    )


def _about_ipsec(proto: ET.Element) -> bool:
    """Is this (quoted) layer IKE, ESP or UDP 500/4500?"""
    name = proto.get("name")
    if name in ("isakmp", "esp", "udpencap"):
        return True
    if name == "udp":
        ports = {_int(_show(x)) for x in proto if x.get("name") in ("udp.srcport", "udp.dstport")}
        return bool(ports & {500, 4500})
    return False


def parse(pdml: bytes) -> Dissection:
    out = Dissection()
    root = ET.fromstring(pdml)
    for packet in root.iter("packet"):
        out.frames += 1
        protos = list(packet.findall("proto"))
        frame = 0
        for p in protos:
            if p.get("name") == "frame":
                f = _fields(p)
                frame = _int(_show(f["frame.number"]))
                out.protocols[frame] = _show(f.get("frame.protocols", ET.Element("x")))
        malformed = any(p.get("name") == "_ws.malformed" for p in protos)
        if malformed:
            out.malformed_frames.add(frame)
        ip: tuple = ("", "")
        fragments: list[int] = []
        ports: tuple = (0, 0)
        natt = in_icmp = False
        seen_isakmp = False
        for p in protos:
            name = p.get("name")
            if name in ("icmp", "icmpv6"):
                # tshark nests the datagram an ICMP error quotes inside the icmp/icmpv6 node
                if any(_about_ipsec(q) for q in p.iter("proto")):
                    out.icmp_about_ipsec.add(frame)
                in_icmp = True  # and anything after it is part of the quote as well
            elif name in ("ip", "ipv6"):
                f = _fields(p)
                key = "ip" if name == "ip" else "ipv6"
                src, dst = f.get(f"{key}.src"), f.get(f"{key}.dst")
                if src is not None and dst is not None:
                    ip = (_show(src), _show(dst))
                fragments = sorted(_int(_show(x)) for x in p.iter("field") if x.get("name") == f"{key}.fragment")
                natt = False
            elif name == "udp":
                f = _fields(p)
                ports = (_int(_show(f["udp.srcport"])), _int(_show(f["udp.dstport"])))
                natt = False
            elif name == "udpencap":
                natt = True
                if not in_icmp and any(x.get("name") == "udpencap.nat_keepalive" for x in p.iter("field")):
                    out.keepalives.append((frame, ip[0]))
            elif name == "isakmp" and not in_icmp:
                msg = _isakmp(p, frame, ip, ports, natt, malformed, fragments)
                if msg is None:
                    continue
                if seen_isakmp:
                    out.extra_isakmp.append(frame)
                    continue
                seen_isakmp = True
                out.isakmp[frame] = msg
            elif name == "esp" and not in_icmp:
                f = _fields(p)
                if "esp.spi" in f:
                    seq = _int(_show(f["esp.sequence"])) if "esp.sequence" in f else None
                    out.esp.append(EspPkt(frame, ip[0], ip[1], _int(_show(f["esp.spi"])), seq, natt))
    return out


def dissect(tshark: str, path: Path) -> Dissection:
    return parse(run_pdml(tshark, path))


def _norm(value):
    return tuple(_norm(v) for v in value) if isinstance(value, (list, tuple)) else value


def _fmt(rel: str, d: tuple) -> str:
    frame, field_, mine, theirs = d
    where = f"frame {frame}" if frame is not None else "flow"
    return f"{rel}: {where} {field_}: ikeflow {mine!r}, tshark {theirs!r}"


def judge(rel: str, diffs, allowed: dict, known_bugs: dict, show: int = 40) -> None:
    """Fail on every (frame, field, ikeflow value, tshark value) difference of capture `rel` that the
    tables do not explain with exactly these values, and on table entries that no longer occur;
    xfail when the only differences are known ikeflow bugs."""
    import pytest

    unexplained, bugs, seen = [], [], set()
    for d in diffs:
        key = (rel, d[0], d[1])
        for table, bucket in ((allowed, None), (known_bugs, bugs)):
            entry = table.get(key)
            if entry is not None and _norm(entry[0]) == _norm(d[2]) and _norm(entry[1]) == _norm(d[3]):
                seen.add(key)
                if bucket is not None:
                    bucket.append((_fmt(rel, d), entry[2]))
                break
        else:
            unexplained.append(_fmt(rel, d))
    stale = [f"{k[0]}: frame {k[1]} {k[2]}" for k in list(allowed) + list(known_bugs) if k[0] == rel and k not in seen]
    assert not unexplained, f"ikeflow and tshark disagree in {len(unexplained)} place(s) " \
        "(fix ikeflow or explain in ALLOWED/KNOWN_BUGS):\n" + "\n".join(unexplained[:show]) + \
        ("\n..." if len(unexplained) > show else "")
    assert not stale, "these table entries no longer occur (bug fixed? then delete the entry):\n" + "\n".join(stale)
    if bugs:
        reasons = list(dict.fromkeys(why for _, why in bugs))
        pytest.xfail("known ikeflow bug: " + " / ".join(reasons) + "\n" + "\n".join(line for line, _ in bugs))
