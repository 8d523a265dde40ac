"""The core on packets built with scapy: labels, retransmissions, retries, NAT-D,
fragments, ICMP, keepalives, ESP accounting, findings."""

import hashlib
import struct
from pathlib import Path

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_KE, ISAKMP_payload_Nonce, ISAKMP_payload_SA, ISAKMP_payload_VendorID
from scapy.contrib.ikev2 import IKEv2, IKEv2_Notify, IKEv2_SA, IKEv2_Encrypted

from ikeflow.decode import packet as pk
from ikeflow.model.analysis import Analyzer
from ikeflow.model.esp import EspTable, esp_key
from ikeflow.diagnose.findings import find, verdicts

I, R, NAT = "192.0.2.10", "203.0.113.20", "198.51.100.7"
CKY_I, CKY_R = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")


def feed(packets, start=1000.0, step=0.1):
    """Run IP packets (scapy) through the core; returns the analyzer."""
    an = Analyzer()
    for n, p in enumerate(packets, 1):
        an.packet(n, start + n * step, pk.decode_ip(bytes(p)), [])
    an.finish(len(packets))
    return an


def v1(src, dst, sport, dport, rcookie, exch, payload, flags=0, msgid=0):
    isakmp = ISAKMP(init_cookie=CKY_I, resp_cookie=rcookie, exch_type=exch, flags=flags, id=msgid) / payload
    udp = UDP(sport=sport, dport=dport)
    data = bytes(isakmp)
    if 4500 in (sport, dport):
        data = b"\0\0\0\0" + data
    return IP(src=src, dst=dst) / udp / data


def natd_payload(next_payload, digest):
    return struct.pack(">BBH", next_payload, 0, 4 + len(digest)) + digest


def mm_with_natd(sender_ip, sender_port, receiver_ip, receiver_port, next_payload=0):
    """KE + NONCE + NAT-D(receiver) + NAT-D(sender) built from the addresses the sender believes in."""
    h = lambda ip, port: hashlib.sha1(CKY_I + CKY_R + bytes(map(int, ip.split("."))) + port.to_bytes(2, "big")).digest()
    ke = bytes(ISAKMP_payload_KE(next_payload=10, ke=b"k" * 128))
    nonce = bytes(ISAKMP_payload_Nonce(next_payload=20, nonce=b"n" * 16))
    return ke + nonce + natd_payload(20, h(receiver_ip, receiver_port)) + natd_payload(0, h(sender_ip, sender_port))


def mm3(src, dst, sport, dport, sender_ip, sender_port, receiver_ip, receiver_port):
    body = mm_with_natd(sender_ip, sender_port, receiver_ip, receiver_port)
    head = ISAKMP(init_cookie=CKY_I, resp_cookie=CKY_R, exch_type=2, next_payload=4, length=28 + len(body))
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (bytes(head) + body)


def enc(n):
    return b"\xaa" * n


def test_main_mode_with_nat_float_and_quick_mode():
    # the initiator sits behind a NAT: it believes it is I:500, the capture (outside) sees NAT:1024
    pk_ = [
        v1(NAT, R, 1024, 500, b"\0" * 8, 2, ISAKMP_payload_SA(prop=b"")),
        v1(R, NAT, 500, 1024, CKY_R, 2, ISAKMP_payload_SA(prop=b"")),
        mm3(NAT, R, 1024, 500, I, 500, R, 500),
        mm3(R, NAT, 500, 1024, R, 500, NAT, 1024),
        v1(NAT, R, 1025, 4500, CKY_R, 2, enc(64), flags=1),
        v1(NAT, R, 1025, 4500, CKY_R, 2, enc(64), flags=1),  # retransmitted MM5
        v1(R, NAT, 4500, 1025, CKY_R, 2, enc(48), flags=1),
        v1(NAT, R, 1025, 4500, CKY_R, 32, enc(200), flags=1, msgid=7),
        v1(R, NAT, 4500, 1025, CKY_R, 32, enc(180), flags=1, msgid=7),
        v1(NAT, R, 1025, 4500, CKY_R, 32, enc(30), flags=1, msgid=7),
    ]
    an = feed(pk_)
    sa = an.sas[(1, CKY_I)]
    labels = [m.label for m in sa.messages]
    assert labels == ["MM1", "MM2", "MM3", "MM4", "MM5", "MM5", "MM6", "QM1", "QM2", "QM3"]
    assert [m.retransmission for m in sa.messages].count(True) == 1 and sa.messages[5].retransmission
    assert sa.float_at == "MM5"
    assert sa.behind_nat() == {"I": True, "R": False}
    assert sa.ike_sa_up() and sa.state() == "phase 2 up (1 quick mode)"
    found = find(an, [])
    assert not [f for f in found if f.severity == "error"]


