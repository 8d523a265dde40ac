"""Decrypted IKE payloads in the model (issue 11): agreement with tshark, which decrypts the same public
captures with the same key tables, payload by payload; the IKEv1 IV chain; keys that do not verify.

Differences from tshark, with their reasons, are listed in `KNOWN`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import need_public, need_tshark
from ikeflow import pipeline
from ikeflow.keys import KeyRing, KeySourceError, load_keys
from ikeflow.diagnose.stalls import said
from ikeflow.model import decryption
from ikeflow.render.read_json import MessageSpool, build, write
from ikeflow.sources.capture import split_ref

WIRESHARK = Path("wireshark/test")
WIKI = Path("wireshark-wiki/uploads/dc5b30a117424e6ed21c726771a4006b/ipsec_ikev2+esp_aes-gcm_aes-ctr_aes-cbc.tgz/"
            "ipsec_ikev2+esp_aes-gcm,aes-ctr,aes-cbc")
CAPTURES = [  # (capture, folder of its key tables), relative to the public corpus
    *((WIRESHARK / "captures" / name, WIRESHARK / "config") for name in (
        "ikev1-bug-12610.pcapng.gz", "ikev1-bug-12620.pcapng.gz", "ikev1-certs.pcap",
        "ikev2-decrypt-3des-sha1_160.pcap", "ikev2-decrypt-aes128ccm12-2.pcap", "ikev2-decrypt-aes128ccm12.pcap",
        "ikev2-decrypt-aes192ctr.pcap", "ikev2-decrypt-aes256cbc.pcapng", "ikev2-decrypt-aes256ccm16.pcapng",
        "ikev2-decrypt-aes256gcm16.pcap", "ikev2-decrypt-aes256gcm8.pcap")),
    (WIKI / "capture.pcapng", WIKI),
]
TABLES = ("ikev1_decryption_table", "ikev2_decryption_table")
KNOWN = {  # (capture name, frame) -> why ikeflow and tshark differ there
    ("ikev1-certs.pcap", 8): "QM1 sent again: tshark chains the IV on from the first copy's last block, so only "
                             "the first block (the HASH) decrypts; a re-sent message has the first copy's IV",
}


@dataclasses.dataclass
class Inner:
    """One decrypted top-level payload as tshark shows it."""

    type: int
    body: str  # hex of the payload after its 4-byte generic header
    notify: int | None = None
    id: str | None = None  # the address or name tshark reads in an ID payload
    ts: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (start, end) per selector


def _tshark(capture: Path, tables: Path) -> dict[int, list[Inner]]:
    """frame -> the decrypted payloads tshark shows in it, with `tables` as its only configuration."""
    with tempfile.TemporaryDirectory() as home:
        for name in TABLES:
            for src in (tables / name, tables / f"{name}.tmpl"):
                if src.is_file():
                    shutil.copy(src, Path(home) / name)
                    break
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": home, "HOME": home}
        xml = subprocess.run(["tshark", "-n", "-r", str(capture), "-T", "pdml", "-J", "isakmp"], env=env,
                             capture_output=True, check=True, timeout=300).stdout
    out = {}
    for packet in ET.fromstring(xml).iter("packet"):
        number = int(next(f for f in packet.iter("field") if f.get("name") == "num").get("show"))
        for proto in packet.findall("proto[@name='isakmp']"):
            holders = [f for f in proto.iter("field") if f.get("name") in ("isakmp.enc.data", "isakmp.enc.contained")]
            inner = [_payload(p) for h in holders for p in h.findall("field[@name='isakmp.typepayload']")]
            if inner:
                out[number] = inner
    return out


def _payload(node) -> Inner:
    fields = {f.get("name"): f for f in node.iter("field")}
    item = Inner(int(node.get("show")), node.get("value", "")[8:])
    if "isakmp.notify.msgtype" in fields:
        item.notify = int(fields["isakmp.notify.msgtype"].get("show"))
    if "isakmp.id.data" in fields:
        item.id = fields["isakmp.id.data"].get("showname").partition(":")[2]
    starts = [f.get("show") for f in node.iter("field") if f.get("name") in ("isakmp.ts.start_ipv4",
                                                                            "isakmp.ts.start_ipv6")]
    ends = [f.get("show") for f in node.iter("field") if f.get("name") in ("isakmp.ts.end_ipv4", "isakmp.ts.end_ipv6")]
    item.ts = list(zip(starts, ends))
    return item


def _ours(capture: Path, tables: Path) -> dict[int, object]:
    """frame -> the decrypted message (IkeMessage) ikeflow gives."""
    result = pipeline.read_captures([str(capture)], pipeline.Options(keys=load_keys([str(tables)])))
    return {split_ref(m.ref)[1]: m.msg for sa in result.model.sas.values() for m in sa.messages if m.msg.encrypted}


@pytest.mark.parametrize("capture,tables", CAPTURES, ids=[c.name for c, _ in CAPTURES])
def test_agrees_with_tshark(capture, tables):
    """Every message tshark decrypts, ikeflow decrypts and verifies, with the same top-level inner payloads in
    wire order (type and bytes), notifies, IDs and traffic selectors; none that tshark cannot decrypt
    verifies here."""
    public = need_public()
    need_tshark()
    theirs = _tshark(public / capture, public / tables)
    ours = _ours(public / capture, public / tables)
    assert theirs, "tshark decrypted nothing: the key tables were not read"
    for frame, inner in theirs.items():
        if (capture.name, frame) in KNOWN:
            continue
        msg = ours.get(frame)
        assert msg is not None and msg.decrypted, f"frame {frame}: tshark decrypts it, ikeflow does not"
        assert [p.type for p in msg.inner] == [p.type for p in inner], f"frame {frame}"
        for mine, its in zip(msg.inner, inner):
            assert mine.body.hex() == its.body, f"frame {frame} {mine.name}"
            if its.notify is not None:
                assert mine.info["notify_type"] == its.notify, f"frame {frame}"
            if its.id and mine.info.get("id_type") in (1, 2, 3, 5):
                assert mine.info["value"] == its.id, f"frame {frame}"
            if its.ts:
                assert [(s["start"], s["end"]) for s in mine.info["selectors"]] == its.ts, f"frame {frame}"
    for frame, msg in ours.items():
        if msg.decrypted and msg.inner and frame not in theirs:
            pytest.fail(f"frame {frame}: ikeflow decrypts it, tshark does not")


def _read(capture: str, keys):
    public = need_public()
    return pipeline.read_captures([str(public / capture)], pipeline.Options(keys=keys))


def test_no_keys_no_decryption():
    result = _read(WIRESHARK / "captures/ikev1-certs.pcap", None)
    msgs = [m.msg for sa in result.model.sas.values() for m in sa.messages]
    assert all(m.decrypted is None and not m.inner for m in msgs)


def test_wrong_key_is_reported():
    """A key that does not fit gives decrypted False (never a guess), for both versions: IKEv1 by the payload
    chain, IKEv2 by the AEAD tag, or by the payload chain where only SK_e is wrong and SK_a verifies."""
    public = need_public()
    right = load_keys([str(public / WIRESHARK / "config")])
    wrong = KeyRing()
    for key in right.all():
        if hasattr(key, "enc_key") and hasattr(key, "icookie"):
            wrong.add(dataclasses.replace(key, enc_key=bytes(b ^ 0x22 for b in key.enc_key), source="wrong"))
        elif hasattr(key, "sk_ei"):
            wrong.add(dataclasses.replace(key, sk_ei=bytes(b ^ 0x22 for b in key.sk_ei),
                                          sk_er=bytes(b ^ 0x22 for b in key.sk_er), source="wrong"))
    both = KeyRing()
    both.update(wrong)
    both.update(right)
    for name in ("ikev1-certs.pcap", "ikev2-decrypt-aes256cbc.pcapng", "ikev2-decrypt-aes256gcm16.pcap"):
        result = _read(WIRESHARK / "captures" / name, wrong)
        msgs = [m.msg for sa in result.model.sas.values() for m in sa.messages if m.msg.encrypted]
        assert msgs and all(m.decrypted is False and not m.inner for m in msgs), name
        # a wrong key given next to the right one (loaded first) does not hide it: every key is tried
        result = _read(WIRESHARK / "captures" / name, both)
        seen = [(sa, m.msg) for sa in result.model.sas.values() for m in sa.messages if m.msg.encrypted]
        assert seen and all(m.decrypted and sa.decryption.opener(m).key == 1 for sa, m in seen), name
        assert all("under the key from " in m.decrypt_note and " only" in m.decrypt_note for _, m in seen)


def test_several_wrong_keys_are_each_tried_and_named():
    """Two IKEv1 keys for one cookie, neither right: every message is decrypted False, the note says that none of
    the keys given decrypts it, and there is no opener and no proof."""
    public = need_public()
    ring = KeyRing()
    for key in load_keys([str(public / WIRESHARK / "config")]).all():
        if hasattr(key, "icookie"):
            for flip, name in ((0x22, "one"), (0x44, "two")):
                ring.add(dataclasses.replace(key, enc_key=bytes(b ^ flip for b in key.enc_key), source=name))
    result = _read(WIRESHARK / "captures/ikev1-certs.pcap", ring)
    (sa,) = result.model.sas.values()
    msgs = [m.msg for m in sa.messages if m.msg.encrypted]
    assert msgs and all(m.decrypted is False and sa.decryption.opener(m) is None for m in msgs)
    assert all(m.decrypt_note == "none of the 2 keys given decrypts it (padding or payload chain inconsistent)"
               for m in msgs)
    assert sa.decryption.proof(sa.messages) is None


def test_retransmission_keeps_the_iv_chain():
    """ikev1-certs: QM1 is sent twice (frames 7, 8) before QM2; QM2 and QM3 still decrypt, so the copy did
    not move the chain."""
    public = need_public()
    result = _read(WIRESHARK / "captures/ikev1-certs.pcap", load_keys([str(public / WIRESHARK / "config")]))
    seen = [m for sa in result.model.sas.values() for m in sa.messages if m.msg.encrypted]
    labels = [(m.label, m.retransmission, m.msg.decrypted) for m in seen]
    assert labels == [("MM5", False, True), ("MM6", False, True), ("QM1", False, True), ("QM1", True, True),
                      ("QM2", False, True), ("QM3", False, True)]


def test_text_of_a_decrypted_message():
    public = need_public()
    result = _read(WIRESHARK / "captures/ikev1-bug-12610.pcapng.gz", load_keys([str(public / WIRESHARK / "config")]))
    texts = [decryption.text(m.msg) for sa in result.model.sas.values() for m in sa.messages if m.msg.encrypted]
    assert "ATTR=ISAKMP_CFG_SET(XAUTH_STATUS=1)" in texts[5]
    assert texts[0] == "ID=IPV4_ADDR:192.168.0.100 HASH"


LAB = Path(__file__).resolve().parents[1] / "pcaps" / "lab"
# Every tie of README "Diagnosis" recorded with keys: (scenario, whose keys log, the cause, proven by the
# decrypted payloads, whose daemon log holds the ground truth, what that log says).
TIES = [
    ("ikev1-main-psk-mismatch", "init", "psk-mismatch", True, "resp", [r"could not decrypt payloads"]),
    ("ikev1-main-psk-mismatch", "resp", "psk-mismatch", True, "resp", [r"could not decrypt payloads"]),
    # both daemons' logs: with a PSK mismatch each end's messages open only under its own key
    ("ikev1-main-psk-mismatch", "both", "psk-mismatch", True, "resp", [r"could not decrypt payloads"]),
    ("ikev1-aggr-psk-mismatch", "both", "psk-mismatch", True, "init", [r"calculated HASH does not match HASH payload"]),
    ("ikev1-peerid-mismatch", "init", "peer-id-mismatch", True, "resp", [r"no peer config found"]),
    ("ikev1-peerid-mismatch", "both", "peer-id-mismatch", True, "resp", [r"no peer config found"]),
    ("ikev1-libreswan-peerid-mismatch", "init", "peer-id-mismatch", True, "resp",
     [r"Peer ID '@intruder.example.net' mismatched"]),
    ("ikev1-aggr-psk-mismatch", "init", "psk-mismatch", True, "init", [r"calculated HASH does not match HASH payload"]),
    ("ikev1-cert-untrusted", "init", "cert-untrusted", True, "resp", [r"no trusted RSA public key found"]),
    ("ikev1-subnet-mismatch", "init", "subnet-mismatch", True, "resp", [r"no matching CHILD_SA config found"]),
    ("ikev1-p2-proposal-mismatch", "init", "proposal-mismatch", True, "resp", [r"no matching proposal found"]),
    ("ikev1-pfs-mismatch", "init", "pfs-mismatch", True, "resp",
     [r"received proposals: ESP:AES_CBC_128/HMAC_SHA2_256_128/MODP_3072",
      r"configured proposals: ESP:AES_CBC_128/HMAC_SHA2_256_128/MODP_2048"]),
    ("ikev2-subnet-mismatch", "init", "subnet-mismatch", True, "resp", [r"traffic selectors .* unacceptable"]),
    ("ikev2-child-proposal-mismatch", "init", "proposal-mismatch", True, "resp",
     [r"configured proposals: ESP:AES_CBC_256", r"no acceptable proposal found"]),
    ("ikev2-pfs-mismatch", "init", "pfs-mismatch", True, "resp",
     [r"received proposals: ESP:AES_CBC_128/HMAC_SHA2_256_128/MODP_3072",
      r"configured proposals: ESP:AES_CBC_128/HMAC_SHA2_256_128/MODP_2048"]),
    ("ikev2-eap-failed", "init", "eap-failed", True, "resp", [r"EAP method \S+ failed"]),
    # IKEv2 AUTHENTICATION_FAILED: charon answers a wrong PSK and an unknown identity with the same lone notify
    # and IKEv2 keys do not derive from the PSK, so the payloads cannot decide; ranked as without keys
    ("ikev2-cert-untrusted", "init", "cert-untrusted", False, "resp", [r"no trusted RSA public key found"]),
    ("ikev2-psk-mismatch", "init", "psk-mismatch", False, "resp", [r"MAC mismatched"]),
    # ... which the responder's own keys log settles: the AUTH it computed with its PSK differs, or it computed none
    ("ikev2-psk-mismatch", "resp", "psk-mismatch", True, "resp", [r"MAC mismatched"]),
    ("ikev2-psk-mismatch", "both", "psk-mismatch", True, "resp", [r"MAC mismatched"]),
    ("ikev2-peerid-mismatch", "both", "peer-id-mismatch", True, "resp", [r"no matching peer config found"]),
    ("ikev2-peerid-mismatch", "resp", "peer-id-mismatch", True, "resp", [r"no matching peer config found"]),
]


@pytest.mark.parametrize("scenario,keys,cause,proven,truth,says", TIES,
                         ids=[f"{t[0]}-{t[1]}-keys" for t in TIES])
def test_lab_tie_gets_one_cause_with_keys(scenario, keys, cause, proven, truth, says):
    """With one side's keys, each look-alike of the lab gets the cause its daemon log states, as the single top
    cause with evidence "decrypted" where the decrypted payloads prove it."""
    logs = [LAB / f"{scenario}.{side}.keys.log" for side in (("init", "resp") if keys == "both" else (keys,))]
    log = LAB / f"{scenario}.{truth}.log"
    for keys_log in logs:
        if not keys_log.is_file():
            pytest.skip(f"{keys_log.name} not recorded (pcaps/lab/record.py records the keys logs)")
    text = log.read_text(errors="replace")
    assert all(re.search(s, text) for s in says), f"{log.name} no longer says {says}"
    result = pipeline.read_captures([str(LAB / f"{scenario}.outside.pcap")],
                                    pipeline.Options(keys=load_keys([str(k) for k in logs])))
    stalls = [f for f in result.findings if f.code == "stall"]
    assert len(stalls) == 1, [f.summary for f in stalls]
    found = stalls[0]
    assert found.causes[0] == cause, found.summary
    if proven:
        assert found.evidence == "decrypted" and f"The decrypted payloads show {said(cause)}: " in found.summary, \
            found.summary
    else:
        assert found.evidence == ""


def test_ikev2_authentication_failed_quotes_the_ids():
    """Where the payloads cannot decide (IKEv2 AUTHENTICATION_FAILED with PSK), the stall quotes what the
    request carried, so the admin compares it with the responder's configuration."""
    keys_log = LAB / "ikev2-peerid-mismatch.init.keys.log"
    if not keys_log.is_file():
        pytest.skip(f"{keys_log.name} not recorded")
    result = pipeline.read_captures([str(LAB / "ikev2-peerid-mismatch.outside.pcap")],
                                    pipeline.Options(keys=load_keys([str(keys_log)])))
    stall = next(f for f in result.findings if f.code == "stall")
    assert "IDi=ID_FQDN:intruder.example.net" in stall.summary and stall.evidence == ""


