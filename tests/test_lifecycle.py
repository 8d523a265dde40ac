"""How each IKE SA ended (model.lifecycle), and the verdict about the SA alive at the end.

The expected frames come from tshark (`-T fields -e frame.number -e isakmp.ispi -e isakmp.exchangetype
-e isakmp.flags -e isakmp.nextpayload`), where the SK payload's next-payload value is the first inner
payload: 42 Delete, 0 none.
"""

from __future__ import annotations

from pathlib import Path

from conftest import need_public
from ikeflow.pipeline import read_captures

LAB = Path(__file__).resolve().parents[1] / "pcaps" / "lab"


def _sas(path):
    r = read_captures([str(path)])
    return {sa.ispi.hex()[:8]: sa for sa in r.model.sas.values()}, r


def test_rekey_then_delete():
    """strongSwan lab: the IKE SA d932d378 is rekeyed (CREATE_CHILD_SA, frames 17/18), the old one deleted
    (frame 19: Delete first, frame 20: empty answer); the new SA fb3284fe appears without an IKE_SA_INIT of
    its own and is deleted at the clean terminate (frames 25/26)."""
    sas, r = _sas(LAB / "ikev2-rekey-delete.inside.pcap")
    assert sas["d932d378"].closed[:2] == ("replaced", 19)
    assert sas["fb3284fe"].closed[:2] == ("delete", 25)
    (verdict,) = r.verdicts.values()
    assert verdict == "IKE SA up, 2 CREATE_CHILD_SA, then deleted at frame 25, ESP both ways"


def test_collision_keeps_the_sa_that_lives_on():
    """FortiGate pair (arkime IKEv2.pcap): both ends bring an IKE SA up (8e777946 at 32 s from ::4,
    e5bc6755 at 40 s from ::2); 8e777946 is deleted (Delete exchanges in frames 48-52, nothing after).
    The verdict is about e5bc6755, which lives on with 2 CREATE_CHILD_SA, not the other."""
    sas, r = _sas(need_public() / "arkime/tests/pcap/IKEv2.pcap")
    assert sas["8e777946"].closed[:2] == ("collision", 48)
    assert sas["e5bc6755"].closed is None
    (pair,) = r.model.pairs.values()
    assert pair.alive is sas["e5bc6755"]
    assert r.verdicts[next(iter(r.model.pairs))] == "tunnel up: IKE SA up, 2 CREATE_CHILD_SA, ESP both ways"


def test_sessions_one_after_the_other_are_deleted_not_replaced():
    """The wiki NAT-T capture: three connections one after the other, each deleted before the next starts
    with its own IKE_SA_INIT."""
    sas, _ = _sas(need_public() / "scapy/test/pcaps/ikev2_nat_t.pcapng")
    assert sorted(sa.closed[0] for sa in sas.values()) == ["delete"] * 3


def test_up_sa_followed_by_a_new_negotiation_expired():
    """An SA that came up, fell silent and was followed by a new IKE_SA_INIT between the same peers, without
    a Delete (the wiki's ipsec.cap reconnect loop)."""
    sas, r = _sas(need_public() / "wireshark-wiki/uploads/__moin_import__/attachments/SampleCaptures/ipsec.cap")
    expired = [sa for sa in sas.values() if sa.closed and sa.closed[0] == "expired"]
    assert expired and all(sa.up_time is not None for sa in expired)
    assert all(sa.closed is None for sa in sas.values() if sa.up_time is None)


def test_a_tunnel_that_stays_up_is_not_closed():
    sas, r = _sas(LAB / "ikev2-ok.inside.pcap")
    assert [sa.closed for sa in sas.values()] == [None]
    assert next(iter(r.verdicts.values())).startswith("tunnel up: ")


def test_refused_create_child_sa_is_not_counted_as_done():
    """strongSwan lab, PFS groups differ: the CHILD rekey (frames 9/10) is answered with a notify only (tshark:
    the SK payload's first inner payload is 41, N): a refused CREATE_CHILD_SA, not one more child SA."""
    sas, _ = _sas(LAB / "ikev2-pfs-mismatch.inside.pcap")
    assert [sa.state() for sa in sas.values()] == ["IKE SA up, 1 CREATE_CHILD_SA refused"]


def test_refused_create_child_sa_in_a_public_capture():
    """tcpdump's ikev2four.pcap: tshark shows the CREATE_CHILD_SA responses of frames 9 and 10 starting with a
    Notify (SK next payload 41) in 76 bytes, the other five with an SA (33): 5 done, 2 refused."""
    sas, _ = _sas(need_public() / "tcpdump/tests/ikev2four.pcap")
    assert "IKE SA up, 5 CREATE_CHILD_SA, 2 CREATE_CHILD_SA refused" in [sa.state() for sa in sas.values()]


def test_a_mid_session_sa_after_it_does_not_expire_an_sa():
    """tcpdump's ikev2four.pcap: frame 21 (tshark: ispi 1d9be9451d4f97a8, INFORMATIONAL, SK first payload 42)
    deletes an IKE SA whose setup is not in the capture; it starts no new negotiation, so a88875a8 (IKE SA up,
    frames 1-20) did not expire, and the verdict does not borrow the other SA's Delete."""
    sas, r = _sas(need_public() / "tcpdump/tests/ikev2four.pcap")
    assert sas["a88875a8"].closed is None
    assert sas["1d9be945"].closed[:2] == ("delete", 21)
    (verdict,) = r.verdicts.values()
    assert verdict == "IKE SA up, 5 CREATE_CHILD_SA, 2 CREATE_CHILD_SA refused, no ESP seen"
