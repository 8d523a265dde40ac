"""The lab's configurations and keys logs (pcaps/lab/record.py) against its own captures.

The captures are read with tshark (the oracle): every IKE SA that got past its Diffie-Hellman exchange
(IKEv2 IKE_SA_INIT response, IKEv1 MM4/AM2 with a KE payload) and every ESP SPI seen on the wire must be
found, with its key dumps, in the keys logs of the charon daemons that computed them.
"""

import functools
import ipaddress
import json
import re
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