def _json(capture: Path, keys) -> dict:
    spool = MessageSpool(1)
    p = pipeline.Pipeline(pipeline.Options(keys=keys), [spool.add])
    p.read([str(capture)])
    result = p.conclude()
    out = io.StringIO()
    write(out, build(result.model, result.infos, result.findings, result.verdicts), spool)
    return json.loads(out.getvalue())


def test_json_fields():
    """With keys: messages[] carry decrypted, the inner payloads (names, types, decoded) and their text, and the
    decrypted notifies join `notify`; a finding the payloads decided says so.  Without keys: none of them."""
    public = need_public()
    capture = public / WIRESHARK / "captures/ikev2-decrypt-aes256gcm16.pcap"
    doc = _json(capture, load_keys([str(public / WIRESHARK / "config")]))
    auth = next(m for m in doc["messages"] if m["exchange"] == "IKE_AUTH" and m["request"])
    assert auth["decrypted"] is True and auth["inner_payload_types"] == [35, 41, 36, 39, 33, 44, 45, 41, 41]
    assert auth["inner_payloads"][:4] == ["IDi", "N", "IDr", "AUTH"]
    assert auth["inner"][0]["value"] == "192.168.1.2" and auth["inner"][3]["method_name"] == "PSK"
    assert {"type": 16384, "name": "INITIAL_CONTACT"} in auth["notify"]
    assert auth["inner_text"].startswith("IDi=ID_IPV4_ADDR:192.168.1.2 N(INITIAL_CONTACT)")
    plain = _json(capture, None)
    assert doc["schema"] == plain["schema"] == 3
    assert all("decrypted" not in m for m in plain["messages"]) and all("evidence" not in f for f in plain["findings"])
    keys_log = LAB / "ikev2-subnet-mismatch.init.keys.log"
    if keys_log.is_file():
        lab = _json(LAB / "ikev2-subnet-mismatch.outside.pcap", load_keys([str(keys_log)]))
        assert [f["evidence"] for f in lab["findings"] if f["code"] == "stall"] == ["decrypted"]


