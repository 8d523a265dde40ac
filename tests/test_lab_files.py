"""The lab's configurations and keys logs (pcaps/lab/record.py) against its own captures.

The captures are read with tshark (the oracle): every IKE SA that got past its Diffie-Hellman exchange
(IKEv2 IKE_SA_INIT response, IKEv1 MM4/AM2 with a KE payload) and every ESP SPI seen on the wire must be
found, with its key dumps, in the keys logs of the charon daemons that computed them; and tshark, given
those keys as Wireshark key tables, decrypts the IKE messages and the ESP of the captures.
"""

import functools
import ipaddress
import json
import re
import os
import subprocess

import pytest

from conftest import PCAPS, need_tshark

LAB = PCAPS / "lab"
SCENARIOS = json.loads((LAB / "scenarios.json").read_text())["scenarios"]
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
RESPONDER = "203.0.113.2"                          # never behind the NAT in the lab
IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
KE_PAYLOAD = {1: "4", 2: "34"}                     # ISAKMP payload type of KE (RFC 2408 3.1 / RFC 7296 3.2)
DH_EXCHANGES = {1: ("2", "4"), 2: ("34",)}          # Main, Aggressive / IKE_SA_INIT
IKEV2_AFTER_INIT = ("35", "36", "37", "43")         # IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, INTERMEDIATE
IKE_KEYS = {1: ("SKEYID_e", "encryption key Ka"), 2: ("Sk_ei secret", "Sk_er secret", "Sk_ai secret", "Sk_ar secret")}
BEFORE_KEYS = ("MM1", "MM2", "MM3", "AM1", "IKE_SA_INIT")   # stall points before the responder's KE
ESP_KEYS = ("encryption initiator key", "encryption responder key",
            "integrity initiator key", "integrity responder key")


def dump(text: str, name: str) -> str:
    """The first hex dump called `name` in a charon log, as lowercase hex."""
    m = re.search(rf"> {re.escape(name)} => (\d+) bytes @ 0x\w+\n((?:.*\] <[^>]*> +\d+: .*\n)+)", text)
    hexes = "".join(re.findall(r"\d+: ((?:[0-9A-F]{2} )+)", m.group(2))).replace(" ", "")
    return hexes[:2 * int(m.group(1))].lower()


def dumps(text: str) -> set[str]:
    """Names of charon's hex dumps ('NAME => N bytes @ 0x...') in a log."""
    return set(re.findall(r"> (.+?) => \d+ bytes @ 0x", text))


@functools.cache
def wire(name: str) -> list[dict]:
    """IKE and ESP packets of one capture, as tshark reads them."""
    fields = ["ip.src", "ip.dst", "isakmp.version", "isakmp.ispi", "isakmp.rspi", "isakmp.exchangetype",
              "isakmp.flags", "isakmp.nextpayload", "esp.spi"]
    out = subprocess.run([need_tshark(), "-r", str(LAB / name), "-T", "fields",
                          *sum((["-e", f] for f in fields), []), "-E", "aggregator=,"],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("\t"))) for line in out.splitlines()]


def keyed(pkts: list[dict], side: str) -> set[tuple[int, str, str]]:
    """(version, SPIi, SPIr) of the IKE SAs for which these packets show that `side` derived keys.

    Both sides have keys once the responder's KE payload is out (IKEv1 MM4/AM2, IKEv2 IKE_SA_INIT
    response); except that charon 5.9 as an IKEv2 responder derives them only when the first IKE_AUTH
    request arrives."""
    sas = set()
    for p in pkts:
        if not p["isakmp.version"] or "," in p["ip.src"]:   # not IKE, or an ICMP error quoting IKE
            continue
        version = int(p["isakmp.version"].split(",")[0], 16) >> 4
        spi_i, spi_r = p["isakmp.ispi"].split(",")[0], p["isakmp.rspi"].split(",")[0]
        xch, from_resp = p["isakmp.exchangetype"].split(",")[0], p["ip.src"] == RESPONDER
        if version == 2 and side == "resp":
            if not from_resp and xch in IKEV2_AFTER_INIT:
                sas.add((version, spi_i, spi_r))
        elif (from_resp and xch in DH_EXCHANGES[version] and spi_r != "0000000000000000"
              and KE_PAYLOAD[version] in p["isakmp.nextpayload"].split(",")):
            sas.add((version, spi_i, spi_r))
    return sas