def test_main_mode_stall_at_mm5_is_an_error():
    pk_ = [
        v1(I, R, 500, 500, b"\0" * 8, 2, ISAKMP_payload_SA(prop=b"")),
        v1(R, I, 500, 500, CKY_R, 2, ISAKMP_payload_SA(prop=b"")),
        v1(I, R, 500, 500, CKY_R, 2, ISAKMP_payload_KE(ke=b"k" * 128)),
        v1(R, I, 500, 500, CKY_R, 2, ISAKMP_payload_KE(ke=b"k" * 128)),
    ] + [v1(I, R, 4500, 4500, CKY_R, 2, enc(64), flags=1)] * 4
    an = feed(pk_, step=2.0)
    found = find(an, [])
    stall = [f for f in found if f.code == "stall"]
    assert len(stall) == 1 and stall[0].at == "MM5" and stall[0].severity == "error"
    assert stall[0].frames == [5, 6, 7, 8]
    assert "MM5 sent 4 times" in stall[0].summary and "responder" in stall[0].summary
    assert list(verdicts(an, found).values())[0].startswith("phase 1 fails at MM5")


def v2(src, dst, ispi, rspi, exch, payload, flags, msgid=0, sport=500, dport=500):
    data = bytes(IKEv2(init_SPI=ispi, resp_SPI=rspi, exch_type=exch, flags=flags, id=msgid) / payload)
    if 4500 in (sport, dport):
        data = b"\0\0\0\0" + data
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / data


def test_ikev2_invalid_ke_retry_is_not_a_failure():
    spi_i, spi_r = b"\x33" * 8, b"\x44" * 8
    pk_ = [
        v2(I, R, spi_i, b"\0" * 8, 34, IKEv2_SA(), 0x08),
        v2(R, I, spi_i, b"\0" * 8, 34, IKEv2_Notify(type=17, notify=b"\x00\x0e"), 0x20),
        v2(I, R, spi_i, b"\0" * 8, 34, IKEv2_SA() / IKEv2_Notify(type=16389, notify=b"x" * 20), 0x08),
        v2(R, I, spi_i, spi_r, 34, IKEv2_SA(), 0x20),
        v2(I, R, spi_i, spi_r, 35, IKEv2_Encrypted(load=b"e" * 100), 0x08, msgid=1),
        v2(R, I, spi_i, spi_r, 35, IKEv2_Encrypted(load=b"e" * 200), 0x20, msgid=1),
    ]
    an = feed(pk_)
    sa = an.sas[(2, spi_i)]
    assert [m.label for m in sa.messages] == ["IKE_SA_INIT"] * 4 + ["IKE_AUTH"] * 2
    assert sa.messages[2].retry == "INVALID_KE_PAYLOAD"
    assert sa.ike_sa_up()
    assert not [f for f in find(an, []) if f.severity == "error"]


def test_ikev2_unanswered_ike_sa_init():
    spi_i = b"\x55" * 8
    an = feed([v2(I, R, spi_i, b"\0" * 8, 34, IKEv2_SA(), 0x08)] * 3, step=1.0)
    (stall,) = [f for f in find(an, []) if f.code == "stall"]
    assert stall.at == "IKE_SA_INIT" and stall.severity == "error" and len(stall.frames) == 3


