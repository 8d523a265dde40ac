"""The expected reading of the project's own captures (pcaps/lab), taken from
independent sources: tshark's view of each capture (exchange types, directions,
ports, notify types, ESP SPIs and counts, listed in the comments) and the lab
recorder's ground truth (3 pings each way through the tunnel = 6 ESP packets per
SPI; which scenarios have a NAT router).  Not from ikeflow's own output."""

import json

import pytest

from conftest import PCAPS
from ikeflow.pipeline import read_captures
from ikeflow.diagnose.findings import ERROR, find

LAB = PCAPS / "lab"
MM_QM = ["MM1", "MM2", "MM3", "MM4", "MM5", "MM6", "QM1", "QM2", "QM3"]
V2 = ["IKE_SA_INIT", "IKE_SA_INIT", "IKE_AUTH", "IKE_AUTH"]


def analyse(name):
    result = read_captures([str(LAB / name)])
    return result.model, result.infos


# scenario: (labels in capture order, float at, state, NAT between the capture points)
# tshark -Y isakmp -T fields -e isakmp.exchangetype -e udp.srcport -e udp.dstport -e isakmp.flags:
#   ikev1-main-*: 2,2,2,2 on 500; 2,2,32,32,32 on 4500 (flags 0x01)      -> MM1..MM6, QM1..QM3, float at MM5
#   ikev1-aggr-ok: 4,4 on 500; 4,32,32,32 on 4500                         -> AM1..AM3, QM1..QM3, float at AM3
#   ikev2-ok / -nat-ok: 34 (0x08), 34 (0x20) on 500; 35 (0x08), 35 (0x20) on 4500 -> float at IKE_AUTH
OK = {
    "ikev1-main-ok": (MM_QM, "MM5", "phase 2 up (1 quick mode)", False),
    "ikev1-main-nat-ok": (MM_QM, "MM5", "phase 2 up (1 quick mode)", True),
    "ikev1-aggr-ok": (["AM1", "AM2", "AM3", "QM1", "QM2", "QM3"], "AM3", "phase 2 up (1 quick mode)", False),
    "ikev2-ok": (V2, "IKE_AUTH", "IKE SA up", False),
    "ikev2-nat-ok": (V2, "IKE_AUTH", "IKE SA up", True),
}


@pytest.mark.parametrize("side", ["inside", "outside"])
@pytest.mark.parametrize("scenario", sorted(OK))
def test_successful_negotiations(scenario, side):
    labels, float_at, state, nat = OK[scenario]
    an, _ = analyse(f"{scenario}.{side}.pcap")
    (sa,) = an.sas.values()
    assert [m.label for m in sa.messages] == labels
    assert not any(m.retransmission for m in sa.messages)
    assert sa.float_at == float_at and sa.state() == state and sa.ike_sa_up()
    # after the NAT router the initiator's ports are rewritten (tshark: 22178>500 ... 28899>4500)
    assert (sa.initiator[1] != 500) == (nat and side == "outside")
    # two SPIs, 6 ESP packets each (3 pings and 3 replies), UDP-encapsulated, no loss
    flows = list(an.esp.flows.values())
    assert sorted(f.packets for f in flows) == [6, 6]
    assert all(f.encap == "udp" and f.lost == 0 and f.duplicates == 0 for f in flows)
    assert {f.src for f in flows} == {sa.initiator[0], sa.responder[0]}
    assert not [f for f in find(an, []) if f.severity == ERROR]


def test_cookie_retry_inside():
    """tshark: 34 req, 34 req (same bytes), 34 resp N(16390 COOKIE), 34 req with COOKIE, 34 resp, 35, 35."""
    an, _ = analyse("ikev2-nat-cookie.inside.pcap")
    (sa,) = an.sas.values()
    assert [m.label for m in sa.messages] == ["IKE_SA_INIT"] * 5 + ["IKE_AUTH"] * 2
    assert [m.request for m in sa.messages] == [True, True, False, True, False, True, False]
    assert [m.retransmission for m in sa.messages] == [False, True] + [False] * 5
    assert sa.messages[3].retry == "COOKIE"
    assert sa.ike_sa_up()
    assert not [f for f in find(an, []) if f.severity == ERROR]


def test_invalid_ke_retry():
    """tshark: 34 req, 34 resp N(17 INVALID_KE_PAYLOAD), 34 req, 34 resp, 35, 35."""
    for side in ("inside", "outside"):
        an, _ = analyse(f"ikev2-invalid-ke.{side}.pcap")
        (sa,) = an.sas.values()
        assert [m.label for m in sa.messages] == ["IKE_SA_INIT"] * 4 + ["IKE_AUTH"] * 2
        assert sa.messages[2].retry == "INVALID_KE_PAYLOAD"
        assert not [f for f in find(an, []) if f.severity == ERROR]


def test_psk_mismatch_reading():
    """tshark (inside): MM1-MM4 on 500, then MM5 to 4500 four times, each answered by an Informational."""
    an, _ = analyse("ikev1-main-psk-mismatch.inside.pcap")
    (sa,) = an.sas.values()
    assert [m.label for m in sa.messages] == ["MM1", "MM2", "MM3", "MM4"] + ["MM5", "INFO"] * 4
    assert [m.retransmission for m in sa.messages if m.label == "MM5"] == [False, True, True, True]
    assert not sa.ike_sa_up() and sa.state() == "phase 1 incomplete (last MM5)"


def test_every_lab_capture_is_read_cleanly():
    """Each capture of every scenario: no malformed packet, every frame counted once."""
    scenarios = json.loads((LAB / "scenarios.json").read_text())["scenarios"]
    for s in scenarios:
        for side in ("inside", "outside"):
            an, infos = analyse(s["files"][f"{side}_pcap"])
            st = an.stats
            assert st.malformed == 0 and infos[0].warning is None, s["scenario"]
            assert st.packets == st.ike + st.esp + st.ah + st.keepalives + st.icmp + st.fragments + st.malformed + st.skipped
            assert st.packets == s["packets"][side], s["scenario"]