def charon_sides(sc: dict) -> list[str]:
    return ["init"] + ([] if "responder" in sc else ["resp"])


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s["scenario"])
def test_files_listed_and_present(sc):
    files = sc["files"]
    pluto = "responder" in sc
    wanted = {"inside_pcap", "outside_pcap", "init_log", "resp_log", "init_keys", "resp_keys",
              "init_conf", "resp_conf", "init_strongswan_conf"}
    wanted |= {"resp_secrets"} if pluto else {"resp_strongswan_conf"}
    assert wanted <= set(files), f"missing in scenarios.json files: {wanted - set(files)}"
    for key, name in files.items():
        assert (LAB / name).is_file(), f"{key}: {name} missing"
        assert name.startswith(sc["scenario"] + ".")
    assert files["resp_conf"].endswith(".ipsec.conf" if pluto else ".swanctl.conf")
    for key in ("init_conf", "resp_conf", "init_strongswan_conf", "resp_strongswan_conf"):
        if key in files:   # the per-run temp folder is a placeholder, so the files are stable
            text = (LAB / files[key]).read_text()
            assert "/tmp/" not in text and "ikf-lab-" not in text, key


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s["scenario"])
def test_configs_are_what_the_scenario_says(sc):
    """The saved configurations hold the connection and the secrets that decide the scenario."""
    f = sc["files"]
    init = (LAB / f["init_conf"]).read_text()
    resp = (LAB / f["resp_conf"]).read_text()
    assert re.search(rf"^\s*version = {sc['version']}$", init, re.M)
    assert "secrets {" in init or "auth = pubkey" in init
    if "responder" in sc:
        assert ("ikev2=insist" if sc["version"] == 2 else "ikev2=no") in resp
        assert "PSK" in (LAB / f["resp_secrets"]).read_text()
    else:
        assert "connections {" in resp
    if sc["expected_cause"] == "psk-mismatch":    # the two PSKs differ in the saved files
        psks = [re.findall(r"secret = (\S+)|PSK (\".*\")", t) for t in
                (init, (LAB / f.get("resp_secrets", f["resp_conf"])).read_text())]
        assert psks[0] and psks[1] and psks[0] != psks[1]
    if sc["expected_cause"] == "aggressive-mode-refused":
        assert "i_dont_care_about_security_and_use_aggressive_mode_psk" not in \
            (LAB / f["resp_strongswan_conf"]).read_text()


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s["scenario"])
def test_keys_for_every_sa_on_the_wire(sc):
    need_tshark()
    inside, outside = wire(sc["files"]["inside_pcap"]), wire(sc["files"]["outside_pcap"])
    # the initiator saw what reached the inside interface, the responder what left on the outside one
    seen = {"init": keyed(inside, "init"), "resp": keyed(outside, "resp")}
    esp_spis = {int(p["esp.spi"], 16) for p in inside + outside if p["esp.spi"]}
    for side in charon_sides(sc):
        text = (LAB / sc["files"][f"{side}_keys"]).read_text()
        names = dumps(text)
        for version, spi_i, spi_r in seen[side]:
            assert f"with SPIs {spi_i}_i {spi_r}_r" in text, f"{side}: IKE SA {spi_i}/{spi_r} not named"
            assert set(IKE_KEYS[version]) <= names, f"{side}: IKEv{version} keys missing"
        for spi in esp_spis:
            assert f"SPI 0x{spi:08x}," in text, f"{side}: ESP SPI {spi:08x} not named"
        if esp_spis:
            assert set(ESP_KEYS) <= names, f"{side}: ESP keys missing"
    if sc["expected_at"] not in BEFORE_KEYS:
        assert seen["init"], f"stalled at {sc['expected_at']}, after the DH exchange, yet no IKE SA with keys"


@pytest.mark.parametrize("sc", [s for s in SCENARIOS if "responder" in s], ids=lambda s: s["scenario"])
def test_pluto_keys_log(sc):
    """pluto 4.10 with plutodebug=private: its debug lines (the PSK it used) only in the keys log."""
    keys = (LAB / sc["files"]["resp_keys"]).read_text()
    log = (LAB / sc["files"]["resp_log"]).read_text()
    assert "plutodebug=private" in (LAB / sc["files"]["resp_conf"]).read_text()
    assert not re.search(r"^\S+ +\d+ [\d:.]+: \| ", log, re.M)
    if sc["version"] == 1:
        assert "| User PSK:" in keys
    assert len(keys) >= len(log)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s["scenario"])
def test_only_documentation_addresses(sc):
    """Configurations, logs and captures name only RFC 5737 addresses."""
    for key, name in sc["files"].items():
        if name.endswith(".pcap"):
            found = {a for p in wire(name) for f in ("ip.src", "ip.dst") for a in p[f].split(",") if a}
        else:
            found = set(IPV4.findall((LAB / name).read_text()))
        bad = [a for a in found if a != "0.0.0.0" and not a.startswith("127.")   # pluto names lo
               and not any(ipaddress.ip_address(a) in net for net in DOC_NETS)]
        assert not bad, f"{name}: {sorted(bad)}"