def test_natd_ikev2_responder_behind_nat():
    """IKEv2 NAT-D: SHA-1(SPIi | SPIr | IP | port); the responder's real address is a NATed one."""
    spi_i = b"\x66" * 8
    h = lambda ip, port: hashlib.sha1(spi_i + b"\0" * 8 + bytes(map(int, ip.split("."))) + port.to_bytes(2, "big")).digest()
    # the initiator sends to the responder's public address R; the capture is on the responder's inside (10.x is not used:
    # the inside address is NAT) so the destination as captured differs from the initiator's claim
    req = v2(I, NAT, spi_i, b"\0" * 8, 34,
             IKEv2_SA() / IKEv2_Notify(type=16388, notify=h(I, 500)) / IKEv2_Notify(type=16389, notify=h(R, 500)), 0x08)
    an = feed([req])
    sa = an.sas[(2, spi_i)]
    assert sa.behind_nat() == {"I": False, "R": True}


def test_ip_fragments_reassembled_and_incomplete_reported():
    big = v1(I, R, 500, 500, b"\0" * 8, 2, ISAKMP_payload_VendorID(VendorID=b"p" * 3000))
    frags = [bytes(f) for f in __import__("scapy.layers.inet", fromlist=["fragment"]).fragment(big, fragsize=1400)]
    assert len(frags) == 3
    an = Analyzer()
    for n, f in enumerate(frags, 1):
        an.packet(n, 1.0 + n, pk.decode_ip(f), [])
    # a second datagram that loses its last fragment
    big2 = v1(I, R, 500, 500, b"\0" * 8, 2, ISAKMP_payload_VendorID(VendorID=b"q" * 3000))
    big2[IP].id = 999
    lost = [bytes(f) for f in __import__("scapy.layers.inet", fromlist=["fragment"]).fragment(big2, fragsize=1400)][:2]
    for n, f in enumerate(lost, 4):
        an.packet(n, 1.0 + n, pk.decode_ip(f), [])
    an.finish(5)
    (m,) = an.sas[(1, CKY_I)].messages
    assert m.fragments == [1, 2, 3] and m.label == "MM1"
    assert an.stats.ike == 1 and an.stats.fragments == 4
    assert len(an.reassembler.incomplete) == 1 and an.reassembler.incomplete[0]["frames"] == [4, 5]
    codes = [f.code for f in find(an, [])]
    assert "fragments-incomplete" in codes


def test_icmp_port_unreachable_is_tied_to_the_ike_sa():
    mm1 = v1(I, R, 500, 500, b"\0" * 8, 2, ISAKMP_payload_SA(prop=b""))
    icmp = IP(src=R, dst=I) / ICMP(type=3, code=3) / bytes(mm1)[:28 + 28]
    an = feed([mm1, icmp])
    assert an.stats.icmp == 1
    (pair,) = an.pairs.values()
    assert pair.icmp[0].text == "port unreachable" and pair.icmp[0].sa == (1, CKY_I)


def test_keepalives_and_stats_add_up():
    ka = IP(src=NAT, dst=R) / UDP(sport=4500, dport=4500) / b"\xff"
    other = IP(src=NAT, dst=R) / UDP(sport=53, dport=53) / b"dns"
    short = IP(src=NAT, dst=R) / UDP(sport=4500, dport=4500) / b"\x01\x02"
    an = feed([ka, ka, other, short])
    s = an.stats
    assert (s.keepalives, s.skipped, s.malformed) == (2, 1, 1)
    assert s.packets == s.ike + s.esp + s.ah + s.keepalives + s.icmp + s.fragments + s.malformed + s.skipped


def test_esp_gaps_duplicates_and_reordering():
    t = EspTable()
    key = esp_key(b"\x02" * 4, 9)
    for n, seq in enumerate([1, 2, 3, 5, 6, 6, 4, 10, 11, 3, 12], 1):
        t.add(key, "esp", 0, 0, b"\x01" * 4, b"\x02" * 4, seq, 100, float(n), n)
    f = t.flows[key]
    assert f.packets == 11 and f.bytes == 1100
    assert f.duplicates == 2  # the second 6 and the second 3
    assert f.reordered == 1  # 4 arrived after 5 and 6
    assert f.lost == 3  # 7, 8, 9 never came
    assert (f.seq_min, f.seq_max, f.first_frame, f.last_frame) == (1, 12, 1, 11)


