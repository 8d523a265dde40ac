"""IP fragments and ICMP errors from hostile input: reassembly as Linux does it
(overlaps, ping of death, nesting), bounded state (`ikeflow.limits`), and the
crafted captures in ../shared/repro.

Floods are built as pcap bytes with struct; run this file as a script to write
one for measuring at full size:
`python tests/test_fragments.py fragments 1000000 /tmp/frags.pcap` (or `icmp`).
"""

from __future__ import annotations

import struct
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment6
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_VendorID

from ikeflow.decode import packet as pk
from ikeflow.model.analysis import Analyzer
from ikeflow.pipeline import Options, Pipeline
from ikeflow.diagnose.findings import find
from ikeflow.limits import Limits
from ikeflow.sources.capture import split_ref
import test_natt as natt

REPRO = Path(__file__).resolve().parents[1].parent / "shared" / "repro"
I, R = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])
CKY = bytes.fromhex("1111111111111111")


# -- floods, written with struct ------------------------------------------------------

def ipv4(src: bytes, dst: bytes, proto: int, body: bytes, ident: int = 0, frag: int = 0) -> bytes:
    """An IPv4 datagram (checksum 0: ikeflow does not check it)."""
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, frag, 64, proto, 0, src, dst) + body


def pcap(datagrams, start: float = 1_700_000_000.0, step: float = 0.0001) -> bytes:
    """A pcap of raw IP frames `step` seconds apart."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for n, d in enumerate(datagrams):
        t = start + n * step
        out.append(struct.pack("<IIII", int(t), int(t % 1 * 1e6), len(d), len(d)) + d)
    return b"".join(out)


def fragment_flood(n: int) -> bytes:
    """`n` middle fragments (offset 1480, more to come) I -> R, each of its own datagram."""
    return pcap(ipv4(I, R, 17, b"\xab" * 64, k & 0xFFFF, 0x2000 | 185) for k in range(n))


def icmp_flood(n: int) -> bytes:
    """`n` ICMP port unreachables from R, each quoting I's IKE_SA_INIT (IP, UDP, IKE header)."""
    ike = CKY + bytes(8) + bytes([33, 0x20, 34, 0x08]) + bytes(4) + struct.pack(">I", 300)
    quote = ipv4(I, R, 17, struct.pack(">HHHH", 500, 500, 308, 0) + ike)[:56]
    # each error with its own IP ID, as a router sends them: byte-identical ones 100 us apart would be capture copies
    return pcap(ipv4(R, I, 1, struct.pack(">BBHI", 3, 3, 0, 0) + quote, ident=k & 0xFFFF) for k in range(n))


# -- helpers ----------------------------------------------------------------------------

def read(path_or_bytes, limits: Limits = Limits()) -> Analyzer:
    """Run a capture (a path, or pcap bytes) through the reader and the core."""
    path = path_or_bytes
    if isinstance(path_or_bytes, bytes):
        path = Path(f"/tmp/ikeflow-test-fragments-{id(path_or_bytes)}.pcap")
        path.write_bytes(path_or_bytes)
    pipeline = Pipeline(Options(limits=limits))
    try:
        pipeline.read([str(path)])
    finally:
        if isinstance(path_or_bytes, bytes):
            path.unlink()
    an = pipeline.finish()
    assert_adds_up(an)
    return an


def feed(datagrams, limits: Limits = Limits(), step: float = 0.1) -> Analyzer:
    an = Analyzer(limits=limits)
    for n, d in enumerate(datagrams, 1):
        an.packet(n, 1000.0 + n * step, pk.decode_ip(bytes(d)), [])
    an.finish(len(datagrams))
    assert_adds_up(an)
    return an


def assert_adds_up(an: Analyzer) -> None:
    s = an.stats
    assert s.packets == s.ike + s.esp + s.ah + s.keepalives + s.icmp + s.fragments + s.malformed + s.skipped


def repro(name: str) -> Path:
    path = REPRO / name
    if not path.is_file():
        pytest.skip(f"crafted capture not found at {path}")
    return path


