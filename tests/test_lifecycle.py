"""How each IKE SA ended (model.lifecycle), and the verdict about the SA alive at the end.

The expected frames come from tshark (`-T fields -e frame.number -e isakmp.ispi -e isakmp.exchangetype
-e isakmp.flags -e isakmp.nextpayload`), where the SK payload's next-payload value is the first inner
payload: 42 Delete, 0 none.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

from conftest import need_public, need_tshark
from ikeflow.model import lifecycle
from ikeflow.pipeline import read_captures

LAB = Path(__file__).resolve().parents[1] / "pcaps" / "lab"


def _sas(path):
    r = read_captures([str(path)])
    return {sa.ispi.hex()[:8]: sa for sa in r.model.sas.values()}, r


def _tshark(path, display: str, *fields: str, keys=None, conf=None) -> list[list[str]]:
    """tshark's fields of the frames matching `display`; with `keys`, an IKEv2 decryption table (copied into
    the configuration directory `conf`)."""
    cmd = [need_tshark(), "-r", str(path), "-Y", display, "-T", "fields", "-E", "separator=/t"]
    for f in fields:
        cmd += ["-e", f]
    env = None
    if keys is not None:
        shutil.copy(keys, conf / "ikev2_decryption_table")
        env = {"WIRESHARK_CONFIG_DIR": str(conf), "PATH": "/usr/bin:/bin", "HOME": str(conf)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


def _decrypted_deletes(path, keys, conf) -> dict[int, tuple[str, str]]:
    """frame -> (ispi, protocol ID of its first Delete payload: "1" IKE, "3" ESP) of every decrypted Delete."""
    rows = _tshark(path, "isakmp.delete.protoid", "frame.number", "isakmp.ispi", "isakmp.delete.protoid",
                   keys=keys, conf=conf)
    return {int(f): (ispi, proto.split(",")[0]) for f, ispi, proto in rows}


def _first_frames(src, dst, n: int) -> None:
    """Write the first `n` frames of the pcap `src` to `dst`."""
    data = src.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    at = 24
    for _ in range(n):
        at += 16 + struct.unpack_from(order + "I", data, at + 8)[0]
    dst.write_bytes(data[:at])


def test_rekey_then_delete():
    """strongSwan lab: the IKE SA 9a2cbc0f is rekeyed (CREATE_CHILD_SA, frames 17/18), the old one deleted
    (frame 19: Delete first, frame 20: empty answer); the new SA 78acf139 appears without an IKE_SA_INIT of
    its own and is deleted at the clean terminate (frames 25/26)."""
    sas, r = _sas(LAB / "ikev2-rekey-delete.inside.pcap")
    assert sas["9a2cbc0f"].closed[:2] == ("replaced", 19)
    assert sas["78acf139"].closed[:2] == ("delete", 25)
    (verdict,) = r.verdicts.values()
    assert verdict == "IKE SA up, 2 CREATE_CHILD_SA, then deleted at frame 25, ESP both ways"


def test_collision_loser_whose_children_were_deleted():
    """FortiGate pair (arkime IKEv2.pcap, no keys): both ends bring an IKE SA up (8e777946 at 32 s from ::4,
    e5bc6755 at 40 s from ::2).  On 8e777946, tshark shows the Delete requests of frames 48 and 51 answered
    by frames 49 and 52 whose SK payload also starts with a Delete (next payload 42): child SAs deleted, each
    answered with the paired SPIs (RFC 7296 1.4.1); the IKE SA itself is never deleted.  After frame 52 it
    falls silent while ::2 keeps probing e5bc6755 every 5 s (frames 72-183, SK first payload 0): 8e777946
    lost the collision without a Delete, at its last message; the verdict is about e5bc6755."""
    need_tshark()
    path = need_public() / "arkime/tests/pcap/IKEv2.pcap"
    rows = _tshark(path, "isakmp.ispi == 8e7779464044673e && isakmp.exchangetype == 37",
                   "frame.number", "isakmp.flags", "isakmp.nextpayload")
    deletes = {int(f): (int(flags, 16) & 0x20 != 0, nxt.split(",")[1]) for f, flags, nxt in rows}
    assert {f: d for f, d in deletes.items() if d[1] == "42"} == {48: (False, "42"), 49: (True, "42"),
                                                                   51: (False, "42"), 52: (True, "42")}
    sas, r = _sas(path)
    assert sas["8e777946"].closed[:2] == ("collision", max(deletes))
    assert sas["e5bc6755"].closed is None
    (pair,) = r.model.pairs.values()
    assert pair.alive is sas["e5bc6755"]
    assert r.model.owners.churn(pair)["collisions"] == 1
    assert r.verdicts[next(iter(r.model.pairs))] == "tunnel up: IKE SA up, 2 CREATE_CHILD_SA, ESP both ways"


WIKI_V2 = ("wireshark-wiki/uploads/dc5b30a117424e6ed21c726771a4006b/ipsec_ikev2+esp_aes-gcm_aes-ctr_aes-cbc.tgz/"
           "ipsec_ikev2+esp_aes-gcm,aes-ctr,aes-cbc")


def test_the_ike_sa_delete_is_the_last_one_answered_empty(tmp_path):
    """The wiki NAT-T capture, decrypted with its own key table: each of the three connections deletes its ESP
    SAs from both ends at once (Delete protocol ESP, answered empty: a simultaneous child delete), then the
    IKE SA (protocol IKE, answered empty).  The IKE SA ends at the protocol-IKE Delete, and the scapy copy
    (byte-identical) reads the same; the sessions follow one another, so each is "delete"."""
    public = need_public()
    truth = _decrypted_deletes(public / WIKI_V2 / "capture.pcapng", public / WIKI_V2 / "ikev2_decryption_table",
                               tmp_path)
    ike = {ispi[:8]: frame for frame, (ispi, proto) in truth.items() if proto == "1"}
    assert sorted(ike.values()) == [17, 35, 53] and sum(p == "3" for _, p in truth.values()) == 6
    for path in (public / WIKI_V2 / "capture.pcapng", public / "scapy/test/pcaps/ikev2_nat_t.pcapng"):
        sas, r = _sas(path)
        assert {k: sa.closed[:2] for k, sa in sas.items()} == {k: ("delete", f) for k, f in ike.items()}
        (verdict,) = r.verdicts.values()
        assert verdict == f"IKE SA up, then deleted at frame {max(ike.values())}, ESP both ways"


DECRYPT = ["ikev2-decrypt-3des-sha1_160.pcap", "ikev2-decrypt-aes128ccm12.pcap", "ikev2-decrypt-aes128ccm12-2.pcap",
           "ikev2-decrypt-aes192ctr.pcap", "ikev2-decrypt-aes256gcm16.pcap", "ikev2-decrypt-aes256gcm8.pcap"]


def test_delete_size_tells_the_ike_sa_only_without_block_padding(tmp_path):
    """Wireshark's decryption test captures: frame 5 is a Delete of protocol IKE (tshark with the shipped key
    table), answered empty (frame 6).  With the answer cut off, the SK plaintext's size alone decides: the
    CCM/CTR/GCM captures pad nothing (pad length 0), so 9 bytes hold an 8-byte Delete payload and no 4-byte
    SPI: the IKE SA's; 3DES pads to 16 bytes, which a child's Delete would fit too: unknown.  The wiki
    capture's child (ESP) and IKE Deletes are both 16 bytes: size never claims the IKE SA there."""
    public = need_public()
    keys = public / "wireshark/test/config/ikev2_decryption_table.tmpl"
    for name in DECRYPT:
        path = public / "wireshark/test/captures" / name
        ispi, proto = _decrypted_deletes(path, keys, tmp_path)[5]
        pad = _tshark(path, "frame.number == 5", "isakmp.enc.pad_length", keys=keys, conf=tmp_path)[0][0]
        assert proto == "1"
        sas, _ = _sas(path)
        assert sas[ispi[:8]].closed[:2] == ("delete", 5)
        cut = tmp_path / name
        _first_frames(path, cut, 5)
        sas, _ = _sas(cut)
        assert sas[ispi[:8]].closed[:2] == ("delete" if pad == "0" else "delete-unanswered", 5), name
    for ispi, sa in _sas(public / WIKI_V2 / "capture.pcapng")[0].items():
        child = [m for m in sa.messages if m.request and m.msg.encrypted_first == "D"]
        assert all(m.plaintext >= lifecycle.CHILD_DELETE_MIN for m in child)


