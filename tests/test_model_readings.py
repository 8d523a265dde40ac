"""The model's readings of an IKE SA (state, up, NAT, SA boundaries) on real captures, each expected value
taken from tshark's decode of the same frames or from the RFC, never from ikeflow's own output."""

from __future__ import annotations

import subprocess

import pytest
from scapy.all import rdpcap, wrpcap

from conftest import PCAPS, need_public, need_tshark
from ikeflow.model.analysis import AUTHIP
from ikeflow.pipeline import read_captures

LAB = PCAPS / "lab"
LIB = "openswan/tests/unit/libpluto/"
XF = "openswan/tests/unit/xfrmmock/"
# capture-mid-session files of the review (C16): the IKE SA's opening is not in them
MID_SESSION = [LIB + p for p in (
    "lp101-v1rwnatQR1failed/v1rwnatM2.pcap", "lp101-v1rwnatQR1failed/v1rwnatM3.pcap",
    "lp101-v1rwnatQR1failed/v1rwnatQI1.pcap", "lp108-v1rwnatQI1/v1rwnatN3.pcap", "lp109-v1rwnatQR1/v1rwnatQI1.pcap",
    "lp166-natt-replaceI/nattR2.pcap", "lp167-natt-replaceR/nattI2.pcap", "lp175-parentN2/parentM2.pcap",
    "lp176-parentM3/parentN2.pcap")] + [XF + p for p in (
    "xf109-v1rwnatQR1/v1rwnatM2.pcap", "xf109-v1rwnatQR1/v1rwnatM3.pcap", "xf109-v1rwnatQR1/v1rwnatQI1.pcap",
    "xf79-childQR1/childQI1.pcap", "xf79-childQR1/parentM2.pcap", "xf79-childQR1/parentM3.pcap")] + [
    "suricata-verify/tests/detect-bypass-udp/input.pcap"]
# a lone IKE_SA_INIT answer (the review's "minor wording")
LONE_ANSWER = ["openswan/tests/unit/ikev2crypto/ct10-parentI2/parentR1.pcap"] + [LIB + p for p in (
    "lp16-initiateselfI2/parentR1.pcap", "lp20-certificateselfI2/parentR1.pcap", "lp26-davecertI2/certreplydaveR1.pcap",
    "lp38-h2hI2/h2hR1.pcap", "lp54-davecert-gatewayID-I2/davecert-R1-id.pcap", "lp73-alg-h2hI2/h2hR1.pcap",
    "lp166-natt-replaceI/nattR1.pcap", "lp203-ca-h2hI2/h2hR1.pcap", "lp205-ca-h2hI3/h2hR1.pcap")]
FIELDS = ("frame.number", "ip.src", "ip.dst", "udp.dstport", "isakmp.ispi", "isakmp.rspi", "isakmp.exchangetype",
          "isakmp.flags", "isakmp.notify.msgtype")


def tshark(path, display: str = "isakmp") -> list[dict[str, str]]:
    """One dict per matching frame, FIELDS as tshark decodes them (UDP 4500 is ISAKMP after the marker)."""
    out = subprocess.run([need_tshark(), "-r", str(path), "-Y", display, "-T", "fields", "-E", "separator=/t",
                          *[a for f in FIELDS for a in ("-e", f)]], capture_output=True, text=True, check=True)
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.stdout.splitlines()]


def opens(row: dict) -> bool:
    """MM1 / AM1 / an IKE_SA_INIT request: responder SPI zero, Main/Aggressive Mode or IKE_SA_INIT with the
    initiator flag and without the response flag (RFC 2408 3.1, RFC 7296 3.1)."""
    flags = int(row["isakmp.flags"], 16)
    zero = int(row["isakmp.rspi"], 16) == 0
    return zero and (row["isakmp.exchangetype"] in ("2", "4")
                     or (row["isakmp.exchangetype"] == "34" and flags & 0x08 and not flags & 0x20))


def only_sa(path):
    result = read_captures([str(path)])
    (sa,) = result.model.sas.values()
    return sa, result


