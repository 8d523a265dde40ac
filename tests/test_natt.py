"""NAT-T done robustly: the NAT-D / NAT-OA numbers of the NAT-T draft both peers chose, a NAT-D mismatch the
peers never acted on (rewritten or anonymised addresses, not a NAT), started on UDP 4500 versus floated there,
no NAT (NAT-D verified) versus unknown.

Messages are built here byte by byte with struct and hashlib; the NAT-D hashes of real captures are recomputed
from tshark's fields (SPIs, addresses, ports, payload bytes), never taken from ikeflow.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import PCAPS, need_public, need_tshark
from ikeflow.decode import packet as pk
from ikeflow.diagnose.findings import find
from ikeflow.model.analysis import Analyzer
from ikeflow.pipeline import read_captures
from ikeflow.sources.capture import split_ref

I, R, NAT = "192.0.2.10", "203.0.113.20", "198.51.100.7"
CKY_I, CKY_R = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")
ZERO = bytes(8)
MM, AGGRESSIVE, INFO, IKE_SA_INIT, IKE_AUTH = 2, 4, 5, 34, 35
KE, NONCE, VID, NATD, NATOA, SAK, SAT, FRAG = 4, 10, 13, 20, 21, 15, 16, 132


# -- building messages -------------------------------------------------------------------

def chain(items) -> tuple[int, bytes]:
    """(type of the first payload, the payloads) from (type, body) pairs, each with a generic header."""
    out = b""
    for n, (_, body) in enumerate(items):
        nxt = items[n + 1][0] if n + 1 < len(items) else 0
        out += struct.pack("!BBH", nxt, 0, 4 + len(body)) + body
    return (items[0][0] if items else 0), out


def isakmp(exch: int, items, rspi: bytes = CKY_R, flags: int = 0, version: int = 0x10, msgid: int = 0) -> bytes:
    first, body = chain(items)
    return CKY_I + rspi + struct.pack("!BBBBII", first, version, exch, flags, msgid, 28 + len(body)) + body


def sa_v1() -> bytes:
    """A phase-1 SA payload body: one KEY_IKE transform, AES-128, SHA-1 (hash 2), PSK, group 14."""
    attrs = b"".join(struct.pack("!HH", 0x8000 | t, v) for t, v in ((1, 7), (14, 128), (2, 2), (3, 1), (4, 14)))
    transform = struct.pack("!BBHBBH", 0, 0, 8 + len(attrs), 1, 1, 0) + attrs
    proposal = struct.pack("!BBHBBBB", 0, 0, 8 + len(transform), 1, 1, 0, 1) + transform
    return struct.pack("!II", 1, 1) + proposal


def vid(name: str) -> tuple[int, bytes]:
    return VID, hashlib.md5(name.encode()).digest()


def natd(ip: str, port: int, rspi: bytes = CKY_R) -> bytes:
    """HASH(CKY-I | CKY-R | IP | port) with SHA-1 (RFC 3947 3.2; the drafts hash alike)."""
    return hashlib.sha1(CKY_I + rspi + ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")).digest()


def udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    """An IPv4/UDP datagram (checksums 0); on port 4500 the IKE message goes after the non-ESP marker."""
    if 4500 in (sport, dport):
        data = bytes(4) + data
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 0, 0, 64, 17, 0,
                       ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed) + seg


def feed(datagrams) -> Analyzer:
    an = Analyzer()
    for n, d in enumerate(datagrams, 1):
        an.packet(n, 1000.0 + n * 0.1, pk.decode_ip(d), [])
    an.finish(len(datagrams))
    return an


def main_mode(vids_i, vids_r, natd_type: int = NATD, i_port: int = 500, mm5_port: int = 500,
              seen_from: str = NAT, extra=()) -> list[bytes]:
    """MM1-MM4 between I and R, and MM5: R sees I as `seen_from`:`i_port` (a NAT when it is not I), I's own
    NAT-D hashes its own address; NAT-D goes in payloads of `natd_type`.  `extra` adds payloads to MM3."""
    mm1 = isakmp(MM, [(1, sa_v1()), *map(vid, vids_i)], rspi=ZERO)
    mm2 = isakmp(MM, [(1, sa_v1()), *map(vid, vids_r)])
    mm3 = isakmp(MM, [(KE, b"k" * 256), (NONCE, b"n" * 16), (natd_type, natd(R, 500)),
                      (natd_type, natd(I, i_port)), *extra])
    mm4 = isakmp(MM, [(KE, b"k" * 256), (NONCE, b"n" * 16), (natd_type, natd(seen_from, i_port)),
                      (natd_type, natd(R, 500))])
    mm5 = isakmp(MM, [(5, b"\xee" * 60)], flags=1)
    return [udp(I, R, i_port, 500, mm1), udp(R, I, 500, i_port, mm2), udp(I, R, i_port, 500, mm3),
            udp(R, I, 500, i_port, mm4), udp(I, R, mm5_port if mm5_port != 500 else i_port, mm5_port, mm5)]


def nat_finding(an: Analyzer) -> str | None:
    found = [f.summary for f in find(an, []) if f.code == "nat-t"]
    assert len(found) <= 1
    return found[0] if found else None


def tshark_fields(path: Path, *fields: str, where: str = "isakmp") -> list[list[str]]:
    out = subprocess.run([need_tshark(), "-r", str(path), "-Y", where, "-T", "fields", "-E", "separator=|",
                          *[a for f in fields for a in ("-e", f)]], capture_output=True, text=True, check=True)
    return [line.split("|") for line in out.stdout.splitlines()]


def walk(message: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of every payload of an unencrypted ISAKMP message, by the generic headers alone."""
    out, nxt, off = [], message[16], 28
    while nxt:
        t, (nxt, length) = nxt, (message[off], struct.unpack_from("!H", message, off + 2)[0])
        out.append((t, message[off + 4:off + length]))
        off += length
    return out