@pytest.mark.parametrize("scenario,variant", [
    ("ikev1-main-psk-mismatch", "hash(hash(g^xi | g^xr) | message ID)"),  # charon never took MM5's block
    ("ikev1-peerid-mismatch", "hash(the last block of MM5 | message ID)"),
    ("ikev1-libreswan-peerid-mismatch", decryption.V1_IV_EMPTY),  # pluto 4.10: its phase-1 IV still empty
])
def test_phase1_informational_iv(scenario, variant):
    """The IV variant that verified for the responder's Informational refusing MM5, by implementation."""
    who = "resp" if scenario == "ikev1-main-psk-mismatch" else "init"
    keys_log = LAB / f"{scenario}.{who}.keys.log"
    if not keys_log.is_file():
        pytest.skip(f"{keys_log.name} not recorded")
    result = pipeline.read_captures([str(LAB / f"{scenario}.outside.pcap")],
                                    pipeline.Options(keys=load_keys([str(keys_log)])))
    sa = next(iter(result.model.sas.values()))
    assert set(sa.decryption.variants.values()) == {variant}


@pytest.mark.parametrize("scenario", ["ikev1-main-ok", "ikev1-aggr-ok", "ikev1-rekey-delete", "ikev2-ok",
                                      "ikev2-rekey-delete", "ikev1-cert-untrusted", "ikev2-eap-failed"])