def test_an_unanswered_delete_is_said_as_such():
    """nDPI's stitched capture: each of these pairs' last IKE SA ends with the gateway's Delete request (tshark:
    SK first payload 42, responder request, 76 bytes: frame 206 on SA 7945f763), nothing answers it, and its
    16 bytes of SK plaintext fit a child's Delete as well as the IKE SA's."""
    sas, r = _sas(need_public() / "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap")
    assert sas["7945f763"].closed[:2] == ("delete-unanswered", 206)
    assert "IKE SA up, then a Delete at frame 206, unanswered, ESP both ways" in r.verdicts.values()


def test_a_new_negotiation_after_an_sa_supersedes_it():
    """nDPI, 109.237.187.194: SA 90491a95 comes up (frame 170) and carries ESP (171-179); 100 s later the
    client sends a new IKE_SA_INIT (frame 184, tshark: ispi 23fd893f..., rspi 0) and no Delete of 90491a95 is
    ever sent.  Nothing expired: the client started over (and left that attempt after IKE_SA_INIT)."""
    sas, r = _sas(need_public() / "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap")
    assert sas["90491a95"].closed[:2] == ("superseded", 184)
    assert sas["23fd893f"].closed is None
    assert "IKE SA up, then the peers started over at frame 184, without a Delete, ESP both ways" in r.verdicts.values()


