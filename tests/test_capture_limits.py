"""What the capture cannot show (diagnose/capture_limits.py) and the gate on the stall diagnosis.

On real captures: the public corpus where it has the case (an initiator-only IKEv2 capture, a capture
that starts inside an IKE SA), and the lab's strongSwan recordings cut with scapy the way a capture goes
wrong (one direction only, stopped too early, started late, a tcpdump filter that drops non-first IP
fragments).  Each limit must be its own finding, every stall it bears on must name it, and no cause may
be ranked that the capture cannot support.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from scapy.all import IP, UDP, Ether, fragment, rdpcap, wrpcap

from conftest import PCAPS, need_public
from ikeflow.cli import COMPARE_HELP, READ_HELP
from ikeflow.diagnose import capture_limits, stalls
from ikeflow.diagnose.capture_limits import CAPTURE_FILTER, ENDS_EARLY, FILTERED, MID_SESSION, ONE_WAY
from ikeflow.diagnose.finding import WARNING
from ikeflow.diagnose.findings import ERROR, verdicts
from ikeflow.pipeline import read_captures

LAB = PCAPS / "lab"
OLD_RECIPE = "udp port 500 or udp port 4500 or esp"  # the recipe before: no ICMP, no non-first fragments


def read(path):
    result = read_captures([str(path)])
    return result.model, result.findings


def codes(found):
    return [f.code for f in found]


def stall_limits(an):
    """Every stall of the capture with the limits named on it."""
    view = capture_limits.judge(an, [])
    out = []
    for sa in an.sas.values():
        for st in stalls.sa_stalls(an, sa):
            stalls.limit(st, an, view)
            out.append(st)
    return out


def cut(tmp_path, name, keep, out="cut.pcap"):
    """The lab capture `name` with only the packets (index, packet) that `keep` accepts."""
    packets = rdpcap(str(LAB / name))
    path = tmp_path / out
    wrpcap(str(path), [p for i, p in enumerate(packets) if keep(i, p)])
    return path


def no_ranked_causes_under_void_limits(found):
    """The gating rule: a stall whose capture limits void every cause ranks none and is no error."""
    for f in found:
        if f.code == "stall" and "(capture:" in f.summary and "no cause is ranked" in f.summary:
            assert f.severity != ERROR and not f.causes, f


# -- capture-one-way -----------------------------------------------------------------------------------

def test_one_way_public_initiator_only():
    """tcpdump's ikev2pI2.pcap: IKE_SA_INIT, then IKE_AUTH with the responder's SPI, nothing from the responder."""
    an, found = read(need_public() / "tcpdump/tests/ikev2pI2.pcap")
    (f,) = [f for f in found if f.code == "capture-one-way"]
    assert f.at == "IKE_AUTH" and f.frames == [1, 2] and "responder's SPI" in f.summary
    assert "nothing at all from 192.1.2.23" in f.summary and "both directions" in f.hint
    (st,) = stall_limits(an)
    assert ONE_WAY in st.limits and not stalls.rank(st)
    assert not [f for f in found if f.severity == ERROR]


@pytest.mark.parametrize("side, proof", [("I", ["MM1", "MM3"]), ("R", ["MM2", "MM4"])])
def test_one_way_lab_cut_to_one_side(tmp_path, side, proof):
    """The lab's IKEv1 Main Mode + Quick Mode with one side's packets only (IKE and ESP): the other side's
    answers are proven by the Main Mode steps, so nothing is 'unanswered' and ESP one way is no esp-blocked."""
    me = "192.0.2.2" if side == "I" else "203.0.113.2"
    path = cut(tmp_path, "ikev1-main-ok.inside.pcap", lambda i, p: IP in p and p[IP].src == me)
    an, found = read(path)
    (f,) = [f for f in found if f.code == "capture-one-way"]
    assert [m.label for m in an.sas[(1, next(iter(an.sas))[1])].messages if m.ref in f.frames] == proof
    for st in stall_limits(an):
        assert ONE_WAY in st.limits and not stalls.rank(st)
    no_ranked_causes_under_void_limits(found)
    assert not [f for f in found if f.severity == ERROR], [f.summary for f in found if f.severity == ERROR]
    assert not any(v.startswith(("phase 1 fails", "tunnel fails")) for v in verdicts(an, found).values())


def test_silence_of_a_peer_is_not_one_way():
    """The lab's udp500-blocked capture: the initiator alone, MM1 re-sent -- that is a real failure, not a
    capture of one direction (nothing the initiator sent needs an answer)."""
    an, found = read(LAB / "ikev1-udp500-blocked.inside.pcap")
    assert "capture-one-way" not in codes(found)
    (st,) = stall_limits(an)
    assert not st.limits and stalls.rank(st)[0][0] == "path-blocked"


# -- capture-ends-early --------------------------------------------------------------------------------

def test_ends_early_lab_cut_after_the_request(tmp_path):
    """The lab's IKEv2 capture stopped right after the IKE_AUTH request (frame 3): no cause for it."""
    path = cut(tmp_path, "ikev2-ok.inside.pcap", lambda i, p: i < 3)
    an, found = read(path)
    (f,) = [f for f in found if f.code == "capture-ends-early"]
    assert f.at == "IKE_AUTH" and "ends 0 ms after the IKE_AUTH request (frame 3)" in f.summary and 3 in f.frames
    assert "strongSwan re-sends after 4 s" in f.hint
    (st,) = stall_limits(an)
    assert st.limits == {ENDS_EARLY: "ends 0 ms after the IKE_AUTH request"} and not stalls.rank(st)
    (s,) = [f for f in found if f.code == "stall"]
    assert s.severity != ERROR and not s.causes and "(capture: ends 0 ms after the IKE_AUTH request)" in s.summary