def test_lab_keys_decrypt_every_message(scenario):
    """With the initiator's charon log every encrypted message verifies: Aggressive Mode's AM3, Quick Modes and
    Informationals after a rekey, IKEv1 fragments, EAP rounds, and the IKE SA that a CREATE_CHILD_SA rekeyed
    (its algorithms come from that decrypted exchange: it has no IKE_SA_INIT)."""
    keys_log = LAB / f"{scenario}.init.keys.log"
    if not keys_log.is_file():
        pytest.skip(f"{keys_log.name} not recorded")
    result = pipeline.read_captures([str(LAB / f"{scenario}.outside.pcap")],
                                    pipeline.Options(keys=load_keys([str(keys_log)])))
    msgs = [m for sa in result.model.sas.values() for m in sa.messages
            if m.msg.encrypted or m.msg.decrypted is not None]
    assert msgs and all(m.msg.decrypted for m in msgs), [(m.label, m.msg.decrypt_note) for m in msgs
                                                         if not m.msg.decrypted]


def test_skf_fragments_put_together():
    """IKEv2 fragmentation (RFC 7383): each SKF fragment verifies on its own; the payloads of the whole message
    are read on the fragment that completes it (lab: an IKE_AUTH request with a certificate in 2 fragments)."""
    keys_log = LAB / "ikev2-cert-untrusted.init.keys.log"
    if not keys_log.is_file():
        pytest.skip(f"{keys_log.name} not recorded")
    result = pipeline.read_captures([str(LAB / "ikev2-cert-untrusted.outside.pcap")],
                                    pipeline.Options(keys=load_keys([str(keys_log)])))
    fragments = [m.msg for sa in result.model.sas.values() for m in sa.messages if m.msg.payload("SKF")]
    assert [m.decrypted for m in fragments] == [True, True]
    assert fragments[0].inner == [] and decryption.text(fragments[0]) == "fragment 1/2"
    assert [p.name for p in fragments[1].inner][:5] == ["IDi", "CERT", "N", "CERTREQ", "IDr"]


