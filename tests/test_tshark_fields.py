"""Payload contents against tshark on the public corpus: every field of the unencrypted payloads
that both ikeflow's decoder and Wireshark decode, frame by frame, in wire order.

Header-level agreement (SPIs, exchange, flags, payload types, notifies, ESP) is in
test_tshark_agreement.py; this file goes inside the payloads: SA proposals and transforms with
their IKEv1 attributes, IKEv2 transforms, KE group, identities, certificate encodings, AUTH
method, vendor IDs, NAT-D hashes, Delete SPIs, traffic selectors, IKEv1 and IKEv2 fragments.
On the corpus that is about 22,400 values in 1,269 messages of 130 captures; payloads that are
always encrypted in it (IPsec attributes, AUTH, traffic selectors) are checked in
test_ike_decode.py on packets built with scapy.
"""

import json
import subprocess
import tempfile

import pytest

from conftest import need_public, need_tshark
from ikeflow.analysis import Analyzer
from ikeflow.capture import read_files, split_ref

# tshark field -> how to read ikeflow's decoded message to the same list of values
FIELDS = [
    "isakmp.prop.protoid", "isakmp.trans.id", "isakmp.tf.type", "isakmp.tf.id.encr", "isakmp.tf.id.prf",
    "isakmp.tf.id.integ", "isakmp.tf.id.dh", "isakmp.tf.id.esn",
    "isakmp.ike.attr.encryption_algorithm", "isakmp.ike.attr.hash_algorithm",
    "isakmp.ike.attr.authentication_method", "isakmp.ike.attr.group_description",
    "isakmp.ike.attr.life_type", "isakmp.ike.attr.life_duration", "isakmp.ike.attr.key_length",
    "isakmp.ipsec.attr.encap_mode", "isakmp.ipsec.attr.auth_algorithm", "isakmp.ipsec.attr.group_description",
    "isakmp.ipsec.attr.key_length",
    "isakmp.key_exchange.dh_group", "isakmp.id.type", "isakmp.id.protoid", "isakmp.id.port",
    "isakmp.id.data.ipv4_addr", "isakmp.id.data.fqdn", "isakmp.cert.encoding", "isakmp.certreq.type", "isakmp.auth.method",
    "isakmp.vid_bytes", "isakmp.ike.nat_hash", "isakmp.delete.spi", "isakmp.ts.type", "isakmp.ts.start_port",
    "isakmp.ts.start_ipv4", "isakmp.frag.packetid", "isakmp.frag.seq", "isakmp.frag.last", "isakmp.frag.number",
    "isakmp.frag.total", "isakmp.exchangetype",
]
SEP = "\x1f"

def ikeflow_fields(msg) -> dict[str, list[str]]:
    """The values of FIELDS in one decoded message, in wire order, as tshark prints them."""
    out: dict[str, list[str]] = {f: [] for f in FIELDS}
    v1 = msg.version == 1
    for p in msg.payloads:
        info = p.info
        if p.name == "SA":
            for prop in info.get("proposals", []):
                out["isakmp.prop.protoid"].append(str(prop.protocol))
                for t in prop.transforms:
                    if v1:
                        out["isakmp.trans.id"].append(str(t.id))
                        ns = "ike" if t.protocol == 1 else "ipsec"
                        names = {"ike": ("encryption", "hash", "auth", "group", "life_type", "life_duration", "key_length"),
                                 "ipsec": ("encap_mode", "auth_alg", "group", "key_length")}[ns]
                        field = {"encryption": "encryption_algorithm", "hash": "hash_algorithm",
                                 "auth": "authentication_method", "group": "group_description",
                                 "encap_mode": "encap_mode", "auth_alg": "auth_algorithm",
                                 "life_type": "life_type", "life_duration": "life_duration", "key_length": "key_length"}
                        for name in names:
                            key = f"isakmp.{ns}.attr.{field[name]}"
                            if key not in out:
                                continue
                            # every occurrence of the attribute in this transform, in wire order
                            for atype, value in t.attrs:
                                if _v1_attr_name(t.protocol, atype) == name and isinstance(value, int):
                                    out[key].append(str(value))
                    else:
                        out["isakmp.tf.type"].append(str(t.type))
                        kind = {1: "encr", 2: "prf", 3: "integ", 4: "dh", 5: "esn"}.get(t.type)
                        if kind:
                            out[f"isakmp.tf.id.{kind}"].append(str(t.id))
        elif p.name == "KE" and not v1:
            out["isakmp.key_exchange.dh_group"].append(str(info["group"]))
        elif p.name in ("ID", "IDi", "IDr"):
            out["isakmp.id.type"].append(str(info["id_type"]))
            if v1:
                out["isakmp.id.protoid"].append(str(info["protocol"]))
                out["isakmp.id.port"].append(str(info["port"]))
            if info["id_type"] == 1:
                out["isakmp.id.data.ipv4_addr"].append(info["value"])
            elif info["id_type"] == 2:
                out["isakmp.id.data.fqdn"].append(info["value"])
        elif p.name == "CERT":
            out["isakmp.cert.encoding"].append(str(info["encoding"]))
        elif p.name in ("CR", "CERTREQ"):
            out["isakmp.certreq.type"].append(str(info["encoding"]))
        elif p.name == "AUTH":
            out["isakmp.auth.method"].append(str(info["method"]))
        elif p.name in ("VID", "V"):
            out["isakmp.vid_bytes"].append(info["hex"])
        elif p.name == "NAT-D":
            out["isakmp.ike.nat_hash"].append(info["hash"].hex())
        elif p.name == "D":
            out["isakmp.delete.spi"].extend(s.hex() for s in info["spis"])
        elif p.name in ("TSi", "TSr"):
            for s in info["selectors"]:
                out["isakmp.ts.type"].append(str(s["type"]))
                out["isakmp.ts.start_port"].append(str(s["start_port"]))
                if s["type"] == 7:
                    out["isakmp.ts.start_ipv4"].append(s["start"])
        elif p.name == "FRAG":
            out["isakmp.frag.packetid"].append(f"0x{info['fragment_id']:04x}")
            out["isakmp.frag.seq"].append(str(info["number"]))
            out["isakmp.frag.last"].append(str(int(info["last"])))
        elif p.name == "SKF":
            out["isakmp.frag.number"].append(str(info["fragment"]))
            out["isakmp.frag.total"].append(str(info["total"]))
    return out


