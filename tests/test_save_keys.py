"""strongSwan's save-keys plugin output, as the plugin really wrote it (tests/keys_data/save-keys/, recorded with
record_save_keys.py there: the plugin built from Debian 12's strongswan source package and preloaded into the
packaged charon 5.9.8).  ikeflow reads each folder as a key source, decrypts every encrypted IKE message and
every ESP packet of the capture next to the tables, and tshark with the same folder as its configuration
directory decrypts the same messages to the same inner payloads and the same inner addresses."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import need_tshark
from ikeflow.cli import main
from ikeflow.keys import EspKey, IkeV1Key, IkeV2Keys, load_keys
from ikeflow.keys.wireshark import ESP_ENCR, ESP_INTEG, V2_ENCR, V2_INTEG

DATA = Path(__file__).resolve().parent / "keys_data" / "save-keys"
CASES = {"ikev2-ok": ("ikev2_decryption_table", "esp_sa"),
         "ikev1-main-ok": ("ikev1_decryption_table", "esp_sa")}
# IKEv1 payload types 2 (Proposal) and 3 (Transform) sit inside the SA payload: tshark lists them among the
# isakmp.typepayload fields, ikeflow's inner_payload_types holds top-level payloads only.  IKEv2 has no
# payload types 2 and 3, and its SK payload (46) is the outer one.
NESTED = {2, 3}
SK = 46


def _folder(name: str) -> Path:
    folder = DATA / name
    if not (folder / f"{name}.pcap").is_file():
        pytest.skip(f"{folder}/{name}.pcap not found")
    return folder


def _read(name: str) -> dict:
    folder = _folder(name)
    r = CliRunner().invoke(main, ["read", "--json", "--keys", str(folder), str(folder / f"{name}.pcap")])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _tshark(name: str, *fields: str) -> list[list[str]]:
    folder = _folder(name)
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(folder))
    cmd = [need_tshark(), "-n", "-r", str(folder / f"{name}.pcap"), "-o", "esp.enable_encryption_decode:TRUE",
           "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Error loading table" not in out.stderr, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_keys_reads_the_plugin_folder(name):
    """The folder holds the plugin's tables and the capture; the capture is skipped, the tables give one IKE SA
    and both directions of the child SA, with the algorithms the lab negotiates (aes128-sha256, ESP too)."""
    folder = _folder(name)
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".pcap") == sorted(CASES[name])
    said: list[str] = []
    ring = load_keys([str(folder)], warn=said.append)
    assert said == []
    v1 = name.startswith("ikev1")
    assert ring.counts == {"ikev1": 1 if v1 else 0, "ikev2": 0 if v1 else 1, "esp": 2}
    keys = ring.all()
    ike = [k for k in keys if isinstance(k, (IkeV1Key, IkeV2Keys))]
    esp = [k for k in keys if isinstance(k, EspKey)]
    doc = _read(name)
    sa = doc["ike_sas"][0]
    if v1:
        assert ike[0].icookie.hex() == sa["ispi"] and len(ike[0].enc_key) == 16
    else:
        k = ike[0]
        assert (k.spi_i.hex(), k.spi_r.hex()) == (sa["ispi"], sa["rspi"])
        assert (k.encr, k.integ) == ("aes-cbc", "hmac-sha2-256-128")
        assert len(k.sk_ei) == len(k.sk_er) == 16 and len(k.sk_ai) == len(k.sk_ar) == 32
    assert {(k.spi, k.src, k.dst) for k in esp} == {(int(f["spi"], 16), f["src"], f["dst"]) for f in doc["esp_flows"]}
    assert {(k.encr, k.integ, len(k.enc_key), len(k.auth_key)) for k in esp} == {("aes-cbc", "hmac-sha2-256-128", 16, 32)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_read_decrypts_every_message_and_esp_packet(name):
    doc = _read(name)
    encrypted = [m for m in doc["messages"] if m["flags"]["encrypted"]]
    # IKEv2: IKE_AUTH x2 and the Delete exchange; IKEv1: MM5, MM6, QM1-3 and two Informational Deletes
    assert len(encrypted) == (7 if name.startswith("ikev1") else 4)
    assert [m["frame"] for m in encrypted if m["decrypted"] is not True] == []
    assert all(m["decrypted"] is None for m in doc["messages"] if not m["flags"]["encrypted"])
    assert len(doc["esp_flows"]) == 2
    for flow in doc["esp_flows"]:
        inner = flow["inner"]
        assert inner["decrypted"] is True and inner["failed"] == 0 and inner["opened"] == flow["packets"] > 0
        assert inner["key_source"].endswith("esp_sa")
        assert sum(f["packets"] for f in inner["flows"]) == flow["packets"] and inner["other_packets"] == 0
        assert {f["protocol"] for f in inner["flows"]} == {1}   # the lab's pings


@pytest.mark.parametrize("name", sorted(CASES))
def test_tshark_decrypts_the_same_ike_payloads(name):
    """Per frame, tshark's payload types under the same tables (the nested SA contents and the outer SK left
    out) are ikeflow's inner payload types; IKEv2 frames also carry tshark's pad length, which it shows only
    for a decrypted SK payload."""
    rows = _tshark(name, "frame.number", "isakmp.typepayload", "isakmp.enc.pad_length", "isakmp.enc.icd")
    theirs = {}
    for frame, types, pad, icd in rows:
        if types:
            theirs[int(frame)] = ([int(t) for t in types.split(",")], pad, icd)
    doc = _read(name)
    encrypted = [m for m in doc["messages"] if m["flags"]["encrypted"]]
    assert encrypted
    for m in encrypted:
        types, pad, icd = theirs[m["frame"]]
        if m["version"] == 2:
            assert types[0] == SK and pad != "", f"frame {m['frame']}: tshark did not decrypt it"
            types = types[1:]
        assert [t for t in types if t not in NESTED] == m["inner_payload_types"], f"frame {m['frame']}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_tshark_decrypts_the_same_esp_packets(name):
    """tshark (esp.enable_encryption_decode) opens every ESP packet to the inner addresses ikeflow reports,
    per SPI and with the same counts."""
    rows = _tshark(name, "frame.number", "esp.spi", "ip.src", "ip.dst")
    theirs: dict[str, Counter] = {}
    for frame, spi, src, dst in rows:
        if not spi:
            continue
        srcs, dsts = src.split(","), dst.split(",")
        assert len(srcs) == len(dsts) == 2, f"frame {frame}: tshark did not decrypt the ESP packet"
        theirs.setdefault(f"{int(spi, 16):08x}", Counter())[(srcs[1], dsts[1])] += 1
    doc = _read(name)
    ours = {f["spi"]: Counter({(g["src"], g["dst"]): g["packets"] for g in f["inner"]["flows"]})
            for f in doc["esp_flows"]}
    assert ours == theirs and len(ours) == 2


# The algorithm names save_keys_listener.c (strongSwan 5.9.8) writes, copied from its ike_encr/ike_integ and
# esp_encr/esp_integ maps.  One is not Wireshark's: the plugin writes "TripleDes-CBC [RFC2451]" where
# packet-ipsec.c says "TripleDES-CBC [RFC2451]"; Wireshark 4.0 then refuses the whole esp_sa table
# ("Error loading table 'ESP SAs': esp_sa:1: invalid value") and so does ikeflow (unknown algorithm name).
PLUGIN_IKE_ENCR = ["3DES [RFC2451]", "NULL [RFC2410]",
                   *[f"AES-{m}-{b} [{r}]" for m, r in (("CBC", "RFC3602"), ("CTR", "RFC5930")) for b in (128, 192, 256)],
                   *[f"AES-{m}-{b} with {n} octet ICV [RFC5282]" for m in ("GCM", "CCM") for b in (128, 192, 256)
                     for n in (8, 12, 16)]]
PLUGIN_IKE_INTEG = ["HMAC_MD5_96 [RFC2403]", "HMAC_SHA1_96 [RFC2404]", "HMAC_MD5_128 [RFC4595]",
                    "HMAC_SHA1_160 [RFC4595]", "HMAC_SHA2_256_128 [RFC4868]", "HMAC_SHA2_384_192 [RFC4868]",
                    "HMAC_SHA2_512_256 [RFC4868]", "HMAC_SHA2_256_96 [draft-ietf-ipsec-ciph-sha-256-00]",
                    "NONE [RFC4306]"]
PLUGIN_ESP_ENCR = ["NULL", "AES-CBC [RFC3602]", "AES-CTR [RFC3686]", "DES-CBC [RFC2405]",
                   "CAST5-CBC [RFC2144]", "BLOWFISH-CBC [RFC2451]", "TWOFISH-CBC", "AES-GCM [RFC4106]"]
PLUGIN_ESP_INTEG = ["HMAC-SHA-1-96 [RFC2404]", "HMAC-MD5-96 [RFC2403]", "HMAC-SHA-256-128 [RFC4868]",
                    "HMAC-SHA-384-192 [RFC4868]", "HMAC-SHA-512-256 [RFC4868]",
                    "HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]",
                    *[f"ANY {n} bit authentication [no checking]" for n in (64, 96, 128, 192, 256)], "NULL"]


def test_every_other_plugin_algorithm_name_is_known():
    assert [n for n in PLUGIN_IKE_ENCR if n not in V2_ENCR] == []
    assert [n for n in PLUGIN_IKE_INTEG if n not in V2_INTEG] == []
    assert [n for n in PLUGIN_ESP_ENCR if n not in ESP_ENCR] == []
    assert [n for n in PLUGIN_ESP_INTEG if n not in ESP_INTEG] == []
