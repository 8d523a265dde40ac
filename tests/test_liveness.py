"""DPD and liveness probes: which were answered, from which probe on the peer went quiet, and answers lost
after the capture point.

Ground truth for the lab captures is the daemons' own logs next to them (pcaps/lab/*.log): the initiator
logs each probe it sends ("sending DPD request" for IKEv1, "generating INFORMATIONAL request N" for IKEv2)
and the responder each answer it generates ("N(DPD_ACK)", "generating INFORMATIONAL response N").  The
outside capture sits on the responder's side of the router, so every answer the responder generated is in
it.  Synthetic cases are built with Scapy (helpers from test_diagnosis)."""

from __future__ import annotations

import re

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_SA

from conftest import PCAPS
from ikeflow.diagnose.findings import ERROR
from ikeflow.model import liveness
from ikeflow.pipeline import read_captures
from test_diagnosis import I, R, _ikev1_up, enc, errors, feed, v1

LAB = PCAPS / "lab"


def _log_counts(name: str, version: int) -> tuple[int, int]:
    """(probes the initiator sent, answers the responder generated), from the daemons' logs."""
    init, resp = ((LAB / f"{name}.{role}.log").read_text() for role in ("init", "resp"))
    if version == 1:
        return init.count("sending DPD request"), len(re.findall(r"generating INFORMATIONAL_V1 .*N\(DPD_ACK\)", resp))
    sent = set(re.findall(r"generating INFORMATIONAL request (\d+) \[ \]", init))
    return len(sent), len(set(re.findall(r"generating INFORMATIONAL response (\d+) \[ \]", resp)))


def _first_sa(path):
    result = read_captures([str(path)])
    sa = min(result.model.sas.values(), key=lambda s: s.index)
    return result, sa


@pytest.mark.parametrize("name", ["ikev1-dpd-answered-then-silent", "ikev1-dpd-answered-then-gone",
                                  "ikev1-dpd-replies-lost", "ikev2-dpd-answered-then-silent",
                                  "ikev2-dpd-answered-then-gone", "ikev2-dpd-replies-lost"])
def test_probes_and_answers_match_the_daemon_logs(name):
    version = int(name[4])
    sent, answered = _log_counts(name, version)
    _, sa = _first_sa(LAB / f"{name}.outside.pcap")
    found = liveness.probes(sa, "I")
    assert len(found) == sent
    assert [bool(p.answers) for p in found] == [True] * answered + [False] * (sent - answered)
    assert liveness.probes(sa, "R") == []  # the responder never probed (its log has no DPD request)


@pytest.mark.parametrize("version", [1, 2])
def test_peer_stops_answering_from_probe_n_on(version):
    name = f"ikev{version}-dpd-answered-then-silent"
    sent, answered = _log_counts(name, version)
    result, _ = _first_sa(LAB / f"{name}.outside.pcap")
    (f,) = [f for f in result.findings if f.severity == ERROR]
    assert f.causes[0] == "peer-dead"
    assert f"first {answered} " in f.summary and f"from the {answered + 1}th on" in f.summary


@pytest.mark.parametrize("version", [1, 2])
def test_probes_answered_by_icmp_port_unreachable_mean_the_daemon_is_gone(version):
    result, _ = _first_sa(LAB / f"ikev{version}-dpd-answered-then-gone.outside.pcap")
    (f,) = [f for f in result.findings if f.severity == ERROR]
    assert f.causes[0] == "peer-down" and "ICMP port unreachable" in f.summary


def test_ikev2_probe_answered_each_time_is_reply_path_lost():
    """tshark: MID 5 request re-sent 3 times, each followed by a response with MID 5 (frames 11-18)."""
    result, _ = _first_sa(LAB / "ikev2-dpd-replies-lost.outside.pcap")
    (f,) = [f for f in result.findings if f.severity == ERROR]
    assert f.at == "INFORMATIONAL" and f.causes == ["reply-path-lost"]
    assert f.frames == list(range(11, 19))


def test_ikev1_dpd_restart_despite_answers_is_reply_path_lost():
    """tshark: Informational pairs at 2, 4, 6, 8, 10 s (frames 10-19), a new Main Mode at frame 20; the
    initiator's log: 'DPD check timed out, enforcing DPD action', 'initiating Main Mode IKE_SA lab[2]'."""
    result, _ = _first_sa(LAB / "ikev1-dpd-replies-lost.outside.pcap")
    first = [f for f in result.findings if f.severity == ERROR][0]
    assert first.at == "INFO" and first.causes == ["reply-path-lost"]
    assert "started a new MM1 (frame 20)" in first.summary and 20 in first.frames