def test_reconnect_loop_is_superseded_not_expired():
    """The wiki's ipsec.cap: client 192.168.0.252 brings IKE SA after IKE SA up (IKE_AUTH answered) and starts
    the next IKE_SA_INIT within a second without any Delete; aafbc9ab comes up at frame 338 and tshark shows
    the next IKE_SA_INIT (ispi 2e550c4e..., rspi 0) at frame 341, 60 ms later."""
    sas, r = _sas(need_public() / "wireshark-wiki/uploads/__moin_import__/attachments/SampleCaptures/ipsec.cap")
    assert sas["aafbc9ab"].closed[:2] == ("superseded", 341)
    assert {sa.closed[0] for sa in sas.values() if sa.closed} == {"superseded"}
    assert all(sa.closed is None for sa in sas.values() if sa.up_time is None)
    assert "IKE SA up, then the peers started over at frame 341, without a Delete, no ESP seen" in r.verdicts.values()


def test_the_same_delete_reads_the_same_with_a_new_ike_sa_init_after_it():
    """openswan fixtures lp83 and lp91 hold the same 80-byte Delete request (frame 2, SK first payload 42) of an
    SA whose IKE_SA_INIT is not captured (proposal unknown: size tells nothing); lp91 adds an IKE_SA_INIT
    request (frame 3, rspi 0) that starts another SA.  Both: a Delete sent at frame 2, unanswered."""
    lib = need_public() / "openswan/tests/unit/libpluto"
    for path in (lib / "lp83-h2h-deleteSA-I3/h2hR2delete.pcap", lib / "lp91-h2h-sareplace-R1/h2hR2rekey.pcap"):
        r = read_captures([str(path)])
        (old,) = [sa for sa in r.model.sas.values() if sa.rspi.hex() == "debc583a8f40d0cf"]  # tshark frame 2
        assert old.closed[:2] == ("delete-unanswered", 2), path
        (verdict,) = r.verdicts.values()
        assert verdict.startswith("IKE SA up, then a Delete at frame 2, unanswered")


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
    assert sas["1d9be945"].closed[:2] == ("delete-unanswered", 21)
    (verdict,) = r.verdicts.values()
    assert verdict == "IKE SA up, 5 CREATE_CHILD_SA, 2 CREATE_CHILD_SA refused, no ESP seen"