def mm1(vid: bytes = b"p" * 3000, ident: int = 1):
    return IP(src="192.0.2.1", dst="198.51.100.1", id=ident) / UDP(sport=500, dport=500) / ISAKMP(
        init_cookie=CKY, exch_type=2) / ISAKMP_payload_VendorID(VendorID=vid)


def codes(an: Analyzer) -> dict[str, object]:
    return {f.code: f for f in find(an, [])}


# -- the crafted captures ---------------------------------------------------------------

def test_icmp_error_quoting_icmp_errors_is_decoded_one_level():
    """2,300 ICMP errors nested in each other: no error is ever sent about an ICMP error
    (RFC 1122 3.2.2, RFC 4443 2.4), so the outer one is not about IKE."""
    an = read(repro("icmp-nested-2300.pcap"))
    assert an.stats.skipped == 1 and an.skipped == {pk.ICMP_ABOUT_ICMP: 1}


def test_nested_atomic_fragments_are_bounded():
    """1,000 atomic fragment headers in a row: each is skipped as RFC 6946 says, up to
    8 extension headers; more make the packet malformed."""
    an = read(repro("ipv6-nested-atomic-fragments-1000.pcap"))
    assert an.stats.malformed == 1 and an.malformed[0][1] == "more than 8 IPv6 extension headers"


@pytest.mark.parametrize("name, fragments", [("ipv4-fragments-past-65535-jumbo.pcap", 2),
                                             ("ipv4-fragments-past-65535-mtu1500.pcap", 45),
                                             ("ipv6-fragments-past-65535.pcap", 2)])
def test_datagram_past_65535_bytes_is_malformed(name, fragments):
    """The ping of death: the fragment that takes the datagram past 65,535 bytes is malformed,
    the datagram is dropped, and its other fragments stay counted as fragments."""
    an = read(repro(name))
    assert an.stats.malformed == 1 and an.stats.fragments == fragments - 1 and an.stats.ike == 0
    ref, why = an.malformed[0]
    assert ref == fragments and "ping of death" in why and f"({fragments} fragments from frame 1)" in why
    assert not an.reassembler.incomplete and "malformed" in codes(an)


def test_conflicting_overlap_in_a_capture_keeps_the_first_copy():
    """Frame 3 repeats frame 1 (offset 0) with another SPI: Linux keeps the first copy."""
    an = read(repro("ipv4-overlapping-conflicting-fragment.pcap"))
    (sa,) = an.sas.values()
    assert sa.ispi == b"\x11" * 8 and an.stats.ike == 1 and an.stats.fragments == 3
    f = codes(an)["fragments-overlap"]
    assert f.severity == "warning" and f.frames == [1, 2, 3]
    assert "192.0.2.1 → 198.51.100.1" in f.summary and "different bytes; the first copy is used" in f.summary


def test_10000_fragments_of_one_datagram_in_linear_time():
    """Past `fragments_per_datagram` the datagram is given up; later fragments are only counted."""
    t = time.process_time()
    an = read(repro("one-datagram-10000-fragments-with-hole.pcap.gz"))
    assert time.process_time() - t < 5  # 27 s when every fragment sorted the parts
    (d,) = an.reassembler.incomplete
    assert d["fragments"] == 10000 and len(d["frames"]) == 128
    assert an.stats.overflow == {"fragments_per_datagram": 1}
    assert "1 IP datagram 192.0.2.1 → 198.51.100.1 never completed: 10000 fragment(s)" in codes(an)[
        "fragments-incomplete"].summary


# -- reassembly, hand-built ---------------------------------------------------------------

def test_duplicate_fragments_with_the_same_bytes_are_no_finding():
    frags = fragment(mm1(), fragsize=1400)
    an = feed([frags[0], frags[1], frags[1], frags[0], frags[2]])
    (sa,) = an.sas.values()
    assert sa.messages[0].fragments == [1, 2, 3, 4, 5] and an.stats.fragments == 4
    assert "fragments-overlap" not in codes(an)