def test_ikev1_fragments_share_the_label_of_their_message():
    """Cisco-style IKEv1 fragmentation (payload 132) in a real remote-access capture.  tshark
    (-e isakmp.frag.packetid -e isakmp.frag.seq): responder packet id 1 in frames 22-23, initiator
    id 1 in frames 24-28, responder id 2 in frames 29-31: MM4, MM5 and MM6 sent in fragments."""
    from conftest import need_public
    from ikeflow.pipeline import read_captures

    path = need_public() / "wireshark-wiki/uploads/__moin_import__/attachments/SampleCaptures/test1.pcap"
    an = read_captures([str(path)]).model
    (sa,) = an.sas.values()
    labels = {m.ref: m.label for m in sa.messages}
    assert [labels[f] for f in range(19, 32)] == ["MM1", "MM2", "MM3"] + ["MM4"] * 2 + ["MM5"] * 5 + ["MM6"] * 3
    assert sa.ike_sa_up() and sa.float_at == "MM5"


def test_started_on_the_natt_port_is_not_a_float():
    """The wiki's NAT-T road warrior starts IKE_SA_INIT on UDP 4500 (tshark: udp.srcport/dstport 4500 and a
    non-ESP marker from frame 1): no float happened, and no NAT-D was sent, so NAT is unknown, not "none"."""
    from conftest import need_public
    from ikeflow.pipeline import read_captures

    an = read_captures([str(need_public() / "scapy/test/pcaps/ikev2_nat_t.pcapng")]).model
    assert len(an.sas) == 3
    for sa in an.sas.values():
        assert sa.started_natt and sa.float_at is None and not sa.natd
    lab = read_captures([str(Path(__file__).resolve().parents[1] / "pcaps/lab/ikev2-nat-ok.inside.pcap")]).model
    (sa,) = lab.sas.values()
    assert sa.float_at == "IKE_AUTH" and not sa.started_natt and sa.natd


def test_ike_on_natt_port_without_marker_is_not_esp():
    """IKE on UDP 4500 must carry the non-ESP marker (RFC 3948 2.2); without it the first 8 bytes (the IKE SPI)
    would read as an ESP SPI and sequence number: it is reported as malformed, not counted as ESP."""
    ike = bytes(ISAKMP(init_cookie=CKY_I, resp_cookie=CKY_R, exch_type=2) / ISAKMP_payload_KE(ke=b"k" * 64))
    bare = pk.decode_ip(bytes(IP(src=I, dst=R) / UDP(sport=4500, dport=4500) / ike))
    assert bare.kind == pk.MALFORMED and "without the non-ESP marker" in bare.reason
    marked = pk.decode_ip(bytes(IP(src=I, dst=R) / UDP(sport=4500, dport=4500) / (b"\0" * 4 + ike)))
    assert marked.kind == pk.IKE and marked.natt
    esp = pk.decode_ip(bytes(IP(src=I, dst=R) / UDP(sport=4500, dport=4500) / (b"\x00\x00\x10\x01" + b"e" * 60)))
    assert esp.kind == pk.ESP


def test_ike_without_marker_is_not_esp_on_the_readers_fast_path(tmp_path):
    """The same through the capture reader, whose inline ESP path sees UDP 4500 first (Ethernet, pcap and
    pcapng): the frame goes to the general decoder and is reported, not counted as ESP."""
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapNgWriter, wrpcap

    from ikeflow.pipeline import read_captures

    ike = bytes(ISAKMP(init_cookie=CKY_I, resp_cookie=CKY_R, exch_type=2) / ISAKMP_payload_KE(ke=b"k" * 64))
    frames = [Ether() / IP(src=I, dst=R) / UDP(sport=4500, dport=4500) / ike for _ in range(2)]
    frames.append(Ether() / IP(src=I, dst=R) / UDP(sport=4500, dport=4500) / (b"\x00\x00\x10\x01" + b"e" * 60))
    for n, f in enumerate(frames):
        f.time = 1000 + n  # a second apart: a re-sent message, not a capture copy
    wrpcap(str(tmp_path / "a.pcap"), frames)
    with PcapNgWriter(str(tmp_path / "a.pcapng")) as w:
        for f in frames:
            w.write(f)
    for name in ("a.pcap", "a.pcapng"):
        an = read_captures([str(tmp_path / name)]).model
        assert [why for _, why in an.malformed] == ["IKE message on UDP 4500 without the non-ESP marker (RFC 3948 "
                                                   "2.2): not ESP"] * 2
        assert [f"{f.spi:08x}" for f in an.esp.flows.values()] == ["00001001"]
