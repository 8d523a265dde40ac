"""`ikeflow compare`: the lab's two-sided captures (inside = before the router, initiator side;
outside = after it, responder side) and public captures split artificially with known drops.

Expected values come from pcaps/lab/SCENARIOS.md (what the router dropped, which scenarios
masquerade the initiator behind 203.0.113.1) and from the frames the tests themselves drop."""

import json
import struct

import pytest
from click.testing import CliRunner

from conftest import PCAPS, need_public
from ikeflow.decode import packet as pk
from ikeflow.cli import main
from ikeflow.compare import Comparison, rules
from ikeflow.diagnose import causes
from ikeflow.render.compare_json import build

LAB = PCAPS / "lab"
INSIDE, OUTSIDE = 0, 1


def lab(scenario):
    return [str(LAB / f"{scenario}.inside.pcap"), str(LAB / f"{scenario}.outside.pcap")]


def run(paths):
    cmp = Comparison([str(p) for p in paths]).run()
    return cmp, build(cmp)


def errors(doc):
    return [f for f in doc["findings"] if f["severity"] == "error"]


def direction(doc, name, segment=(0, 1)):
    (pair,) = [p for p in doc["pairs"] if p["segment"] == list(segment)]
    return next(d for d in pair["directions"] if d["direction"] == name)


