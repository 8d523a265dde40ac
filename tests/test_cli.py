"""The command line as a user and a script see it: exit codes, bad input, JSON schema."""

import json
import subprocess
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_SA
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

SCHEMA_KEYS = {"schema", "capture", "stats", "messages", "esp_flows", "ike_sas", "findings"}
MESSAGE_KEYS = {"frame", "time", "src", "dst", "sport", "dport", "natt", "version", "exchange_type", "exchange", "ispi",
                "rspi", "message_id", "flags", "label", "payloads", "notify", "retransmission", "malformed"}
FLOW_KEYS = {"src", "dst", "spi", "encap", "packets", "bytes", "first_time", "last_time", "seq_first", "seq_last", "lost",
             "duplicates"}
SA_KEYS = {"ispi", "rspi", "version", "mode", "initiator", "responder", "state", "messages", "nat", "proposal"}
FINDING_KEYS = {"severity", "code", "at", "causes", "frames", "summary", "hint"}
STATS_KEYS = {"packets", "ike", "esp", "keepalives", "icmp", "malformed", "skipped"}


def ikeflow(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "ikeflow", *args], input=stdin, capture_output=True)


def mm1_pcap(path, count=1):
    pkt = Ether() / IP(src="192.0.2.1", dst="203.0.113.1") / UDP(sport=500, dport=500) / ISAKMP(
        init_cookie=b"\x01" * 8, exch_type=2) / ISAKMP_payload_SA()
    pkts = [pkt.copy() for _ in range(count)]
    for n, p in enumerate(pkts):
        p.time = 1700000000 + 2 * n
    wrpcap(str(path), pkts)
    return path


def test_version_and_help():
    r = ikeflow("--version")
    assert r.returncode == 0 and b"ikeflow" in r.stdout
    r = ikeflow("read", "--help")
    assert r.returncode == 0 and b"tcpdump" in r.stdout and b"Exit codes" in r.stdout


def test_json_document_has_the_documented_keys(tmp_path):
    r = ikeflow("read", "--json", str(mm1_pcap(tmp_path / "a.pcap", 3)))
    doc = json.loads(r.stdout)
    assert doc["schema"] == 3 and SCHEMA_KEYS <= set(doc)
    assert STATS_KEYS <= set(doc["stats"])
    (m,) = doc["messages"][:1]
    assert MESSAGE_KEYS <= set(m)
    assert m["ispi"] == "01" * 8 and len(m["rspi"]) == 16 and m["label"] == "MM1" and m["frame"] == 1
    assert set(m["flags"]) == {"initiator", "response", "encrypted", "commit"}
    assert SA_KEYS <= set(doc["ike_sas"][0])
    assert all(FINDING_KEYS <= set(f) for f in doc["findings"])
    # MM1 sent three times, never answered: an error finding, exit code 1
    assert r.returncode == 1
    stall = [f for f in doc["findings"] if f["code"] == "stall"][0]
    assert stall["at"] == "MM1" and stall["frames"] == [1, 2, 3]


def test_esp_flow_keys(tmp_path):
    from scapy.layers.ipsec import ESP

    p = tmp_path / "e.pcap"
    wrpcap(str(p), [Ether() / IP(src="192.0.2.1", dst="203.0.113.1") / ESP(spi=0xABC, seq=s, data=b"x" * 16)
                    for s in (1, 2, 3)])
    doc = json.loads(ikeflow("read", "--json", str(p)).stdout)
    (flow,) = doc["esp_flows"]
    assert FLOW_KEYS <= set(flow) and flow["spi"] == "00000abc" and flow["encap"] == "esp" and flow["packets"] == 3


def test_stdin(tmp_path):
    data = mm1_pcap(tmp_path / "a.pcap").read_bytes()
    r = ikeflow("read", "--json", "-", stdin=data)
    assert json.loads(r.stdout)["stats"]["ike"] == 1


def test_not_a_capture_is_one_line_exit_2(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is not a capture\n")
    r = ikeflow("read", str(p))
    assert r.returncode == 2
    assert b"Traceback" not in r.stderr and len(r.stderr.decode().strip().splitlines()) == 1
    assert b"not a pcap" in r.stderr


def test_missing_file_exit_2():
    r = ikeflow("read", "/nonexistent/x.pcap")
    assert r.returncode == 2 and b"Traceback" not in r.stderr


def test_usage_error_exit_2():
    r = ikeflow("read")
    assert r.returncode == 2


def test_truncated_capture_warns_and_analyses(tmp_path):
    p = mm1_pcap(tmp_path / "a.pcap", 2)
    p.write_bytes(p.read_bytes()[:-5])
    r = ikeflow("read", "--json", str(p))
    assert r.returncode in (0, 1) and b"warning" in r.stderr and b"byte" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["stats"]["packets"] == 1 and doc["capture"]["files"][0]["truncated_at"] is not None


def test_terminal_report_has_no_colour_codes_off_a_tty(tmp_path):
    r = ikeflow("read", str(mm1_pcap(tmp_path / "a.pcap", 3)))
    assert b"\x1b[" not in r.stdout and b"MM1" in r.stdout and b"phase 1 fails at MM1" in r.stdout


def test_max_options_cap_the_state_and_say_so(tmp_path):
    """--max-sas N keeps N IKE SAs; the others' messages still count in stats, in one overflow finding."""
    pkts = [Ether() / IP(src="192.0.2.1", dst="203.0.113.1") / UDP(sport=500, dport=500) / ISAKMP(
        init_cookie=bytes([n + 1]) * 8, exch_type=2) / ISAKMP_payload_SA() for n in range(5)]
    path = tmp_path / "five.pcap"
    wrpcap(str(path), pkts)
    for command in (["read", str(path)], ["compare", str(path), str(path)]):
        r = ikeflow(*command, "--json", "--max-sas", "2")
        doc = json.loads(r.stdout)
        doc = doc if command[0] == "read" else doc["points"][0]
        assert doc["stats"]["overflow"] == {"ike_sas": 3} and doc["stats"]["ike"] == 5
    found = [f for f in json.loads(ikeflow("read", str(path), "--json", "--max-sas", "2").stdout)["findings"]
             if f["code"] == "overflow"]
    assert len(found) == 1 and "--max-sas" in found[0]["hint"]
    assert ikeflow("read", str(path), "--max-sas", "0").returncode == 2


def test_every_command_is_listed():
    """A command whose module fails to import must fail loudly, not vanish from --help."""
    out = ikeflow("--help").stdout.decode()
    assert all(f"  {name} " in out for name in ("compare", "live", "read"))