def _v1_attr_name(protocol: int, atype: int) -> str:
    from ikeflow import names

    table = names.IKE_ATTRIBUTES if protocol == 1 else names.IPSEC_ATTRIBUTES
    entry = table.get(atype & 0x7FFF)
    return entry[0] if isinstance(entry, tuple) else entry


def tshark_fields(path: str) -> dict[int, dict[str, list[str]]]:
    tshark = need_tshark()
    with tempfile.TemporaryDirectory() as conf:
        cmd = [tshark, "-n", "-r", path, "-Y", "isakmp", "-T", "fields", "-E", "occurrence=a", "-E",
               f"aggregator={SEP}", "-e", "frame.number"]
        for f in FIELDS:
            cmd += ["-e", f]
        out = subprocess.run(cmd, capture_output=True, text=True, env={"WIRESHARK_CONFIG_DIR": conf, "HOME": conf,
                                                                           "PATH": "/usr/bin:/bin"}).stdout
    frames = {}
    for line in out.splitlines():
        cols = line.split("\t")
        frames[int(cols[0])] = {f: (c.split(SEP) if c else []) for f, c in zip(FIELDS, cols[1:] + [""] * len(FIELDS))}
    return frames


def corpus():
    try:
        root = need_public()
    except BaseException:
        return []
    manifest = json.loads((root / "MANIFEST.json").read_text())
    return [c["path"] for c in manifest["captures"] if c.get("ike_packets") and c["kind"] not in ("fuzzed", "crafted")]


@pytest.mark.parametrize("rel", corpus() or ["(corpus missing)"])
def test_payload_fields_agree_with_tshark(rel):
    root = need_public()
    path = str(root / rel)
    messages: dict[int, list] = {}
    an = Analyzer()
    an.listeners.append(lambda ev, obj: ev == "message" and messages.setdefault(split_ref(obj[1].ref)[1], []).append(obj[1].msg))
    infos: list = []
    for batch in read_files([path], an.esp, infos):
        for rec in batch:
            an.record(rec)
    theirs = tshark_fields(path)
    for frame, msgs in messages.items():
        if frame not in theirs or any(m.malformed for m in msgs):
            continue  # malformed messages are compared at header level only
        t = theirs[frame]
        if len(t["isakmp.exchangetype"]) > len(msgs):
            continue  # tshark reassembled IKEv1 fragments into a second ISAKMP layer; ikeflow labels the fragments
        mine: dict[str, list[str]] = {f: [] for f in FIELDS}
        for m in msgs:
            for f, values in ikeflow_fields(m).items():
                mine[f].extend(values)
        for f in FIELDS[:-1]:
            assert [v.lower() for v in mine[f]] == [v.lower() for v in t[f]], f"{rel} frame {frame} {f}"
    if not messages:
        pytest.skip(f"{rel}: no IKE message")