# -- built sequences -----------------------------------------------------------------------------------

def _up():
    return [(p, 0.1 * n) for n, p in enumerate(_ikev1_up())]


def _info(src, dst, size, t, msgid):
    return v1(src, dst, 5, enc(size), sport=4500, dport=4500, flags=1, msgid=msgid), t


def test_ikev1_two_unanswered_probes_after_answered_ones():
    probes = [_info(I, R, 80, 3.0 + 2 * n, 100 + n) for n in range(5)]
    acks = [_info(R, I, 80, 3.01 + 2 * n, 200 + n) for n in range(3)]
    an, found = feed(_up() + sorted(probes + acks, key=lambda p: p[1]))
    (sa,) = an.sas.values()
    assert [bool(p.answers) for p in liveness.probes(sa, "I")] == [True, True, True, False, False]
    (f,) = errors(found)
    assert f.at == "INFO" and f.causes[0] == "peer-dead" and "from the 4th on" in f.summary


def test_ikev1_one_unanswered_probe_is_not_a_dead_peer():
    probes = [_info(I, R, 80, 3.0 + 2 * n, 100 + n) for n in range(4)]
    acks = [_info(R, I, 80, 3.01 + 2 * n, 200 + n) for n in range(3)]
    assert not errors(feed(_up() + sorted(probes + acks, key=lambda p: p[1]))[1])


def test_ikev1_delete_of_another_size_is_not_a_probe():
    probes = [_info(I, R, 80, 3.0 + 2 * n, 100 + n) for n in range(3)]
    acks = [_info(R, I, 80, 3.01 + 2 * n, 200 + n) for n in range(3)]
    delete = [_info(I, R, 64, 9.0, 300)]
    an, found = feed(_up() + sorted(probes + acks + delete, key=lambda p: p[1]))
    (sa,) = an.sas.values()
    assert len(liveness.probes(sa, "I")) == 3 and not errors(found)


def test_ikev1_rekey_with_delete_is_not_a_dpd_restart():
    """All probes answered, a new Main Mode, then the old SA's Delete: a rekey, not a DPD timeout."""
    probes = [_info(I, R, 80, 3.0 + 2 * n, 100 + n) for n in range(3)]
    acks = [_info(R, I, 80, 3.01 + 2 * n, 200 + n) for n in range(3)]
    mm1 = (IP(src=I, dst=R) / UDP(sport=500, dport=500) / ISAKMP(init_cookie=b"\x55" * 8, exch_type=2)
           / ISAKMP_payload_SA(), 8.0)
    delete = [_info(I, R, 64, 9.0, 300)]
    an, found = feed(_up() + sorted(probes + acks + [mm1] + delete, key=lambda p: p[1]))
    assert not [f for f in errors(found) if "reply-path-lost" in f.causes]


def test_ikev1_new_main_mode_without_delete_after_answered_probes_is_a_dpd_restart():
    probes = [_info(I, R, 80, 3.0 + 2 * n, 100 + n) for n in range(3)]
    acks = [_info(R, I, 80, 3.01 + 2 * n, 200 + n) for n in range(3)]
    mm1 = (IP(src=I, dst=R) / UDP(sport=500, dport=500) / ISAKMP(init_cookie=b"\x55" * 8, exch_type=2)
           / ISAKMP_payload_SA(), 9.0)
    found = feed(_up() + sorted(probes + acks + [mm1], key=lambda p: p[1]))[1]
    assert [f.causes for f in errors(found) if f.at == "INFO"] == [["reply-path-lost"]]


def test_checks_unanswered_while_the_peer_answers_a_new_main_mode_on_udp_500():
    """ikev1-dpd-replies-lost, inside (tshark): the initiator's R-U-THEREs at frames 16-17 on UDP 4500 go
    unanswered, then the initiator starts a new Main Mode and the responder answers it from UDP 500 (frame
    19): the peer is alive, UDP 4500 is lost (the router drops the responder's UDP 4500, SCENARIOS.md)."""
    result, _ = _first_sa(LAB / "ikev1-dpd-replies-lost.inside.pcap")
    f = [f for f in result.findings if f.severity == ERROR and f.at == "INFO"][0]
    assert f.causes[0] == "udp4500-blocked" and "peer-dead" not in f.causes
    assert "answered another IKE SA on UDP 500 (frame 19)" in f.summary