# -- both daemons' keys logs (issue 11 follow-ups) ---------------------------------------------

SCENARIOS = json.loads((LAB / "scenarios.json").read_text())["scenarios"] if (LAB / "scenarios.json").is_file() else []
RESPONDER = bytes([203, 0, 113, 2])  # scenarios.json "addresses": the responder, the same at both capture points
GENERATING = re.compile(r"generating \S+ (?:request|response) (\d+) \[ (.*) \]")


def _both(scenario: str) -> KeyRing:
    """The keys of both daemons' logs; a log without keys (pluto's, a failed negotiation) is left out."""
    return load_keys([str(LAB / f"{scenario}.{side}.keys.log") for side in ("init", "resp")], warn=lambda _: None)


def _generated(log: Path) -> set[tuple[int, tuple[str, ...]]]:
    """(message ID, payload names in wire order) of each message a charon log says it generated, in our names
    (notify types and EAP codes dropped: charon shortens them)."""
    names = {"No": "NONCE", "CR": "CERTREQ", "CPRQ": "CP", "CPRP": "CP", "CPS": "CP", "CPA": "CP"}
    return {(int(m[1]), tuple(names.get(t, t) for t in re.sub(r"\([^)]*\)|/\S*", "", m[2]).split()))
            for m in GENERATING.finditer(log.read_text(errors="replace"))}