def cli(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


# -- captures written by the tests --------------------------------------------------------


def records(path):
    """(linktype, [(time, data)]) of a classic pcap, without dissecting anything."""
    from scapy.utils import RawPcapReader

    r = RawPcapReader(str(path))
    out = [(meta.sec + meta.usec / 1e6, data) for data, meta in r]
    return r.linktype, out


def write(path, linktype, recs):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for t, data in sorted(recs, key=lambda r: r[0]):
            sec = int(t)
            f.write(struct.pack("<IIII", sec, round((t - sec) * 1e6), len(data), len(data)) + data)
    return path


# -- success: everything arrives, NAT seen, clocks agree -----------------------------------------


@pytest.mark.parametrize("scenario", ["ikev1-main-nat-ok", "ikev2-nat-ok", "ikev1-main-ok", "ikev2-ok"])
def test_success_everything_arrives(scenario):
    cmp, doc = run(lab(scenario))
    assert doc["schema"] == 1 and doc["kind"] == "compare"
    assert [p["file"] for p in doc["points"]] == lab(scenario)
    assert abs(doc["clock_offset"]) < 0.001  # both captures were taken on one host clock
    assert errors(doc) == [] and doc["findings"] == []
    (pair,) = doc["pairs"]
    assert pair["initiator_side"] == INSIDE
    for d in pair["directions"]:
        assert d["ike"]["sent"] == d["ike"]["arrived"] > 0 and d["ike"]["lost"] == []
        assert [(e["sent"], e["arrived"], e["lost"]) for e in d["esp"]] == [(6, 6, 0)]  # 3 pings each way
        assert d["ike"]["delay"]["max"] < 0.01
    i_to_r = direction(doc, "initiator_to_responder")
    assert i_to_r["sent_at"] == INSIDE and i_to_r["from"] == "192.0.2.2"


@pytest.mark.parametrize("scenario", ["ikev1-main-nat-ok", "ikev2-nat-ok"])
def test_nat_mappings_for_500_and_4500(scenario):
    _, doc = run(lab(scenario))
    maps = {m["port"]: m for m in doc["nat_mappings"]}
    assert set(maps) == {500, 4500}
    for port, m in maps.items():
        assert m["endpoint"] == "initiator" and m["inside_point"] == INSIDE and not m["changed"]
        assert m["inside"] == f"192.0.2.2:{port}"
        (out,) = m["outside"]
        host, oport = out["address"].split(":")
        assert host == "203.0.113.1" and 20000 <= int(oport) <= 30000  # the router's masquerade range
    assert maps[500]["outside"][0]["address"] != maps[4500]["outside"][0]["address"]


def test_no_nat_no_mapping():
    _, doc = run(lab("ikev2-ok"))
    assert doc["nat_mappings"] == []


# -- lab failures: where the packets are lost -------------------------------------------------------


@pytest.mark.parametrize("scenario,at", [("ikev1-udp500-blocked", "MM1"), ("ikev2-udp500-blocked", "IKE_SA_INIT")])
def test_udp500_blocked(scenario, at):
    _, doc = run(lab(scenario))
    (e,) = errors(doc)
    assert (e["code"], e["at"], e["causes"], e["segment"]) == ("lost-between-points", at, ["path-blocked"], [0, 1])
    assert e["frames"] == [[INSIDE, n] for n in (1, 2, 3, 4)]  # the request and its 3 retransmissions
    assert "between the capture points" in e["summary"]
    assert any(f["code"] == "capture-empty" for f in doc["findings"])  # the outside capture is empty
    d = direction(doc, "initiator_to_responder")
    assert (d["ike"]["sent"], d["ike"]["arrived"], len(d["ike"]["lost"])) == (4, 0, 4)


@pytest.mark.parametrize("scenario,at", [("ikev1-replies-dropped", "MM2"), ("ikev2-replies-dropped", "IKE_SA_INIT")])
def test_replies_dropped(scenario, at):
    _, doc = run(lab(scenario))
    (e,) = errors(doc)
    assert (e["code"], e["at"], e["causes"]) == ("lost-between-points", at, ["reply-path-lost"])
    assert e["frames"] == [[OUTSIDE, n] for n in (2, 4, 6, 8)]  # the answers, sent after each request
    out = direction(doc, "initiator_to_responder")
    back = direction(doc, "responder_to_initiator")
    assert (out["ike"]["sent"], out["ike"]["arrived"]) == (4, 4)  # the requests all arrived
    assert (back["sent_at"], back["ike"]["sent"], back["ike"]["arrived"]) == (OUTSIDE, 4, 0)


@pytest.mark.parametrize("scenario,at", [("ikev1-udp4500-blocked", "MM5"), ("ikev2-udp4500-blocked", "IKE_AUTH")])
def test_udp4500_blocked(scenario, at):
    _, doc = run(lab(scenario))
    (e,) = errors(doc)
    assert (e["code"], e["at"], e["causes"]) == ("lost-between-points", at, ["udp4500-blocked"])
    lost = direction(doc, "initiator_to_responder")["ike"]["lost"]
    assert lost and all(m["dport"] == 4500 and m["label"] == at for m in lost)
    assert [m["port"] for m in doc["nat_mappings"]] == [500]  # nothing on 4500 got through the NAT


@pytest.mark.parametrize("scenario", ["ikev1-esp-oneway", "ikev2-esp-oneway"])
def test_esp_oneway(scenario):
    _, doc = run(lab(scenario))
    (e,) = errors(doc)
    assert (e["code"], e["at"], e["causes"]) == ("lost-between-points", "ESP", ["esp-blocked"])
    assert e["summary"].startswith("ESP SPI") and "203.0.113.2 → 192.0.2.2" in e["summary"]
    assert all(p == OUTSIDE for p, _ in e["frames"])
    back = direction(doc, "responder_to_initiator")
    assert [(x["sent"], x["arrived"], x["lost"]) for x in back["esp"]] == [(3, 0, 3)]
    out = direction(doc, "initiator_to_responder")
    assert [(x["sent"], x["arrived"], x["lost"]) for x in out["esp"]] == [(3, 3, 0)]


@pytest.mark.parametrize("scenario,at", [("ikev1-fragments-dropped", "MM5"), ("ikev2-fragments-dropped", "IKE_AUTH")])
def test_fragments_dropped(scenario, at):
    _, doc = run(lab(scenario))
    (e,) = errors(doc)
    assert (e["code"], e["at"], e["causes"][0]) == ("lost-between-points", at, "fragments-dropped")
    lost = direction(doc, "initiator_to_responder")["ike"]["lost"]
    assert len(lost) == 4 and all(m["ip_fragments"] == 2 for m in lost)


@pytest.mark.parametrize("scenario", ["ikev1-responder-down", "ikev2-responder-down"])
def test_responder_down_requests_arrive(scenario):
    _, doc = run(lab(scenario))
    (e,) = errors(doc)
    assert (e["code"], e["causes"], e["segment"]) == ("arrived-unanswered", ["peer-down"], [0, 1])
    assert "port unreachable" in e["summary"]
    d = direction(doc, "initiator_to_responder")
    assert d["ike"]["sent"] == d["ike"]["arrived"] == 4  # every request reached the outside capture
    assert doc["icmp_one_side"] == []  # the ICMP errors went back through the router


def test_responder_hung_is_peer_ignores():
    _, doc = run(lab("ikev2-responder-hung"))
    (e,) = errors(doc)
    assert (e["code"], e["causes"]) == ("arrived-unanswered", ["peer-ignores"])


def test_cookie_scenario_loss_recovered_is_a_warning():
    # the router dropped the responder's first IKE_SA_INIT answer; the negotiation recovered
    _, doc = run(lab("ikev2-nat-cookie"))
    assert errors(doc) == []
    (w,) = [f for f in doc["findings"] if f["code"] == "lost-between-points"]
    assert w["severity"] == "warning" and w["causes"] == ["reply-path-lost"] and w["frames"] == [[OUTSIDE, 2]]


@pytest.mark.parametrize("scenario", ["ikev1-main-psk-mismatch", "ikev2-psk-mismatch", "ikev1-p1-proposal-mismatch",
                                      "ikev2-subnet-mismatch", "ikev1-rekey-delete", "ikev2-rekey-delete"])
def test_failures_that_are_not_transport_problems_lose_nothing(scenario):
    _, doc = run(lab(scenario))
    assert errors(doc) == []
    assert all(not d["ike"]["lost"] for p in doc["pairs"] for d in p["directions"])


# -- the rule table ------------------------------------------------------------------------------


EVIDENCE = {rules.LOST: rules.Lost, rules.ESP: rules.EspLoss, rules.UNANSWERED: rules.Unanswered,
            rules.FRAGMENTS: rules.Fragments, rules.CAPTURES: rules.Captures, rules.ICMP: rules.Icmp}


def evidence(situation, **facts):
    """The situation's evidence with every fact False but those given."""
    kind = EVIDENCE.get(situation)
    return kind(**{n: facts.get(n, False) for n in kind.__dataclass_fields__}) if kind else None


def test_rule_causes_are_in_the_shared_vocabulary():
    named = [c for row in rules.TABLE for c in row.causes]
    assert named and set(named) <= set(causes.CAUSES)


@pytest.mark.parametrize("value", [False, True])
def test_every_situation_has_a_last_row_that_always_holds(value):
    situations = dict.fromkeys(row.situation for row in rules.TABLE)
    for situation in situations:
        e = evidence(situation, **{n: value for n in getattr(EVIDENCE.get(situation), "__dataclass_fields__", ())})
        for row in rules.TABLE:
            if row.situation == situation:
                row.when(e)  # a misspelt evidence name fails here
        assert rules.pick(situation, e).situation == situation


@pytest.mark.parametrize("facts,expected", [
    ({"answer": True, "fragmented": True}, ("reply-path-lost",)),
    ({"fragmented": True, "natt": True, "small_arrived": True}, ("fragments-dropped", "udp4500-blocked")),
    ({"fragmented": True, "natt": True, "natt_arrived": True, "small_arrived": True}, ("fragments-dropped",)),
    ({"fragmented": True, "none_arrived": True}, ("fragments-dropped",)),
    ({"fragmented": True, "plain_arrived": True}, ("path-blocked",)),  # only fragmented ones arrived: fragments pass
    ({"natt": True, "plain_arrived": True}, ("udp4500-blocked",)),
    ({"natt": True, "plain_arrived": True, "natt_arrived": True}, ("path-blocked",)),
    ({}, ("path-blocked",)),
])
def test_lost_message_rows(facts, expected):
    assert rules.pick(rules.LOST, evidence(rules.LOST, **facts)).causes == expected


@pytest.mark.parametrize("facts,expected", [
    ({"icmp_unreachable": True, "liveness": True, "answered_before": True}, ("peer-down",)),
    ({"liveness": True, "answered_before": True}, ("peer-dead", "peer-ignores")),  # DPD nobody answers now
    ({"liveness": True}, ("peer-ignores",)),
    ({"answered_before": True}, ("peer-ignores",)),
])
def test_unanswered_rows(facts, expected):
    assert rules.pick(rules.UNANSWERED, evidence(rules.UNANSWERED, **facts)).causes == expected


# -- the command line -------------------------------------------------------------------------


def test_cli_terminal_ladder_and_exit_codes():
    r = cli(*lab("ikev1-udp4500-blocked"), "--no-color")
    assert r.exit_code == 1, r.output
    assert "✗ lost" in r.output and "udp4500-blocked" in r.output and "clock offset" in r.output
    assert "ikev1-udp4500-blocked.inside.pcap" in r.output and "ikev1-udp4500-blocked.outside.pcap" in r.output
    r = cli(*lab("ikev2-nat-ok"), "--no-color")
    assert r.exit_code == 0 and "No findings" in r.output and "192.0.2.2:4500 → 203.0.113.1" in r.output


def test_cli_json():
    r = cli(*lab("ikev2-esp-oneway"), "--json")
    assert r.exit_code == 1
    doc = json.loads(r.output)
    assert {"schema", "kind", "points", "clock_offset", "pairs", "nat_mappings", "fragments_incomplete",
            "icmp_one_side", "findings"} <= set(doc)
    f = doc["findings"][0]
    assert {"severity", "code", "at", "causes", "frames", "summary", "hint", "ispi", "pair"} <= set(f)


def test_unreadable_input_exit_2(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all")
    r = cli(LAB / "ikev2-ok.inside.pcap", bad)
    assert r.exit_code == 2
    r = cli(LAB / "ikev2-ok.inside.pcap", tmp_path / "missing.pcap")
    assert r.exit_code == 2
    r = cli(LAB / "ikev2-ok.inside.pcap")  # one capture is not a comparison
    assert r.exit_code == 2


def test_one_capture_empty_either_side(tmp_path):
    linktype, _ = records(LAB / "ikev2-ok.inside.pcap")
    empty = write(tmp_path / "empty.pcap", linktype, [])
    _, doc = run([LAB / "ikev2-ok.inside.pcap", empty])
    # nothing the initiator sent got there: its IKE_SA_INIT and IKE_AUTH, and its ESP
    assert {(f["code"], f["at"]) for f in errors(doc)} == {("lost-between-points", "IKE_SA_INIT"),
                                                          ("lost-between-points", "ESP")}
    assert any(f["code"] == "capture-empty" for f in doc["findings"])
    _, doc = run([empty, LAB / "ikev2-ok.outside.pcap"])  # empty first: everything was sent towards it
    assert doc["clock_offset"] == 0.0 and any(f["code"] == "capture-empty" for f in doc["findings"])


def test_different_lengths_and_start_times(tmp_path):
    # the second point starts 1 s after the first and stops 1 s before it, on a clock 42 s ahead;
    # what happens while it is not capturing is not called lost
    linktype, recs = records(LAB / "ikev1-rekey-delete.inside.pcap")
    _, outside = records(LAB / "ikev1-rekey-delete.outside.pcap")
    t0, t1 = recs[0][0], recs[-1][0]
    part = [(t + 42.0, d) for t, d in outside if t0 + 1.0 <= t <= t1 - 1.0]
    b = write(tmp_path / "b.pcap", linktype, part)
    _, doc = run([LAB / "ikev1-rekey-delete.inside.pcap", b])
    assert abs(doc["clock_offset"] - 42.0) < 0.001
    assert errors(doc) == [] and not [f for f in doc["findings"] if f["code"] == "lost-between-points"]
    d = direction(doc, "initiator_to_responder")
    assert d["ike"]["outside_other_capture"] > 0 and d["ike"]["arrived"] > 0


def test_three_points_along_a_path(tmp_path):
    # inside -> outside -> a third point past the outside one (on a clock 10 s behind) that
    # never sees the initiator's ESP: lost between points 2 and 3, not between 1 and 2
    linktype, recs = records(LAB / "ikev2-nat-ok.outside.pcap")
    third = []
    for t, data in recs:
        p = pk.decode(linktype, data)
        if p.kind == pk.ESP and p.src == bytes([203, 0, 113, 1]):
            continue
        third.append((t - 10.0, data))
    c = write(tmp_path / "c.pcap", linktype, third)
    cmp, doc = run(lab("ikev2-nat-ok") + [c])
    assert [s["points"] for s in doc["segments"]] == [[0, 1], [1, 2]]
    assert abs(doc["points"][2]["clock_offset"] + 10.0) < 0.001
    (e,) = errors(doc)
    assert (e["code"], e["causes"], e["segment"]) == ("lost-between-points", ["esp-blocked"], [1, 2])
    assert "ikev2-nat-ok.outside.pcap → c.pcap" in e["summary"]
    r = cli(*lab("ikev2-nat-ok"), c, "--no-color")
    assert r.exit_code == 1 and "#3" in r.output


# -- a public capture split artificially -------------------------------------------------------


def test_public_capture_split_with_known_drops(tmp_path):
    src = need_public() / "tcpdump" / "tests" / "isakmp4500.pcap"  # NAT-T Main + Quick Mode, ESP, keepalives
    linktype, recs = records(src)  # all timestamps are 0 in this file: give them 0.2 s steps
    initiator = bytes([192, 1, 2, 254])
    offset, transit = 3600.25, 0.001
    lost_i_to_r = {16, 22, 24}  # QM3 (2nd copy), two ESP packets: at point 1 only
    lost_r_to_i = {20, 35}  # QM2 (3rd copy), the final INFO: at point 2 only
    a, b = [], []
    for n, (_, data) in enumerate(recs, 1):
        t = 1_700_000_000 + 0.2 * n
        p = pk.decode(linktype, data)
        if getattr(p, "src", b"") == initiator:  # sent at point 1 (initiator side), arrives at point 2
            a.append((t, data))
            if n not in lost_i_to_r:
                b.append((t + transit + offset, data))
        else:  # sent at point 2, arrives at point 1
            b.append((t + offset, data))
            if n not in lost_r_to_i:
                a.append((t + transit, data))
    write(tmp_path / "a.pcap", linktype, a)
    write(tmp_path / "b.pcap", linktype, b)

    def renumbered(dropped):  # original frame number -> frame number in the written capture
        kept = [n for n in range(1, len(recs) + 1) if n not in dropped]
        return {n: i for i, n in enumerate(kept, 1)}

    frame_in_a, frame_in_b = renumbered(lost_r_to_i), renumbered(lost_i_to_r)
    _, doc = run([tmp_path / "a.pcap", tmp_path / "b.pcap"])
    assert abs(doc["clock_offset"] - offset) < 1e-4
    out, back = direction(doc, "initiator_to_responder"), direction(doc, "responder_to_initiator")
    assert (out["sent_at"], back["sent_at"]) == (0, 1)
    assert [m["frame"] for m in out["ike"]["lost"]] == [[0, frame_in_a[16]]]
    assert [m["label"] for m in out["ike"]["lost"]] == ["QM3"]
    assert [(e["spi"], e["sent"], e["arrived"], e["lost"]) for e in out["esp"]] == [("f4dc0ae5", 8, 6, 2)]
    # packet by packet: tshark -Y esp -e frame.number -e esp.sequence puts sequence numbers 4 and 5 in frames 22, 24
    (esp,) = out["esp"]
    assert esp["lost_seq"] == [4, 5] and esp["lost_frames"] == [frame_in_a[22], frame_in_a[24]]
    assert abs(esp["transit"]["median"] - transit) < 1e-4
    assert [m["frame"] for m in back["ike"]["lost"]] == [[1, frame_in_b[20]], [1, frame_in_b[35]]]
    assert abs(out["ike"]["delay"]["median"] - transit) < 1e-4
    found = {(f["severity"], f["at"], tuple(f["causes"])) for f in doc["findings"]}
    assert ("error", "INFO", ("path-blocked",)) in found  # the last message, never arrived, nothing after
    assert ("warning", "QM3", ()) in found and ("warning", "QM2", ()) in found  # other copies arrived
    assert ("warning", "ESP", ()) in found
    r = cli(tmp_path / "a.pcap", tmp_path / "b.pcap")
    assert r.exit_code == 1


# -- captures that cannot be compared: the same one twice, or unrelated ones ----------------------------------


def shifted(src, dst, to=None, by=0.0, zero=False):
    """A copy of capture `src` written to `dst`, its times moved to start 0.2 s after the capture `to` starts,
    then by `by` seconds more; or all set to 0."""
    linktype, recs = records(src)
    if to is not None:
        by += records(to)[1][0][0] + 0.2 - recs[0][0]
    return write(dst, linktype, [(0.0 if zero else t + by, d) for t, d in recs])


def captures_finding(doc):
    """The compare-same / compare-unrelated finding, checked to be the only one and to end the comparison."""
    (f,) = doc["findings"]
    assert f["severity"] == "error" and f["causes"] == [] and f["at"] == "capture"
    assert doc["pairs"] == [] and doc["nat_mappings"] == [] and doc["icmp_one_side"] == []
    return f


@pytest.mark.parametrize("scenario", sorted(p.name.removesuffix(".inside.pcap") for p in LAB.glob("*.inside.pcap")))
def test_no_lab_pair_is_unrelated_or_the_same(scenario):
    _, doc = run(lab(scenario))
    assert not [f for f in doc["findings"] if f["code"].startswith("compare-")]
    assert doc["pairs"]


def test_same_file_twice():
    _, doc = run([LAB / "ikev2-ok.inside.pcap", LAB / "ikev2-ok.inside.pcap"])
    f = captures_finding(doc)
    assert f["code"] == "compare-same" and "are the same file" in f["summary"]
    r = cli(LAB / "ikev2-ok.inside.pcap", LAB / "ikev2-ok.inside.pcap", "--no-color")
    assert r.exit_code == 1 and "Not compared: compare-same" in r.output and "No findings" not in r.output


def test_identical_copies_under_two_names(tmp_path):
    import gzip
    import shutil

    src = LAB / "ikev1-rekey-delete.outside.pcap"
    copy = shutil.copy(src, tmp_path / "gateway-b.pcap")
    zipped = tmp_path / "gateway-c.pcap.gz"
    zipped.write_bytes(gzip.compress(src.read_bytes()))
    for other in (copy, zipped):  # the same bytes, and the same packets in other bytes
        f = captures_finding(run([src, other])[1])
        assert f["code"] == "compare-same" and "hold the same 34 packets at the same times" in f["summary"]


def test_identical_copies_in_the_public_corpus():
    public = need_public()  # MANIFEST: byte-identical, one in scapy's tests, one in the Wireshark wiki
    a = public / "scapy" / "test" / "pcaps" / "ikev2_nat_t.pcapng"
    b = next((public / "wireshark-wiki" / "uploads").glob("*/ipsec_ikev2+esp*/*/capture.pcapng"))
    assert captures_finding(run([a, b])[1])["code"] == "compare-same"


def test_public_captures_of_different_tunnels_are_unrelated(tmp_path):
    wireshark = need_public() / "wireshark" / "test" / "captures"
    # two IKEv2 tunnels between the same two hosts, 3.5 minutes apart
    a, b = wireshark / "ikev2-decrypt-aes128ccm12.pcap", wireshark / "ikev2-decrypt-aes128ccm12-2.pcap"
    f = captures_finding(run([a, b])[1])
    assert f["code"] == "compare-unrelated" and "were not taken at the same time" in f["summary"]
    assert "2016-08-21 15:39:20.463 to 15:39:27.861 UTC" in f["summary"] and "IKEv2 ea684d21597afd36" in f["summary"]
    assert "IKEv2 a2926ae833c6f138" in f["summary"] and "3 min apart" in f["summary"]
    # the second moved into the first one's time: same hosts, same time, not one packet in both
    f = captures_finding(run([a, shifted(b, tmp_path / "b.pcap", to=a)])[1])
    assert f["code"] == "compare-unrelated" and "have no traffic in common" in f["summary"]
    assert "no IKE SA or ESP SPI either" in f["summary"]
    # the IKEv1 negotiation and, a second after it, the ESP of that tunnel: one point, one after the other
    f = captures_finding(run([wireshark / "ikev1-bug-12610.pcapng.gz", wireshark / "esp-bug-12671.pcapng.gz"])[1])
    assert f["code"] == "compare-unrelated" and "1.0 s apart" in f["summary"]
    r = cli(a, b, "--no-color")
    assert r.exit_code == 1 and "Not compared: compare-unrelated" in r.output and "✗ lost" not in r.output


def test_test_vectors_with_fixed_spis_and_no_clock_are_unrelated():
    # openswan's unit-test inputs: one message each, the same IKE SPIs in every test, timestamps of whole days
    crypto = need_public() / "openswan" / "tests" / "unit" / "ikev2crypto"
    _, doc = run([crypto / "ct10-parentI2" / "parentR1.pcap", crypto / "ct12-parentR2" / "parentI1.pcap"])
    f = captures_finding(doc)
    assert f["code"] == "compare-unrelated"
    assert "IKE SA IKEv2 8001020304050607 is in both, but not one of its packets" in f["summary"]
    assert "parentR1.pcap (whole seconds only) and parentI1.pcap (whole seconds only) cannot tell" in f["summary"]


def test_lab_captures_of_different_scenarios_are_unrelated(tmp_path):
    # taken one after the other in the lab: 1.7 s apart (capinfos: last packet 436.998, first 438.668)
    f = captures_finding(run([LAB / "ikev2-ok.inside.pcap", LAB / "ikev2-nat-ok.outside.pcap"])[1])
    assert f["code"] == "compare-unrelated" and "1.7 s apart" in f["summary"]
    # moved to the same time: an IKEv1 and an IKEv2 tunnel between the same hosts, each answered, none in both
    b = shifted(LAB / "ikev2-ok.outside.pcap", tmp_path / "b.pcap", to=LAB / "ikev1-main-ok.inside.pcap")
    f = captures_finding(run([LAB / "ikev1-main-ok.inside.pcap", b])[1])
    assert f["code"] == "compare-unrelated" and "have no traffic in common" in f["summary"]


def test_requests_lost_towards_a_point_that_captured_other_traffic_is_loss(tmp_path):
    # point 1 re-sends IKE_SA_INIT to 203.0.113.2, point 2 (the responder's side) meanwhile captured that
    # responder talking to another peer (203.0.113.1): the requests are lost between, the captures are related
    a = LAB / "ikev2-udp500-blocked.inside.pcap"
    b = shifted(LAB / "ikev2-nat-ok.outside.pcap", tmp_path / "b.pcap", to=a)
    cmp, doc = run([a, b])
    (e,) = errors(doc)
    assert (e["code"], e["at"], e["causes"]) == ("lost-between-points", "IKE_SA_INIT", ["path-blocked"])
    assert e["frames"] == [[INSIDE, n] for n in (1, 2, 3, 4)]
    assert len(doc["pairs"]) == 1  # the other peer's traffic went both ways without point 1: not compared
    assert [c.pairs[OUTSIDE] for c in cmp.segments[0].elsewhere] == [[(bytes([203, 0, 113, 1]),
                                                                        bytes([203, 0, 113, 2]))]]
    r = cli(a, b, "--no-color")
    assert "seen at #2 only, sent by both ends there, so not through #1: not compared" in " ".join(r.output.split())
    # the same, an hour later: point 2 was not capturing then, so nothing tells that they are related
    late = shifted(LAB / "ikev2-nat-ok.outside.pcap", tmp_path / "late.pcap", to=a, by=3600.0)
    f = captures_finding(run([a, late])[1])
    assert f["code"] == "compare-unrelated" and "60 min apart" in f["summary"]


def test_timestamps_that_are_no_clock(tmp_path):
    # every timestamp 0: one capture point's pair still shares its packets and is compared ...
    a = shifted(LAB / "ikev2-ok.inside.pcap", tmp_path / "a.pcap", zero=True)
    b = shifted(LAB / "ikev2-ok.outside.pcap", tmp_path / "b.pcap", zero=True)
    _, doc = run([a, b])
    assert doc["findings"] == [] and len(doc["pairs"]) == 1
    # ... but requests towards a point that captured other traffic could have been sent any time
    c = shifted(LAB / "ikev2-nat-ok.outside.pcap", tmp_path / "c.pcap", zero=True)
    f = captures_finding(run([shifted(LAB / "ikev2-udp500-blocked.inside.pcap", tmp_path / "d.pcap", zero=True),
                              c])[1])
    assert f["code"] == "compare-unrelated" and "d.pcap (all 0) and c.pcap (all 0) cannot tell" in f["summary"]


def test_an_empty_point_is_not_unrelated():
    _, doc = run(lab("ikev2-udp500-blocked"))  # the outside capture holds nothing
    assert {f["code"] for f in doc["findings"]} == {"lost-between-points", "capture-empty"}


@pytest.mark.parametrize("facts,expected", [
    ({"same": True, "shared": True, "timed": True, "overlap": True}, "compare-same"),
    ({"same": True, "empty": True}, "compare-same"),
    ({"shared": True, "timed": True}, "compare-unrelated"),  # not at the same time
    ({"shared": True, "timed": True, "overlap": True}, ""),
    ({"shared": True}, ""),  # the same packets, on clocks that tell no time
    ({"timed": True, "overlap": True}, "compare-unrelated"),
    ({"same_ids": True, "timed": True, "overlap": True}, ""),  # one IKE SA, its messages differ (an ALG, snaplen)
    ({"same_ids": True, "overlap": True}, "compare-unrelated"),  # fixed SPIs of test vectors, no clock
    ({"one_way_to_other": True, "timed": True, "overlap": True}, ""),  # all lost on the way
    ({"one_way_to_other": True, "overlap": True}, "compare-unrelated"),
    ({"empty": True, "timed": True}, ""),  # capture-empty, and everything sent towards it was lost
])
def test_captures_rows(facts, expected):
    assert rules.pick(rules.CAPTURES, evidence(rules.CAPTURES, **facts)).code == expected


def test_icmp_from_a_nat_that_forgot_the_mapping():
    """pcaps/lab/ikev2-nat-mapping-expired: after 9 s without keepalives the router's conntrack (UDP timeout
    5 s) has no mapping; tshark shows ICMP port unreachable from 203.0.113.1 (the NAT's outside address)
    about 203.0.113.2:4500 -> 203.0.113.1:<the initiator's mapped port> at the outside point only (frames
    18, 20, 22)."""
    _, doc = run(lab("ikev2-nat-mapping-expired"))
    icmp = [f for f in doc["findings"] if f["code"] == "icmp-one-side"]
    assert len(icmp) == 3 and all(f["causes"] == ["nat-mapping-expired"] and f["severity"] == "error" for f in icmp)


def test_large_esp_lost_between_the_points_is_an_mtu_black_hole():
    """pcaps/lab/ikev2-mtu-blackhole (tshark): ESP SPI of the initiator carries 178-byte frames that reach the
    outside point and three 1426-byte frames (1412-byte datagrams, sequence 4-6) that do not; the router drops
    UDP 4500 datagrams longer than 1200 bytes from the initiator (SCENARIOS.md), without ICMP."""
    _, doc = run(lab("ikev2-mtu-blackhole"))
    (f,) = errors(doc)
    assert f["causes"] == ["mtu-blackhole"] and "3 packets of 1412 bytes or more" in f["summary"]
    assert "at most 164 bytes" in f["summary"]