def test_partial_overlap_drops_the_datagram():
    """RFC 5722 (and Linux for IPv4 too): any overlap that is not a duplicate drops it all."""
    frags = [bytes(f) for f in fragment(mm1(), fragsize=1400)]
    shifted = IP(frags[1])
    shifted.frag -= 1  # 8 bytes earlier: overlaps the end of the first fragment
    del shifted.chksum
    an = feed([frags[0], shifted, frags[1], frags[2]])
    assert an.stats.ike == 0 and an.stats.fragments == 4 and not an.reassembler.incomplete
    f = codes(an)["fragments-overlap"]
    assert "frame 2 overlaps bytes 1392-1399 of frame 1 with the same bytes; the whole datagram is dropped" \
        in f.summary


def test_fragments_that_disagree_about_the_end_drop_the_datagram():
    frags = fragment(mm1(), fragsize=1400)
    early_end = IP(bytes(frags[1]))
    early_end.flags = 0  # a second "last" fragment, before the real one
    del early_end.chksum
    an = feed([frags[0], frags[2], early_end, frags[1]])
    assert an.stats.ike == 0 and "disagree about where it ends (frame 3)" in codes(an)["fragments-overlap"].summary


def test_ipv6_fragments_after_a_hop_by_hop_header():
    """The reassembled datagram keeps the unfragmentable part, with the next header fixed
    in the header before the fragment header."""
    big = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment() / UDP(
        sport=500, dport=500) / ISAKMP(init_cookie=CKY, exch_type=2) / ISAKMP_payload_VendorID(VendorID=b"v" * 3000)
    an = feed(fragment6(big, 1280))
    (sa,) = an.sas.values()
    assert len(sa.messages[0].fragments) == 3 and an.stats.ike == 1


def test_atomic_fragment_is_the_datagram_itself():
    """RFC 6946: offset 0 and no more fragments: decoded as is, never held."""
    atomic = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=7) / UDP(sport=500, dport=500) / \
        ISAKMP(init_cookie=CKY, exch_type=2) / ISAKMP_payload_VendorID(VendorID=b"a")
    an = feed([atomic])
    assert an.stats.ike == 1 and an.stats.fragments == 0


def test_fragment_inside_a_reassembled_datagram_is_malformed():
    inner = IPv6ExtHdrFragment(nh=17, id=9, offset=0, m=1) / UDP(sport=500, dport=500) / (b"x" * 2000)
    outer = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=8) / inner
    an = feed(fragment6(outer, 1280))
    assert an.stats.malformed == 1 and an.malformed[0][1] == "IP fragment inside a reassembled IP datagram"


def test_fragment_caps_timeout_and_listing():
    """Buffers beyond `fragment_buffers` push out the oldest, each expires after
    `fragment_timeout`, and at most `incomplete_listed` are listed; the rest are counted."""
    lim = Limits(fragment_buffers=4, incomplete_listed=3, fragment_timeout=5.0)
    firsts = [fragment(mm1(ident=k), fragsize=1400)[0] for k in range(10)]
    an = feed(firsts, lim)
    assert len(an.reassembler.incomplete) == 3 and an.reassembler.given_up == 10
    assert an.stats.overflow == {"fragment_buffers": 6, "incomplete_listed": 7}
    assert codes(an)["fragments-incomplete"].summary.endswith(
        "3 IP datagrams 192.0.2.1 → 198.51.100.1 never completed: 3 fragment(s), 4200 bytes (7 more in the capture, "
        "past the 3 listed)")
    late = fragment(mm1(ident=1), fragsize=1400)
    an = feed([late[0], late[1], late[2]], lim, step=3.0)  # the last one 6 s after the first
    assert an.stats.ike == 0 and an.reassembler.incomplete[0]["frames"] == [1, 2]


def test_icmp_errors_past_the_cap_are_counted():
    mm = IP(src="192.0.2.1", dst="198.51.100.1") / UDP(sport=500, dport=500) / ISAKMP(init_cookie=CKY, exch_type=2)
    error = IP(src="198.51.100.1", dst="192.0.2.1") / ICMP(type=3, code=3) / bytes(mm)
    nested = IP(src="203.0.113.9", dst="198.51.100.1") / ICMP(type=3, code=1) / bytes(error)
    an = feed([mm] + [error] * 5 + [nested], Limits(icmp_per_pair=2))
    (pair,) = an.pairs.values()
    assert len(pair.icmp) == 2 and pair.icmp_errors == 5 and an.stats.overflow == {"icmp_per_pair": 3}
    assert an.skipped == {pk.ICMP_ABOUT_ICMP: 1}
    assert codes(an)["icmp-error"].summary == "5 ICMP errors about IKE/ESP: port unreachable"