# Wireshark's key tables (packet-isakmp.c, packet-ipsec.c) for the lab's aes128-sha256 proposals
IKEV2_ALGS = ('"AES-CBC-128 [RFC3602]"', '"HMAC_SHA2_256_128 [RFC4868]"')
ESP_ALGS = ('"AES-CBC [RFC3602]"', '"HMAC-SHA-256-128 [RFC4868]"')


def tshark_with_keys(tmp_path, name: str, side: str | None, fields: list[str]) -> list[list[str]]:
    """tshark's reading of NAME.inside.pcap with Wireshark key tables written from NAME.SIDE.keys.log
    (side None: without keys)."""
    text = (LAB / f"{name}.{side}.keys.log").read_text() if side else ""
    if "Sk_ei secret" in text:
        spi_i, spi_r = re.search(r"with SPIs (\w{16})_i (\w{16})_r", text[text.index("Sk_ei secret"):]).groups()
        k = [dump(text, f"Sk_{x} secret") for x in ("ei", "er", "ai", "ar")]
        (tmp_path / "ikev2_decryption_table").write_text(
            f"{spi_i},{spi_r},{k[0]},{k[1]},{IKEV2_ALGS[0]},{k[2]},{k[3]},{IKEV2_ALGS[1]}\n")
    elif "encryption key Ka" in text:
        spi_i = re.search(r"with SPIs (\w{16})_i (\w{16})_r", text[text.index("encryption key Ka"):]).group(1)
        (tmp_path / "ikev1_decryption_table").write_text(f"{spi_i},{dump(text, 'encryption key Ka')}\n")
    if "encryption initiator key" in text:   # the first CHILD SA: initiator->responder keys first
        keys = {d: (dump(text, f"encryption {d} key"), dump(text, f"integrity {d} key"))
                for d in ("initiator", "responder")}
        rows = [f'"IPv4","*","*","0x{spi}",{ESP_ALGS[0]},"0x{keys[d][0]}",{ESP_ALGS[1]},"0x{keys[d][1]}"'
                for spi, src in re.findall(r"SPI 0x(\w{8}), src (\S+) dst", text)[:2]
                for d in ["initiator" if src == "192.0.2.2" else "responder"]]
        (tmp_path / "esp_sa").write_text("\n".join(rows) + "\n")
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(tmp_path))
    out = subprocess.run([need_tshark(), "-r", str(LAB / f"{name}.inside.pcap"),
                          "-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE",
                          "-T", "fields", *sum((["-e", f] for f in fields), [])],
                         capture_output=True, text=True, check=True, env=env).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.parametrize("name", ["ikev2-ok", "ikev2-nat-ok", "ikev1-main-ok", "ikev1-aggr-ok"])
def test_wireshark_decrypts_with_the_logged_keys(tmp_path, name):
    """The keys logs are right: tshark, given them as its key tables, reads both IDs inside the encrypted
    IKE messages and the pings inside the ESP (ICV verified)."""
    rows = tshark_with_keys(tmp_path, name, "init", ["isakmp.id.data.fqdn", "icmp.type", "esp.icv_good"])
    assert {"init.example.net", "resp.example.net"} <= {v for r in rows for v in r[0].split(",")}
    pings = [r for r in rows if r[1] and r[2]]
    assert len(pings) == 12 and all(r[2] == "1" for r in pings)   # 3 pings each way, echo + reply


@pytest.mark.parametrize("name, side, ids, notifies", [
    # IKEv2: the SK keys come from the DH exchange alone, so the AUTHENTICATION_FAILED answer decrypts
    # (AUTHENTICATION_FAILED; from IKE_AUTH INITIAL_CONTACT, EAP_ONLY_AUTHENTICATION, IKEV2_MESSAGE_ID_SYNC_SUPPORTED)
    ("ikev2-psk-mismatch", "init", {"init.example.net", "resp.example.net"}, {"24", "16384", "16417", "16420"}),
    # IKEv1: the PSK is in SKEYID, so each side's keys decrypt only what that side sent: the initiator's MM5
    ("ikev1-main-psk-mismatch", "init", {"init.example.net"}, {"24578"}),   # INITIAL-CONTACT
    ("ikev1-main-psk-mismatch", "resp", set(), set())])
def test_wireshark_decrypts_psk_mismatch_as_far_as_the_keys_agree(tmp_path, name, side, ids, notifies):
    """What the keys add to tshark's reading: the IDs and notifies inside the encrypted messages."""
    fields = ["isakmp.id.data.fqdn", "isakmp.notify.msgtype"]
    (tmp_path / "keys").mkdir()
    (tmp_path / "none").mkdir()
    keyed, plain = (tshark_with_keys(tmp_path / d, name, s, fields) for d, s in (("keys", side), ("none", None)))
    for col, wanted in ((0, ids), (1, notifies)):
        values = [{v for r in rows for v in r[col].split(",") if v} for rows in (keyed, plain)]
        assert values[0] - values[1] == wanted