def test_retransmissions_prove_an_unanswered_request():
    """udp500-blocked / responder-hung captures end at the 4th send, but the 3 sends before each waited the
    daemon's own interval (0.5, 0.75, 1.125 s with the lab's timers): the verdicts stand."""
    for name in ("ikev2-udp500-blocked.inside.pcap", "ikev2-responder-hung.outside.pcap"):
        an, found = read(LAB / name)
        assert "capture-ends-early" not in codes(found)
        (line,) = verdicts(an, found).values()
        assert line.startswith("IKE_SA_INIT fails — ") and "Likely a filter on the path" in line


def test_ends_early_public_single_messages():
    """Unit-test fixtures of one message each (Openswan, Suricata): the capture ends with the request."""
    base = need_public()
    for path in ("suricata-verify/tests/ikev2-weak-dh/IKEv2_SA_INIT_2-8-weak.pcap",
                 "openswan/tests/unit/libpluto/lp175-parentN2/parentM2.pcap"):
        an, found = read(base / path)
        assert "capture-ends-early" in codes(found), path
        assert all(not f.causes for f in found if f.code == "stall"), path


# -- capture-mid-session -------------------------------------------------------------------------------

def test_mid_session_public_detect_bypass():
    """suricata-verify detect-bypass-udp: IKE_INTERMEDIATE on UDP 4500 from frame 1, no IKE_SA_INIT."""
    an, found = read(need_public() / "suricata-verify/tests/detect-bypass-udp/input.pcap")
    (f,) = [f for f in found if f.code == "capture-mid-session"]
    assert f.at == "IKE_INTERMEDIATE" and f.frames == [1] and "IKE_SA_INIT request" in f.summary
    assert "the float, if there was one, predates the capture" in f.summary
    assert not any("floated" in x.summary or "behind NAT" in x.summary for x in found)
    (sa,) = an.sas.values()
    assert sa.float_at is None


def test_mid_session_lab_cut_before_ike_auth(tmp_path):
    """The lab's IKEv2-through-NAT capture without its IKE_SA_INIT: no NAT and no float can be told."""
    path = cut(tmp_path, "ikev2-nat-ok.inside.pcap", lambda i, p: i >= 2)
    an, found = read(path)
    (f,) = [f for f in found if f.code == "capture-mid-session"]
    assert f.at == "IKE_AUTH" and "no NAT or float conclusion" in f.summary
    assert not [x for x in found if x.code == "nat-t"]
    assert not [x for x in found if x.severity == ERROR]


def test_an_ike_sa_rekey_is_no_mid_session_start():
    """The lab's IKEv2 rekey: the new IKE SA comes out of a CREATE_CHILD_SA, with no IKE_SA_INIT of its own."""
    an, found = read(LAB / "ikev2-rekey-delete.inside.pcap")
    assert len(an.sas) == 2 and "capture-mid-session" not in codes(found)


def test_mid_session_voids_what_only_the_opening_shows():
    """Rows that read the IKE fragmentation support (negotiated in IKE_SA_INIT / MM1-MM2) are not ranked
    for an SA whose opening is not in the capture; other rows are."""
    st = stalls.Stall(stalls.F, "IKE_AUTH", "story", [1], facts=stalls.Facts(certs=True, natt_expected=True))
    assert [c for c, _, _ in stalls.rank(st)][:2] == ["fragments-dropped", "udp4500-blocked"]
    st.limits[MID_SESSION] = "starts inside this IKE SA"
    assert [c for c, _, _ in stalls.rank(st)] == ["udp4500-blocked", "path-blocked"]


# -- capture-filtered ----------------------------------------------------------------------------------

def _fragmented_ike_auth(tmp_path):
    """The lab's IKEv2-through-NAT capture with both IKE_AUTH messages sent as IP fragments, as a link with
    a small MTU would (the same mechanics as certificate-sized IKE_AUTH on a 1500-byte path)."""
    out = []
    for p in rdpcap(str(LAB / "ikev2-nat-ok.inside.pcap")):
        data = bytes(p[UDP].payload) if UDP in p else b""
        if data[:4] == b"\0\0\0\0" and len(data) > 28 and data[4 + 18] == 35:  # IKE_AUTH after the non-ESP marker
            ip = p[IP].copy()
            ip.flags = 0
            for frag in fragment(ip, fragsize=128):
                out.append(Ether(bytes(p)[:14]) / frag)
                out[-1].time = p.time
        else:
            out.append(p)
    path = tmp_path / "fragmented.pcap"
    wrpcap(str(path), out)
    return path