# -- floods -------------------------------------------------------------------------------

@pytest.mark.parametrize("flood", [fragment_flood, icmp_flood])
def test_floods_keep_bounded_state(flood):
    """State stops growing at the caps: the Python heap after 8,000 packets is the heap after 2,000."""
    lim = Limits(fragment_buffers=64, incomplete_listed=100, icmp_per_pair=100)
    peaks = []
    for n in (2000, 8000):
        data = flood(n)
        tracemalloc.start()
        an = read(data, lim)
        peaks.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        assert an.stats.packets == n and an.stats.fragments + an.stats.icmp == n
    assert peaks[1] < peaks[0] * 1.2 + 200_000


@pytest.mark.parametrize("flood", [fragment_flood, icmp_flood])
def test_floods_take_linear_time(flood):
    """Four times the packets take about four times as long (quadratic would be 16)."""
    def seconds(n):
        data = flood(n)
        t = time.perf_counter()
        read(data)
        return time.perf_counter() - t
    small = min(seconds(5_000) for _ in range(2))
    big = seconds(20_000)
    assert big / small < 8, f"5k packets {small:.2f} s, 20k packets {big:.2f} s"


# -- IKEv1 fragmentation (payload 132): reassembled before NAT-D is judged --------------------------------

def ike_fragments(whole: bytes, fid: int, pieces: int) -> list[bytes]:
    """`whole` (an ISAKMP message) cut into `pieces` IKEv1 fragments of ID `fid` (Cisco / strongSwan layout:
    fragment ID, number from 1, flags with 1 = last, then the piece), each in a Main Mode header of its own."""
    step = -(-len(whole) // pieces)
    return [natt.isakmp(natt.MM, [(natt.FRAG, struct.pack("!HBB", fid, n + 1, int(n == pieces - 1))
                                   + whole[n * step:(n + 1) * step])]) for n in range(pieces)]


def fragmented_mm3(order=(3, 1, 2), inner: bytes | None = None, fid: int = 7) -> list[bytes]:
    """MM1, MM2 (RFC 3947 NAT-T and FRAGMENTATION VIDs), MM3 in fragments sent in `order`, MM4 whole; the
    responder sees the initiator as NAT:500, so MM4's NAT-D (and MM3's, read whole) find it translated."""
    vids = ["RFC 3947", "FRAGMENTATION"]
    mm1, mm2, mm3, mm4, _ = natt.main_mode(vids, vids)
    whole = inner or pk.decode_ip(mm3).payload
    frags = ike_fragments(whole, fid, 3)
    return [mm1, mm2, *(natt.udp(natt.I, natt.R, 500, 500, frags[n - 1]) for n in order)]


def test_ikev1_fragments_reassembled_for_nat_d():
    """MM3 in three fragments, the last one first: NAT-D is judged once all three are in, at the frame that
    completed it, as if MM3 came whole; nothing stays pending."""
    an = natt.feed(fragmented_mm3())
    (sa,) = an.sas.values()
    assert [m.label for m in sa.messages] == ["MM1", "MM2", "MM3", "MM3", "MM3"]
    assert [m.ref for m in sa.natd] == [5]
    assert sa.natd[0].natd == {"algorithm": "sha1", "sender_translated": False, "receiver_translated": False}
    assert sa._pending == {}
    # MM3 alone only says that the initiator's claims match what it sent; MM4 whole finds it translated
    mm4 = natt.main_mode(["RFC 3947"], ["RFC 3947"])[3]
    an = natt.feed([*fragmented_mm3(), mm4])
    (sa,) = an.sas.values()
    assert [m.ref for m in sa.natd] == [5, 6] and sa.behind_nat() == {"I": True, "R": False}


def test_ikev1_fragments_incomplete_encrypted_or_foreign_are_not_read():
    """A missing piece: no NAT-D.  An encrypted message inside (MM5 and later): its pieces are not kept.  A
    message of another IKE SA inside: ignored."""
    an = natt.feed(fragmented_mm3(order=(1, 3)))
    (sa,) = an.sas.values()
    assert sa.natd == [] and [len(p.parts) for p in sa._pending.values()] == [2]
    encrypted = natt.isakmp(natt.MM, [(5, b"\xee" * 300)], flags=1)
    an = natt.feed(fragmented_mm3(order=(1, 2, 3), inner=encrypted))
    (sa,) = an.sas.values()
    assert sa.natd == [] and [(p.skip, p.parts) for p in sa._pending.values()] == [(True, {})]
    mm3 = pk.decode_ip(natt.main_mode(["RFC 3947"], ["RFC 3947"])[2]).payload
    an = natt.feed(fragmented_mm3(order=(1, 2, 3), inner=b"\x99" * 8 + mm3[8:]))
    (sa,) = an.sas.values()
    assert sa.natd == [] and sa._pending == {}


def test_ikev1_fragments_pending_are_bounded_and_dropped_once_phase_1_is_up():
    """Incomplete fragmented messages: at most KEEP_PENDING per SA (the oldest go), none once phase 1 is up."""
    from ikeflow.model.ikesa import KEEP_PENDING

    head = fragmented_mm3()[:2]
    frags = [natt.udp(natt.I, natt.R, 500, 500, ike_fragments(b"\x42" * 900, fid, 3)[0]) for fid in range(10)]
    an = natt.feed(head + frags)
    (sa,) = an.sas.values()
    assert [fid for _, fid in sa._pending] == list(range(10 - KEEP_PENDING, 10))
    mm5 = natt.isakmp(natt.MM, [(5, b"\xee" * 60)], flags=1)
    done = [natt.udp(natt.I, natt.R, 500, 500, mm5), natt.udp(natt.R, natt.I, 500, 500, mm5)]
    an = natt.feed(head + frags[:3] + done + frags[3:4])
    (sa,) = an.sas.values()
    assert sa.ike_sa_up() and sa._pending == {}


def test_ikev1_fragments_of_a_real_mm4_show_the_nat():
    """The wiki's remote-access capture (test1.pcap): MM4 comes as two IKEv1 fragments, the last one first
    (frames 22, 23; tshark: Frag ID 1, seq 2 last then seq 1; "Reassembled ISAKMP length: 595").  Put
    together here from tshark's bytes, its NAT-D (type 130, draft-02) about the initiator does not match the
    initiator's captured 192.168.63.105:1471, its own does match 194.25.242.231:500: the initiator is behind a
    NAT, which MM3's NAT-D alone cannot show from this side of it."""
    from conftest import need_public
    from test_natt import tshark_fields, v1_hash, walk
    from ikeflow.pipeline import read_captures

    path = need_public() / "wireshark-wiki/uploads/__moin_import__/attachments/SampleCaptures/test1.pcap"
    rows = tshark_fields(path, "frame.number", "isakmp.frag.seq", "udp.payload", "isakmp.reassembled.length",
                         where="frame.number == 22 || frame.number == 23")
    assert [(r[0], r[1], r[3]) for r in rows] == [("22", "2", ""), ("23", "1", "595")]
    pieces = {int(seq): bytes.fromhex(data)[28 + 8:] for _, seq, data, _ in rows}
    whole = pieces[1] + pieces[2]
    assert len(whole) == 595 and whole[19] & 1 == 0
    about_receiver, about_sender = [b for t, b in walk(whole) if t == 130]
    assert about_receiver != v1_hash(whole[:8], whole[8:16], "192.168.63.105", 1471)
    assert about_sender == v1_hash(whole[:8], whole[8:16], "194.25.242.231", 500)
    an = read_captures([str(path)]).model
    (sa,) = an.sas.values()
    assert [split_ref(m.ref)[1] for m in sa.natd] == [21, 23]
    assert sa.behind_nat() == {"I": True, "R": False} and sa.float_at == "MM5"
    assert [f.summary for f in find(an, []) if f.code == "nat-t"] == [
        "initiator behind NAT (NAT-D); floated to UDP 4500 at MM5"]


if __name__ == "__main__":
    kind, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Path(out).write_bytes({"fragments": fragment_flood, "icmp": icmp_flood}[kind](count))