@pytest.mark.parametrize("rel", MID_SESSION)
def test_mid_session_draws_no_nat_or_float(rel):
    """C16: no frame opens the SA (tshark), so neither NAT nor a start on the NAT-T port is claimed."""
    path = need_public() / rel
    rows = tshark(path)
    assert rows and not any(opens(r) for r in rows)
    sa, result = only_sa(path)
    assert sa.opening_missing()
    assert sa.behind_nat() == {"I": None, "R": None} and not sa.started_natt and sa.rewritten() is None
    assert not [f for f in result.findings if f.code == "nat-t"]
    if rows[0]["udp.dstport"] == "4500":  # what stays a fact: the first message is on UDP 4500, no float in view
        assert sa.float_at is None


def test_an_opened_sa_on_4500_still_started_there():
    """The lab's IKEv2 rekey: the new IKE SA appears on UDP 4500 after an answered CREATE_CHILD_SA (tshark:
    exchange 36 answered before the new SPI's first frame); it has no opening of its own and is no mid-session."""
    rows = tshark(LAB / "ikev2-rekey-delete.inside.pcap")
    spis = list(dict.fromkeys(r["isakmp.ispi"] for r in rows))
    first_new = next(r for r in rows if r["isakmp.ispi"] == spis[-1])
    ccsa = [r for r in rows if r["isakmp.exchangetype"] == "36" and int(r["isakmp.flags"], 16) & 0x20]
    assert ccsa and int(ccsa[0]["frame.number"]) < int(first_new["frame.number"]) and first_new["udp.dstport"] == "4500"
    sas = {sa.ispi.hex(): sa for sa in read_captures([str(LAB / "ikev2-rekey-delete.inside.pcap")]).model.sas.values()}
    new = sas[spis[-1]]
    assert new.after_child and not new.opening_missing() and new.started_natt


def test_ike_sa_init_request_after_up_starts_a_new_sa():
    """C13: openswan lp91 frame 3 is an IKE_SA_INIT request (tshark: exchange 34, I flag, rspi 0) under the SPI
    of the SA that frames 1-2 show up (IKE_AUTH response): a new SA, initiated by frame 3's sender."""
    path = need_public() / LIB / "lp91-h2h-sareplace-R1/h2hR2rekey.pcap"
    rows = tshark(path)
    assert opens(rows[2]) and rows[2]["isakmp.ispi"] == rows[0]["isakmp.ispi"]
    old, new = read_captures([str(path)]).model.sas.values()
    assert [m.ref for m in old.messages] == [1, 2] and [m.ref for m in new.messages] == [3]
    assert old.rspi.hex() == rows[0]["isakmp.rspi"] and old.ike_sa_up() and old.opening_missing()
    assert new.initiator[0] == bytes(map(int, rows[2]["ip.src"].split("."))) and not new.ike_sa_up()
    assert new.state() == "IKE_SA_INIT unanswered"


def test_redirect_followed():
    """C3: scapy's ikev2_notify_redirect.pcap: frame 2 answers IKE_SA_INIT with N(REDIRECT) (16407) and rspi 0;
    frame 3, a new IKE_SA_INIT from the same client, carries N(REDIRECTED_FROM) (16408, RFC 5685 5) to another
    gateway: the first SA was redirected there, and nothing is owed on it."""
    path = need_public() / "scapy/test/pcaps/ikev2_notify_redirect.pcap"
    rows = tshark(path)
    assert rows[1]["isakmp.notify.msgtype"] == "16407" and int(rows[1]["isakmp.rspi"], 16) == 0
    assert "16408" in rows[2]["isakmp.notify.msgtype"].split(",") and rows[2]["ip.src"] == rows[0]["ip.src"]
    sas = {sa.ispi.hex(): sa for sa in read_captures([str(path)]).model.sas.values()}
    first = sas[rows[0]["isakmp.ispi"]]
    assert first.state() == f"redirected to {rows[2]['ip.dst']}" and first.owed(1e12) == []


