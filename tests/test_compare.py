"""`ikeflow compare` on the lab's two-sided captures (inside = initiator side, before the NAT
router; outside = responder side, after it) and on a public capture split with known drops.

Ground truth: the lab recorder's router rules (what it drops, in which direction) in
pcaps/lab/SCENARIOS.md, and for the split capture the frames this test removes itself."""

import json
import subprocess
import sys

import pytest
from scapy.utils import rdpcap, wrpcap

from conftest import PCAPS, need_public

LAB = PCAPS / "lab"


def compare(*files):
    r = subprocess.run([sys.executable, "-m", "ikeflow", "compare", "--json", *map(str, files)], capture_output=True)
    return r.returncode, (json.loads(r.stdout) if r.stdout else None), r.stderr.decode()


def lab(scenario):
    code, doc, _ = compare(LAB / f"{scenario}.inside.pcap", LAB / f"{scenario}.outside.pcap")
    (seg,) = doc["segments"]
    return code, seg


@pytest.mark.parametrize("scenario", ["ikev1-main-nat-ok", "ikev2-nat-ok"])
def test_success_through_nat(scenario):
    code, seg = lab(scenario)
    assert code == 0 and not seg["findings"] and not seg["lost"]
    assert abs(seg["clock_offset"]) < 0.01  # both captures share the host's clock
    # the router masquerades 192.0.2.2 behind 203.0.113.1, with other ports for 500 and 4500
    mapped = {m["a"]: m["b"] for m in seg["nat_mappings"]}
    assert mapped["192.0.2.2:500"].startswith("203.0.113.1:") and mapped["192.0.2.2:4500"].startswith("203.0.113.1:")
    assert mapped["192.0.2.2:500"] != mapped["192.0.2.2:4500"]
    for way in ("A>B", "B>A"):  # everything sent either way arrived, once, in order
        d = seg["directions"][way]
        assert d["sent"] == d["arrived"] > 0 and d["lost"] == d["duplicated"] == d["reordered"] == 0
    assert all(e["a"]["packets"] == e["b"]["packets"] == 6 and e["lost"] == 0 for e in seg["esp"])


# scenario: (label lost, direction, first cause) -- the router's drop rule says where and which way
LOSSES = {
    "ikev1-udp500-blocked": ("MM1", "A>B", "path-blocked"),
    "ikev2-udp500-blocked": ("IKE_SA_INIT", "A>B", "path-blocked"),
    "ikev1-replies-dropped": ("MM2", "B>A", "reply-path-lost"),
    "ikev2-replies-dropped": ("IKE_SA_INIT", "B>A", "reply-path-lost"),
    "ikev1-udp4500-blocked": ("MM5", "A>B", "udp4500-blocked"),
    "ikev2-udp4500-blocked": ("IKE_AUTH", "A>B", "udp4500-blocked"),
    "ikev1-fragments-dropped": ("MM5", "A>B", "fragments-dropped"),
    "ikev2-fragments-dropped": ("IKE_AUTH", "A>B", "fragments-dropped"),
}


@pytest.mark.parametrize("scenario", sorted(LOSSES))
def test_where_the_lab_failures_lose_their_packets(scenario):
    label, direction, cause = LOSSES[scenario]
    code, seg = lab(scenario)
    assert code == 1
    assert {(x["label"], x["direction"]) for x in seg["lost"]} == {(label, direction)}
    (finding,) = [f for f in seg["findings"] if f["severity"] == "error"]
    assert finding["code"] == "lost-between-points" and finding["at"] == label and finding["causes"][0] == cause
    assert seg["directions"][direction]["lost"] == len(seg["lost"]) > 0


@pytest.mark.parametrize("scenario", ["ikev1-esp-oneway", "ikev2-esp-oneway"])
def test_esp_dropped_one_way(scenario):
    code, seg = lab(scenario)
    assert code == 1 and not seg["lost"]
    (finding,) = seg["findings"]
    assert finding["at"] == "ESP" and finding["causes"] == ["esp-blocked"]
    assert "-> 192.0.2.2" in finding["summary"]  # the responder's ESP towards the initiator is dropped


@pytest.mark.parametrize("scenario", ["ikev1-responder-down", "ikev2-responder-down"])
def test_requests_arrive_and_the_peer_host_answers_with_icmp(scenario):
    code, seg = lab(scenario)
    assert code == 1 and not seg["lost"]
    (finding,) = seg["findings"]
    assert finding["code"] == "unanswered-after-arrival" and finding["causes"] == ["peer-down"]


def test_a_dropped_answer_before_a_cookie_is_seen():
    """The lab makes strongSwan send a COOKIE by dropping the responder's first IKE_SA_INIT answer."""
    code, seg = lab("ikev2-nat-cookie")
    assert code == 0 and [x["direction"] for x in seg["lost"]] == ["B>A"]
    assert [f["severity"] for f in seg["findings"]] == ["warning"]


def test_public_capture_split_with_known_drops(tmp_path):
    """isakmp4500.pcap seen at a second point, 2.5 s later by its clock, that two of the initiator's
    messages never reached: frames 5 and 7 (MM3 and MM5)."""
    pkts = rdpcap(str(need_public() / "tcpdump/tests/isakmp4500.pcap"))
    far = []
    for n, p in enumerate(pkts, 1):
        if n in (5, 7):
            continue
        q = p.copy()
        q.time = p.time + 2.5
        far.append(q)
    wrpcap(str(tmp_path / "near.pcap"), pkts)
    wrpcap(str(tmp_path / "far.pcap"), far)
    code, doc, _ = compare(tmp_path / "near.pcap", tmp_path / "far.pcap")
    (seg,) = doc["segments"]
    assert abs(seg["clock_offset"] - 2.5) < 0.01
    lost = {(x["label"], x["frame"], x["direction"]) for x in seg["lost"]}
    assert lost == {("MM3", 5, "A>B"), ("MM5", 7, "A>B")}
    assert code == 1


def test_three_points_empty_capture_and_bad_input(tmp_path):
    inside, outside = LAB / "ikev1-main-nat-ok.inside.pcap", LAB / "ikev1-main-nat-ok.outside.pcap"
    code, doc, _ = compare(inside, inside, outside)
    assert code == 0 and len(doc["segments"]) == 2 and doc["segments"][0]["matched"] == 9
    empty = tmp_path / "empty.pcap"
    wrpcap(str(empty), [])
    code, doc, _ = compare(LAB / "ikev1-udp500-blocked.inside.pcap", empty)
    assert code == 1 and "nothing at all was captured" in doc["segments"][0]["findings"][0]["summary"]
    junk = tmp_path / "junk.pcap"
    junk.write_text("not a capture")
    code, doc, err = compare(inside, junk)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