def v1_hash(ispi: bytes, rspi: bytes, ip: str, port: int) -> bytes:
    return hashlib.sha1(ispi + rspi + ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")).digest()


# -- the draft's payload numbers ---------------------------------------------------------------

@pytest.mark.parametrize("vids_i, vids_r, natd_type, read", [
    (["RFC 3947"], ["RFC 3947"], NATD, True),
    (["draft-ietf-ipsec-nat-t-ike-02\n"], ["draft-ietf-ipsec-nat-t-ike-02\n"], 130, True),
    (["draft-ietf-ipsec-nat-t-ike-05", "RFC 3947"], ["draft-ietf-ipsec-nat-t-ike-05"], SAK, True),
    (["draft-ietf-ipsec-nat-t-ike"], ["draft-ietf-ipsec-nat-t-ike"], SAK, True),  # Apple's racoon
    # 15 is GDOI's SAK (RFC 6407) unless both peers chose a draft that numbered NAT-D 15
    (["draft-ietf-ipsec-nat-t-ike-05", "RFC 3947"], ["RFC 3947"], SAK, False),
    (["draft-ietf-ipsec-nat-t-ike-05"], ["draft-ietf-ipsec-nat-t-ike-03"], SAK, False),
    ([], [], SAK, False),
    (["draft-ietf-ipsec-nat-t-ike-05"], [], SAK, False),
])
def test_natd_payload_type_follows_the_chosen_vid(vids_i, vids_r, natd_type, read):
    """ipsec-tools racoon (natt_fill_options): drafts 00..03 number NAT-D 130, 04..08 and Apple's unnumbered draft
    VID 15, RFC 3947 20; the initiator here is behind a NAT (R sees it as NAT:500)."""
    an = feed(main_mode(vids_i, vids_r, natd_type))
    (sa,) = an.sas.values()
    mm3 = next(m for m in sa.messages if m.label == "MM3")
    if read:
        assert [p.name for p in mm3.msg.payloads][2:4] == ["NAT-D", "NAT-D"]
        assert [m.label for m in sa.natd] == ["MM3", "MM4"]
        assert sa.natd_translated() == {"I": True, "R": False}
    else:
        assert [p.name for p in mm3.msg.payloads][2:4] == ["SAK", "SAK"] and sa.natd == []
        assert sa.behind_nat() == {"I": None, "R": None}


def test_draft_04_08_nat_oa_is_payload_16():
    """NAT-OA is 16 under drafts 04..08 (NATOA_BADDRAFT); under Apple's unnumbered draft VID racoon sends none,
    so 16 stays GDOI's SAT."""
    oa = (SAT, struct.pack("!BBH", 1, 0, 0) + ipaddress.ip_address("10.9.8.7").packed)
    for vids, names in ((["draft-ietf-ipsec-nat-t-ike-08"], {"I": {"10.9.8.7"}}),
                        (["draft-ietf-ipsec-nat-t-ike"], {})):
        an = feed(main_mode(vids, vids, SAK, extra=[oa]))
        (sa,) = an.sas.values()
        assert sa.nat_oa == names


def test_draft_07_natd_in_a_real_capture():
    """tcpdump's ISAKMP_sa_setup.pcap (Cisco IOS): both peers send the draft-07 NAT-T VID (tshark: Vendor ID
    draft-ietf-ipsec-nat-t-ike-07 in frames 1 and 2) and MM3/MM4 carry two payloads of type 15, which tshark
    reads as GDOI's SA KEK (and calls malformed) and tcpdump as "pay15".  They are NAT-D: recomputed here from
    tshark's bytes, the first is each receiver's address and port, the second the sender's, so no NAT."""
    path = need_public() / "tcpdump/tests/ISAKMP_sa_setup.pcap"
    rows = tshark_fields(path, "frame.number", "ip.src", "ip.dst", "udp.payload", where="frame.number == 3 || frame.number == 4")
    for _, src, dst, hexed in rows:
        message = bytes.fromhex(hexed)
        bodies = [b for t, b in walk(message) if t == SAK]
        assert bodies == [v1_hash(message[:8], message[8:16], dst, 500), v1_hash(message[:8], message[8:16], src, 500)]
    an = read_captures([str(path)]).model
    (sa,) = an.sas.values()
    assert sa.natt_method() is not None and sa.natt_method().natd == SAK
    assert [split_ref(m.ref)[1] for m in sa.natd] == [3, 4]
    assert sa.behind_nat() == {"I": False, "R": False}
    assert nat_finding(an) is None  # no NAT and no float: nothing to say


# -- a NAT-D mismatch without any float --------------------------------------------------------------

def test_mismatch_without_float_is_rewritten_addresses():
    """RFC 3947 NAT-D finds the initiator translated, yet MM5 stays on UDP 500: no NAT the peers saw."""
    an = feed(main_mode(["RFC 3947"], ["RFC 3947"]))
    (sa,) = an.sas.values()
    assert sa.rewritten().label == "MM5"
    assert sa.behind_nat() == {"I": None, "R": None} and sa.natd_translated() == {"I": True, "R": False}
    text = nat_finding(an)
    assert "rewritten on the path" in text and "anonymised" in text and "MM5 (frame 5) stayed on UDP 500" in text
    assert "behind NAT" not in text and "NATs on both sides" not in text
    assert "no NAT and no forceencaps is concluded" in text


def test_mismatch_with_float_is_a_nat():
    an = feed(main_mode(["RFC 3947"], ["RFC 3947"], mm5_port=4500))
    (sa,) = an.sas.values()
    assert sa.rewritten() is None and sa.behind_nat() == {"I": True, "R": False}
    assert nat_finding(an) == "initiator behind NAT (NAT-D); floated to UDP 4500 at MM5"


def test_mismatch_before_the_float_point_is_still_a_nat():
    """Until a message that NAT-T would send on UDP 4500 is seen, the mismatch is read as a NAT."""
    an = feed(main_mode(["RFC 3947"], ["RFC 3947"])[:4])
    (sa,) = an.sas.values()
    assert sa.rewritten() is None and sa.behind_nat() == {"I": True, "R": False}
    assert nat_finding(an) == "initiator behind NAT (NAT-D)"


def test_drafts_00_01_never_float():
    """Drafts 00/01 stay on UDP 500 (racoon: "No port floating for those drafts"; Openswan
    NAT_T_WITH_PORT_FLOATING leaves out IETF_00_01): MM5 on 500 is no rewrite there."""
    an = feed(main_mode(["draft-ietf-ipsec-nat-t-ike-01"], ["draft-ietf-ipsec-nat-t-ike-01"], 130))
    (sa,) = an.sas.values()
    assert sa.rewritten() is None and sa.behind_nat() == {"I": True, "R": False}
    assert nat_finding(an) == ("initiator behind NAT (NAT-D); NAT-T of draft-ietf-ipsec-nat-t-ike-00/01 stays on "
                               "UDP 500 (no float)")


def test_ikev2four_is_rewritten_not_nat():
    """tcpdump's ikev2four.pcap (a libreswan test): tshark shows every frame on UDP 500 to 500, and neither
    NAT_DETECTION notify of IKE_SA_INIT (16388 source, 16389 destination) matches SHA-1(SPIi | SPIr | IP | port)
    of the captured addresses: the addresses were rewritten after the peers hashed them, no NAT."""
    path = need_public() / "tcpdump/tests/ikev2four.pcap"
    rows = tshark_fields(path, "frame.number", "ip.src", "ip.dst", "udp.srcport", "udp.dstport",
                         "isakmp.exchangetype", "isakmp.ispi", "isakmp.rspi", "isakmp.notify.msgtype",
                         "isakmp.notify.data")
    assert {(r[3], r[4]) for r in rows} == {("500", "500")}
    checked = 0
    for _, src, dst, _, _, _, ispi, rspi, types, datas in rows:
        for t, data in zip(types.split(","), datas.split(",")):
            if t in ("16388", "16389") and rspi != "0" * 16:
                ip = src if t == "16388" else dst
                h = hashlib.sha1(bytes.fromhex(ispi + rspi) + ipaddress.ip_address(ip).packed + b"\x01\xf4").digest()
                assert h != bytes.fromhex(data)
                checked += 1
    assert checked == 2  # frame 4, the answer (the requests' own hashes use SPIr 0)
    an = read_captures([str(path)]).model
    sa = next(s for s in an.sas.values() if s.ispi.hex() == "a88875a8198992a6")
    assert sa.rewritten().label == "IKE_AUTH" and sa.behind_nat() == {"I": None, "R": None}
    text = nat_finding(an)
    assert text.startswith("the NAT-D hashes do not match the initiator's and the responder's addresses and ports")
    assert "IKE_AUTH (frame 5) stayed on UDP 500" in text and "NATs on both sides" not in text


def test_an_error_info_in_place_of_am3_is_no_rewrite():
    """strongSwan's aggressive-mode PSK mismatch (lab): AM2's NAT-D shows the responder translated (recomputed
    here from tshark's bytes), and the initiator answers with an encrypted INFO on UDP 500 instead of AM3 on
    4500: a refusal is sent where the SA stands, it is no message NAT-T moves."""
    path = PCAPS / "lab/ikev1-aggr-psk-mismatch.inside.pcap"
    rows = tshark_fields(path, "frame.number", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "isakmp.exchangetype",
                         "isakmp.flags", "udp.payload")
    am2 = bytes.fromhex(rows[1][7])
    hashes = [b for t, b in walk(am2) if t == NATD]
    src, dst, sport, dport = rows[1][1], rows[1][2], int(rows[1][3]), int(rows[1][4])
    md = hashlib.sha256 if len(hashes[0]) == 32 else hashlib.sha1
    about = lambda ip, port: md(am2[:16] + ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")).digest()
    assert about(src, sport) not in hashes[1:] and about(dst, dport) == hashes[0]  # the responder is translated
    assert (rows[2][3], rows[2][4], rows[2][5], int(rows[2][6], 16) & 1) == ("500", "500", "5", 1)
    an = read_captures([str(path)]).model
    (sa,) = an.sas.values()
    assert sa.rewritten() is None and sa.behind_nat() == {"I": False, "R": True}
    assert nat_finding(an) == "responder behind NAT (NAT-D)"


# -- started on 4500, NAT verified or unknown ----------------------------------------------------------

def ikev2(exch: int, items, response: bool, rspi: bytes = CKY_R, msgid: int = 0) -> bytes:
    return isakmp(exch, items, rspi=rspi, flags=0x20 if response else 0x08, version=0x20, msgid=msgid)


def notify(ntype: int, data: bytes) -> tuple[int, bytes]:
    return 41, struct.pack("!BBH", 0, 0, ntype) + data


def ikev2_exchange(port: int, natd_ok: bool | None, auth_port: int, answer_natd: bool = True) -> list[bytes]:
    """IKE_SA_INIT from I:`port` to R:`port` (NAT-D matching when `natd_ok`, the initiator's source hashing
    another address when False, none when None; none in the answer unless `answer_natd`), then IKE_AUTH on
    `auth_port`."""
    h = lambda ip, p, rspi: hashlib.sha1(CKY_I + rspi + ipaddress.ip_address(ip).packed + p.to_bytes(2, "big")).digest()
    nd = lambda rspi: [] if natd_ok is None else [notify(16388, h(I if natd_ok else NAT, port, rspi)),
                                                  notify(16389, h(R, port, rspi))]
    req = ikev2(IKE_SA_INIT, [(33, b""), *nd(ZERO)], False, rspi=ZERO)
    resp = ikev2(IKE_SA_INIT, [(33, b""), notify(16388, h(R, port, CKY_R)), notify(16389, h(I, port, CKY_R))]
                 if natd_ok is not None and answer_natd else [(33, b"")], True)
    auth = ikev2(IKE_AUTH, [(46, b"\xee" * 80)], False, msgid=1)
    auth_r = ikev2(IKE_AUTH, [(46, b"\xee" * 80)], True, msgid=1)
    return [udp(I, R, port, port, req), udp(R, I, port, port, resp), udp(I, R, auth_port, auth_port, auth),
            udp(R, I, auth_port, auth_port, auth_r)]


@pytest.mark.parametrize("port, natd_ok, auth_port, text", [
    (4500, False, 4500, "initiator behind NAT (NAT-D); started on UDP 4500 (no float to see)"),
    (500, True, 4500, "no NAT (NAT-D verified); floated to UDP 4500 at IKE_AUTH"),
    (500, None, 4500, "NAT unknown (no NAT-D seen); floated to UDP 4500 at IKE_AUTH"),
    (500, False, 4500, "initiator behind NAT (NAT-D); floated to UDP 4500 at IKE_AUTH"),
    (4500, True, 4500, None),
    (500, True, 500, None),
])
def test_started_floated_verified_unknown(port, natd_ok, auth_port, text):
    an = feed(ikev2_exchange(port, natd_ok, auth_port))
    (sa,) = an.sas.values()
    assert sa.started_natt == (port == 4500) and sa.rewritten() is None
    assert nat_finding(an) == text


def test_mismatch_without_float_ikev2():
    """IKEv2: both sides' NAT_DETECTION notifies, the initiator's source hashing another address, IKE_AUTH on
    UDP 500: rewritten.  Without NAT-D in the answer the initiator had nothing to detect a NAT with, so staying
    on 500 proves nothing: still read as a NAT."""
    an = feed(ikev2_exchange(500, False, 500))
    (sa,) = an.sas.values()
    assert sa.rewritten().label == "IKE_AUTH" and sa.behind_nat() == {"I": None, "R": None}
    assert "IKE_AUTH (frame 3) stayed on UDP 500" in nat_finding(an)
    an = feed(ikev2_exchange(500, False, 500, answer_natd=False))
    (sa,) = an.sas.values()
    assert sa.rewritten() is None and sa.behind_nat() == {"I": True, "R": False}
    assert nat_finding(an) == "initiator behind NAT (NAT-D)"


def test_started_on_4500_in_a_lab_rekey():
    """strongSwan's IKEv1 rekey (lab): the new phase 1 starts on UDP 4500 (tshark: its first frame is 4500 to 4500)
    with NAT-D in it: NAT-D judged, no float, no rewrite (the peers were already on the NAT-T port)."""
    path = PCAPS / "lab/ikev1-rekey-delete.inside.pcap"
    rows = tshark_fields(path, "frame.number", "udp.srcport", "udp.dstport", "isakmp.ispi", "isakmp.exchangetype")
    firsts = {}
    for frame, sport, dport, ispi, _ in rows:
        firsts.setdefault(ispi, (int(frame), sport, dport))
    (second, (_, sport, dport)), = [(k, v) for k, v in firsts.items() if v[1] != "500"]
    assert (sport, dport) == ("4500", "4500")
    an = read_captures([str(path)]).model
    sa = next(s for s in an.sas.values() if s.ispi.hex() == second)
    assert sa.started_natt and sa.float_at is None and sa.natd and sa.rewritten() is None
    text = next(f.summary for f in find(an, []) if f.code == "nat-t" and f.sa is sa)
    assert text.endswith("; started on UDP 4500 (no float to see)")