@pytest.mark.parametrize("sc", [s for s in SCENARIOS if (LAB / s["files"]["init_keys"]).is_file()],
                         ids=lambda s: s["scenario"])
def test_lab_both_logs_every_message_as_its_sender_logged(sc):
    """With both daemons' keys logs every encrypted message of the lab verifies (PSK mismatches too: each side's
    messages under its own key), and what it holds is what its sender's charon log says it generated: the same
    payloads in the same order for that message ID (pluto logs name none; its messages are checked for
    decrypting only)."""
    name = sc["scenario"]
    try:
        ring = _both(name)
    except KeySourceError:
        return  # no keys derived on either side (a phase-1 proposal refused, nothing answered): nothing encrypted
    logs = {side: _generated(LAB / f"{name}.{side}.log") for side in ("init", "resp")}
    result = pipeline.read_captures([str(LAB / f"{name}.inside.pcap")], pipeline.Options(keys=ring))
    seen = [m for sa in result.model.sas.values() for m in sa.messages
            if m.msg.encrypted or m.msg.decrypted is not None]
    assert all(m.msg.decrypted for m in seen), [(m.ref, m.label, m.msg.decrypt_note) for m in seen
                                                if not m.msg.decrypted]
    for m in seen:
        side = "resp" if m.src == RESPONDER else "init"
        if m.msg.inner and logs[side]:
            ours = tuple({"ATTR": "CP", "CR": "CERTREQ"}.get(p.name, p.name) for p in m.msg.inner)
            assert (m.msg.message_id, ours) in logs[side], (m.ref, m.label, ours)


def _dump(log: Path, name: str) -> bytes:
    """The first hex dump called `name` in a charon log."""
    text = log.read_text(errors="replace")
    m = re.search(rf"> {re.escape(name)} => (\d+) bytes @ 0x\w+\n((?:.*\] <[^>]*> +\d+: .*\n)+)", text)
    return bytes.fromhex("".join(re.findall(r"\d+: ((?:[0-9A-F]{2} )+)", m[2])).replace(" ", ""))[:int(m[1])]