def test_cookie_retry_answered_reads_the_same_everywhere():
    """C8: nDPI ipsec_isakmp_esp.pcap: every SA whose IKE_SA_INIT got N(COOKIE) (16390), was sent again under
    the same SPI and then answered with a responder SPI, and never sent IKE_AUTH (tshark), reads alike: none
    is another SA's retry."""
    path = need_public() / "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap"
    by_spi: dict[str, list[dict]] = {}
    for r in tshark(path):
        by_spi.setdefault(r["isakmp.ispi"], []).append(r)
    cases = [spi for spi, rs in by_spi.items()
             if [r["isakmp.exchangetype"] for r in rs] == ["34"] * 4 and rs[1]["isakmp.notify.msgtype"] == "16390"
             and int(rs[3]["isakmp.rspi"], 16) != 0]
    assert len(cases) >= 2 and {"23fd893f0ca67b1a", "53508da54d980765"} <= set(cases)
    sas = {sa.ispi.hex(): sa for sa in read_captures([str(path)]).model.sas.values()}
    assert {sas[spi].state() for spi in cases} == {"IKE_SA_INIT answered after a retry (COOKIE), no IKE_AUTH seen"}
    assert not any(sas[spi].retried_by for spi in cases)


def test_authip_is_not_ike():
    """C15: libreswan's weirdike capture is Microsoft AuthIP: ISAKMP 1.0 with exchange type 243 (tshark), an
    AuthIP Main Mode ([MS-AIPS] 2.2.1: 0xF3-0xF6): skipped as not IKE, no IKE SA, nothing malformed."""
    path = need_public() / "libreswan/testing/pluto/replay-authip-01/weirdike-eastwest.pcap-ike.pcap"
    assert [r["isakmp.exchangetype"] for r in tshark(path)] == ["243"]
    an = read_captures([str(path)]).model
    assert not an.sas and not an.malformed and an.skipped == {AUTHIP: 1} and an.stats.skipped == 1
    assert AUTHIP.startswith("not IKE: AuthIP")


def test_one_way_ike_auth_proves_the_answer():
    """C2: tcpdump ikev2pI2.pcap: frame 2 is an IKE_AUTH request (tshark: exchange 35) carrying a responder SPI,
    which only the answer to frame 1's IKE_SA_INIT gives: never "IKE_SA_INIT unanswered"."""
    path = need_public() / "tcpdump/tests/ikev2pI2.pcap"
    rows = tshark(path)
    assert opens(rows[0]) and rows[1]["isakmp.exchangetype"] == "35" and int(rows[1]["isakmp.rspi"], 16)
    sa, _ = only_sa(path)
    assert sa.state() == "IKE_AUTH incomplete (the IKE_SA_INIT answer is not in the capture)"


@pytest.mark.parametrize("rel", LONE_ANSWER)
def test_lone_ike_sa_init_answer(rel):
    """A capture of one IKE_SA_INIT response (tshark: exchange 34, R flag) says what was seen, not IKE_AUTH."""
    path = need_public() / rel
    (row,) = tshark(path)
    assert row["isakmp.exchangetype"] == "34" and int(row["isakmp.flags"], 16) & 0x20
    sa, _ = only_sa(path)
    assert sa.state() == "IKE_SA_INIT answered, no IKE_AUTH seen"


def _ikev1_main(path):
    """(frame, sender, exchange type) of each ISAKMP frame, as tshark reads them."""
    return [(int(r["frame.number"]), r["ip.src"], r["isakmp.exchangetype"]) for r in tshark(path)]


def test_mm5_resent_after_mm6_is_not_up():
    """ikev1-dpd-replies-lost (outside): the second SA's initiator re-sends MM5 after MM6 (tshark: frames 24-29
    alternate 192.0.2.2 / 203.0.113.2 in Main Mode, nothing after): it never got MM6, phase 1 is not up."""
    path = LAB / "ikev1-dpd-replies-lost.outside.pcap"
    ladder = _ikev1_main(path)
    tail = [(src, ex) for n, src, ex in ladder if n >= 24]
    assert tail == [("192.0.2.2", "2"), ("203.0.113.2", "2")] * 3
    sas = list(read_captures([str(path)]).model.sas.values())
    assert sas[1].state() == "phase 1 incomplete (last MM6)" and not sas[1].ike_sa_up()
    assert sas[0].ike_sa_up()


