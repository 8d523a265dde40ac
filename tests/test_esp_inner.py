"""ESP opened with --keys: per SPI the inner hosts and protocols, checked against tshark decrypting the same
captures with the same key tables, and against what the lab recorder saw its pings do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import PCAPS, need_public, need_tshark
from ikeflow.keys import load_keys
from ikeflow.pipeline import Options, read_captures

WIKI = ("wireshark-wiki/uploads/dc5b30a117424e6ed21c726771a4006b/ipsec_ikev2+esp_aes-gcm_aes-ctr_aes-cbc.tgz/"
        "ipsec_ikev2+esp_aes-gcm,aes-ctr,aes-cbc")
ESP_BUG = ("wireshark/test/captures/esp-bug-12671.pcapng.gz", "wireshark/test/config/esp_sa.tmpl")
LAB = PCAPS / "lab"


def _ours(capture: Path, *keys: Path) -> Counter:
    """(SPI, inner source, inner destination, protocol) -> packets, from the model."""
    inner = read_captures([str(capture)], Options(keys=load_keys([str(k) for k in keys]))).model.esp_inner
    return Counter({(f"{t.spi:08x}", g.src, g.dst, g.proto): g.packets
                    for t in inner.traffic.values() for g in t.flows.values()})


def _tshark(capture: Path, tmp_path: Path, *tables: Path) -> Counter:
    """The same, from tshark decrypting with the same tables (its inner IP header is the second one)."""
    for table in tables:
        shutil.copy(table, tmp_path / table.name.removesuffix(".tmpl"))
    out = subprocess.run([need_tshark(), "-r", str(capture), "-o", "esp.enable_encryption_decode:TRUE", "-Y", "esp",
                          "-T", "fields", "-E", "occurrence=a", "-e", "esp.spi", "-e", "ip.src", "-e", "ip.dst",
                          "-e", "ip.proto"], env=dict(os.environ, WIRESHARK_CONFIG_DIR=str(tmp_path)),
                         capture_output=True, text=True, timeout=120).stdout
    seen = Counter()
    for line in out.splitlines():
        spi, src, dst, proto = (c.split(",") for c in line.split("\t"))
        if len(src) > 1:
            seen[(f"{int(spi[0], 16):08x}", src[1], dst[1], int(proto[1]))] += 1
    return seen


def test_wiki_ikev2_esp_inner_hosts_agree_with_tshark(tmp_path):
    """Three NAT-T connections (AES-GCM, AES-CTR, AES-CBC): each SPI's pings, host by host, as tshark has them."""
    folder = need_public() / WIKI
    tables = (folder / "ikev2_decryption_table", folder / "esp_sa")
    ours = _ours(folder / "capture.pcapng", *tables)
    assert sum(ours.values()) == 24 and ours == _tshark(folder / "capture.pcapng", tmp_path, *tables)


def test_wireshark_esp_capture_agrees_with_tshark(tmp_path):
    public = need_public()
    capture, table = public / ESP_BUG[0], public / ESP_BUG[1]
    ours = _ours(capture, table)
    assert sum(ours.values()) == 6 and ours == _tshark(capture, tmp_path, table)


def test_lab_pings_through_the_tunnel_with_the_daemons_keys():
    """ikev1-main-ok: the recorder pinged 3 times each way (scenarios.json), so each direction's SPI carries
    3 echo requests and 3 replies between the protected hosts; with the initiator's level-4 log as the key."""
    scenario = next(s for s in json.loads((LAB / "scenarios.json").read_text())["scenarios"]
                    if s["scenario"] == "ikev1-main-ok")
    assert scenario["recorder_observations"] == ["ping 198.51.100.1 -> 198.51.100.17: 3 sent, 3 replies",
                                                 "ping 198.51.100.17 -> 198.51.100.1: 3 sent, 3 replies"]
    for point in ("inside", "outside"):
        ours = _ours(LAB / f"ikev1-main-ok.{point}.pcap", LAB / "ikev1-main-ok.init.keys.log")
        assert sorted((src, dst, proto, n) for (_, src, dst, proto), n in ours.items()) == [
            ("198.51.100.1", "198.51.100.17", 1, 6), ("198.51.100.17", "198.51.100.1", 1, 6)]


def test_json_and_terminal_show_it_only_with_keys(tmp_path):
    capture = LAB / "ikev2-ok.outside.pcap"
    keys = LAB / "ikev2-ok.init.keys.log"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "ikeflow", "read", *args, str(capture)], capture_output=True,
                              text=True)

    plain = json.loads(run("--json").stdout)
    assert plain["esp_flows"] and all("inner" not in f for f in plain["esp_flows"])
    keyed = json.loads(run("--json", "--keys", str(keys)).stdout)
    assert all(f["inner"]["decrypted"] is True and f["inner"]["flows"] for f in keyed["esp_flows"])
    assert "Inside the ESP" in run("--width", "80", "--keys", str(keys)).stdout


def test_a_wrong_esp_key_is_reported_not_used(tmp_path):
    """The esp_sa line of one SPI with one byte changed: in the authentication key every packet fails its ICV;
    in the encryption key the ICV holds but the padding does not (RFC 4303 2.4). Nothing is counted as opened."""
    public = need_public()
    table = (public / ESP_BUG[1]).read_text()
    for old, new, why in (("0x51c9213c", "0x51c9213d", "ICV"), ("0x5de1a4c2", "0x5de1a4c3", "padding")):
        wrong = tmp_path / "esp_sa"
        wrong.write_text(table.replace(old, new))
        inner = read_captures([str(public / ESP_BUG[0])], Options(keys=load_keys([str(wrong)]))).model.esp_inner
        bad = [t for t in inner.traffic.values() if t.spi == 0x070883C2]
        assert bad and bad[0].verified is False and bad[0].failed == 3 and why in bad[0].reason and not bad[0].flows


def test_json_says_which_keys_were_given():
    """`keys` (only with --keys): how many keys of each kind, and the sources that held none, with why."""
    name = "ikev2-libreswan-psk-mismatch"
    r = subprocess.run([sys.executable, "-m", "ikeflow", "read", "--json", "--keys", str(LAB / f"{name}.init.keys.log"),
                        "--keys", str(LAB / f"{name}.resp.keys.log"), str(LAB / f"{name}.outside.pcap")],
                       capture_output=True, text=True)
    doc = json.loads(r.stdout)
    assert doc["keys"]["ikev2"] == 1 and doc["keys"]["esp"] == 0
    assert len(doc["keys"]["notes"]) == 1 and "pluto" in doc["keys"]["notes"][0] and "warning" in r.stderr