@pytest.mark.parametrize("scenario,truth", [
    # each daemon could not read the other's messages: the responder 4 MM5s, the initiator 4 INFOs
    ("ikev1-main-psk-mismatch", [("resp", "could not decrypt payloads", 4), ("init", "could not decrypt payloads", 4)]),
    # only the initiator's INFO refusing AM2 is encrypted (AM2 is clear): it found HASH_R wrong
    ("ikev1-aggr-psk-mismatch", [("init", r"calculated HASH does not match HASH payload", 1)]),
])
def test_psk_mismatch_both_logs_each_side_opens_under_its_own_key(scenario, truth):
    """IKEv1 PSK mismatch with both logs: every encrypted message decrypts, each under the key of its sender's
    own log and not the other's (the other daemon's log says it could not read it), and `proof` says so."""
    ring = _both(scenario)
    assert len(ring.ikev1_all(ring.all()[0].icookie)) == 2  # one cookie, two different keys
    for side, said, count in truth:
        assert len(re.findall(said, (LAB / f"{scenario}.{side}.log").read_text())) == count, (side, said)
    result = pipeline.read_captures([str(LAB / f"{scenario}.outside.pcap")], pipeline.Options(keys=ring))
    (sa,) = result.model.sas.values()
    seen = [m for m in sa.messages if m.msg.encrypted]
    assert seen and all(m.msg.decrypted for m in seen)
    for m in seen:
        own = f"{scenario}.{'init' if m.sender == 'I' else 'resp'}.keys.log"
        assert Path(sa.decryption.opener(m.msg).source).name == own and f"{own} only" in m.msg.decrypt_note
    proof = sa.decryption.proof(sa.messages)
    assert f"{scenario}.init.keys.log opens the initiator's" in proof and "different keys" in proof
    if len(truth) == 2:
        assert f"{scenario}.resp.keys.log opens the responder's INFO" in proof and "its own key" in proof
    else:
        assert f"{scenario}.resp.keys.log opens none of them" in proof


@pytest.mark.parametrize("scenario,side", [
    ("ikev1-main-psk-mismatch", "resp"),  # charon's INFO refusing MM5 it could not decrypt
    ("ikev1-aggr-psk-mismatch", "init"),  # charon's INFO refusing AM2
    ("ikev1-libreswan-peerid-mismatch", "init"),  # pluto's, IV hash(message ID); same PSK: the initiator's SKEYID_a
])
def test_phase1_informational_hash_verifies(scenario, side):
    """The whole of an Informational sent before phase 1 ended decrypts, its HASH included: HASH(1) =
    prf(SKEYID_a, M-ID | N) (RFC 2409 5.7) with SKEYID_a from the charon log, so the IV variant is right."""
    import hmac
    result = pipeline.read_captures([str(LAB / f"{scenario}.outside.pcap")], pipeline.Options(keys=_both(scenario)))
    (sa,) = result.model.sas.values()
    skeyid_a = _dump(LAB / f"{scenario}.{side}.keys.log", "SKEYID_a")
    infos = [m.msg for m in sa.messages if m.label == "INFO"]
    assert infos
    for msg in infos:
        head, *rest = msg.inner
        chained = b"".join(bytes([nxt.type if nxt else 0, 0]) + p.length.to_bytes(2, "big") + p.body
                           for p, nxt in zip(rest, [*rest[1:], None]))
        want = hmac.digest(skeyid_a, msg.message_id.to_bytes(4, "big") + chained, "sha256")
        assert head.name == "HASH" and head.body == want, msg.message_id


def test_second_phase1_has_its_own_cookie_and_key():
    """IKEv1 rekeyed phase 1 (lab ikev1-rekey-delete): the new ISAKMP SA has another initiator cookie and its own
    key; both SAs decrypt whole under the key logged for their cookie, and their Delete payloads name them."""
    ring = _both("ikev1-rekey-delete")
    result = pipeline.read_captures([str(LAB / "ikev1-rekey-delete.outside.pcap")], pipeline.Options(keys=ring))
    sas = [sa for sa in result.model.sas.values() if sa.version == 1]
    assert len(sas) == 2 and sas[0].ispi != sas[1].ispi
    log = (LAB / "ikev1-rekey-delete.init.log").read_text()
    assert "IKE_SA lab[1] established" in log and "IKE_SA lab[2] established" in log
    deleted = set()
    for sa in sas:
        assert [k.icookie for k in sa.decryption.keys] == [sa.ispi]
        assert all(m.msg.decrypted for m in sa.messages if m.msg.encrypted)
        deleted |= {s for m in sa.messages for p in m.msg.inner if p.name == "D" for s in p.info["spis"]}
    assert {sa.ispi + sa.rspi for sa in sas} <= deleted