@pytest.mark.parametrize("move_on", [True, False])
def test_mm5_crossing_mm6(tmp_path, move_on):
    """The lab's ikev1-main-ok with MM5 (frame 5) sent again right after MM6 (frame 6): when the initiator goes
    on with Quick Mode (tshark: exchange 32 from it after the copy) the copy crossed MM6 and phase 1 is up;
    when the capture ends with the copy, the initiator never had MM6."""
    frames = rdpcap(str(LAB / "ikev1-main-ok.inside.pcap"))
    copy = frames[4].copy()
    copy.time = frames[5].time + 0.0001
    out = [*frames[:6], copy, *(frames[6:] if move_on else [])]
    path = tmp_path / "mm5-again.pcap"
    wrpcap(str(path), out)
    ladder = _ikev1_main(path)
    assert ladder[6] == (7, "192.0.2.2", "2") and bytes(frames[4]) == bytes(copy)
    assert (ladder[7][1:] == ("192.0.2.2", "32")) if move_on else len(ladder) == 7
    sa, _ = only_sa(path)
    assert sa.ike_sa_up() == move_on
    assert sa.state() == ("phase 2 up (1 quick mode)" if move_on else "phase 1 incomplete (last MM6)")


def test_isakmp4500_stays_up():
    """tcpdump isakmp4500.pcap: Main Mode then Quick Mode from the initiator (tshark: exchange 32 after the
    last exchange-2 frame): phase 1 is up, whatever Quick Mode re-sends."""
    path = need_public() / "tcpdump/tests/isakmp4500.pcap"
    ladder = _ikev1_main(path)
    last_mm = max(n for n, _, ex in ladder if ex == "2")
    assert any(n > last_mm and src == ladder[0][1] and ex == "32" for n, src, ex in ladder)
    sa, _ = only_sa(path)
    assert sa.ike_sa_up()


# -- states that follow what the peers really reached ----------------------------------------------------

def test_eap_failure_after_the_responders_auth_is_not_up():
    """ikev2-eap-failed (the logs): IKE_AUTH response 1 carries IDr AUTH EAP/REQ/ID, response 3 is EAP/FAIL
    (16 bytes of plaintext at most), then the initiator sends N(AUTH_FAILED): the IKE SA never came up."""
    for side in ("inside", "outside"):
        r = read_captures([str(LAB / f"ikev2-eap-failed.{side}.pcap")])
        (sa,) = r.model.sas.values()
        assert not sa.ike_sa_up()
        assert next(iter(r.verdicts.values())).startswith("IKE_AUTH fails — ")


def test_quick_mode_whose_qm2_is_re_sent_after_qm3_is_not_completed():
    """tcpdump isakmp4500.pcap (tshark): QM1, QM2, QM3, then the responder re-sends QM2 after each QM3."""
    r = read_captures([str(need_public() / "tcpdump/tests/isakmp4500.pcap")])
    (sa,) = r.model.sas.values()
    assert sa.state() == "phase 1 up, 1 quick mode not completed (QM2 re-sent after QM3)"


@pytest.mark.parametrize("fixture,state", [
    ("lp48-rekeyikev2-inCR1", "IKE_SA_INIT not seen, IKE SA in use, 1 CREATE_CHILD_SA"),
    ("lp58-rekeyv2nopfs-inCR1", "IKE_SA_INIT not seen, IKE SA in use, 1 CREATE_CHILD_SA"),
    ("lp89-rekeyv2-inval-inCR1", "IKE_SA_INIT not seen, IKE SA in use, 1 CREATE_CHILD_SA refused"),
])
def test_lone_create_child_sa_answer_accepted_or_refused(fixture, state):
    """tshark: each file is one CREATE_CHILD_SA response (flags 0x20/0x21) of an SA whose IKE_SA_INIT is not
    captured, so the cipher is unknown; IKE lengths 496 and 240 (SA first) vs 80 (Notify first): refused."""
    r = read_captures([str(need_public() / f"openswan/tests/unit/libpluto/{fixture}/rekeyCR1.pcap")])
    (sa,) = r.model.sas.values()
    assert sa.state() == state