def _tcpdump(src, expr, dst):
    tcpdump = shutil.which("tcpdump")
    if not tcpdump:
        pytest.skip("tcpdump is not installed")
    subprocess.run([tcpdump, "-r", str(src), "-w", str(dst), expr], check=True, capture_output=True)
    return dst


def test_filtered_by_the_old_recipe(tmp_path):
    """tcpdump with the old recipe keeps the first fragment of each IKE_AUTH only; the responder answered
    the request and ESP flows, so the capture's filter cut them -- IKE_AUTH is not 'blocked on UDP 4500'."""
    full = _fragmented_ike_auth(tmp_path)
    an, found = read(_tcpdump(full, OLD_RECIPE, tmp_path / "old.pcap"))
    (f,) = [f for f in found if f.code == "capture-filtered"]
    assert "2 IP datagrams" in f.summary and "first fragment only" in f.summary and CAPTURE_FILTER in f.hint
    (st,) = stall_limits(an)
    assert st.at == "IKE_AUTH" and FILTERED in st.limits and not stalls.rank(st)
    no_ranked_causes_under_void_limits(found)
    assert not [x for x in found if x.code == "stall" and x.severity == ERROR]
    assert {x.severity for x in found if x.code == "fragments-incomplete"} == {WARNING}  # not a loss on the path


def test_the_new_recipe_keeps_what_the_diagnosis_needs(tmp_path):
    full = _fragmented_ike_auth(tmp_path)
    an, found = read(_tcpdump(full, CAPTURE_FILTER, tmp_path / "new.pcap"))
    assert not [f for f in found if f.code in ("capture-filtered", "stall", "fragments-incomplete")]
    (line,) = verdicts(an, found).values()
    assert line == "tunnel up: IKE SA up, ESP both ways"


def test_first_fragments_alone_are_not_proof_of_a_filter(tmp_path):
    """The lab's ikev2-fragments-dropped capture with its non-first fragments removed: the responder never
    answers, so a path that drops non-first fragments looks the same -- no capture-filtered."""
    path = cut(tmp_path, "ikev2-fragments-dropped.inside.pcap",
               lambda i, p: IP not in p or not p[IP].frag)
    an, found = read(path)
    assert an.reassembler.incomplete and "capture-filtered" not in codes(found)


def test_recipes_capture_icmp_and_fragments():
    """Every capture recipe in the --help texts uses the filter that keeps ICMP and non-first fragments,
    and it compiles."""
    for text in (READ_HELP, COMPARE_HELP):
        recipe = " ".join(text.split("F='", 1)[1].split("'", 1)[0].split())
        assert recipe == CAPTURE_FILTER
    tcpdump = shutil.which("tcpdump")
    if tcpdump:
        subprocess.run([tcpdump, "-d", "-y", "EN10MB", CAPTURE_FILTER], check=True, capture_output=True)


# -- the limits the other capture-quality checks plug in --------------------------------------------------

def test_no_time_and_snaplen_plug_in(tmp_path):
    """With `no_time` set, an unanswered request sent once is judged by no clock; with `snaplen`, a missing
    message may be a cut frame: both leave the stall without causes."""
    an, _ = read(cut(tmp_path, "ikev2-ok.inside.pcap", lambda i, p: i < 3))
    (sa,) = an.sas.values()
    (st,) = stalls.sa_stalls(an, sa)
    stalls.limit(st, an, capture_limits.CaptureLimits(no_time=True, snaplen=True))
    assert list(st.limits) == ["snaplen", "no-time"] and not stalls.rank(st)


def test_no_time_and_snaplen_reach_the_stalls(tmp_path):
    """capture_quality's judgements gate the stalls through the same place: a lab IKE_AUTH request sent once
    with every timestamp zeroed cannot be judged by how long it waited (capture-no-time, no cause ranked);
    the same capture cut to 60 bytes a frame leaves the answer, if any, unreadable (capture-snaplen)."""
    packets = [p for p in rdpcap(str(LAB / "ikev2-ok.inside.pcap")) if UDP in p][:3]  # IKE_SA_INIT x2, IKE_AUTH
    for p in packets:
        p.time = 0
    wrpcap(str(tmp_path / "zero.pcap"), packets)
    an, found = read(tmp_path / "zero.pcap")
    assert "capture-no-time" in codes(found)
    (st,) = [f for f in found if f.code == "stall"]
    assert st.causes == [] and st.severity == WARNING and "no usable timestamps" in st.summary
    snap = tmp_path / "snap.pcap"
    editcap = shutil.which("editcap") or pytest.skip("editcap (Debian's wireshark-common, installed with tshark) is "
                                                     "not installed")
    subprocess.run([editcap, "-s", "60", str(LAB / "ikev2-ok.inside.pcap"), str(snap)], check=True,
                   capture_output=True)
    an, found = read(snap)
    assert "capture-snaplen" in codes(found)
    view = capture_limits.judge(an, read_captures([str(snap)]).infos)
    assert view.snaplen
