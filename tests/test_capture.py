"""The capture reader: formats, link types, truncation, stdin, several files.

Packets are built with scapy; pcap/pcapng containers are written with struct
following the published file formats, so the reader is checked against an
independent writer.
"""

import gzip
import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_SA
from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether, Loopback
from scapy.packet import Raw

from ikeflow.model.analysis import Analyzer
from ikeflow.pipeline import read_captures
from ikeflow.sources.capture import FAST, CaptureError, FileInfo, read_files, scan, split_ref
from ikeflow.model.esp import EspTable
from ikeflow.decode.linktypes import LINK_TYPES
import ikeflow.sources.capture as capture

A, B = "192.0.2.1", "203.0.113.5"


def esp(seq, spi=0x1234, src=A, dst=B):
    return IP(src=src, dst=dst) / ESP(spi=spi, seq=seq, data=b"x" * 40)


def ike():
    return IP(src=A, dst=B) / UDP(sport=500, dport=500) / ISAKMP(init_cookie=b"\x11" * 8, exch_type=2) / ISAKMP_payload_SA()


def pcap(records, linktype=1, endian="<", nano=False) -> bytes:
    """A classic pcap file; records are (time, bytes)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for t, data in records:
        sec = int(t)
        frac = round((t - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), len(data)) + data)
    return b"".join(out)


def _block(btype, body, endian="<"):
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def pcapng(records, interfaces=((1, None),), endian="<") -> bytes:
    """A pcapng file; interfaces are (linktype, if_tsresol byte or None); records (iface, time, bytes)."""
    out = [_block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)]
    for linktype, resol in interfaces:
        opts = b""
        if resol is not None:
            opts = struct.pack(endian + "HH", 9, 1) + bytes([resol]) + b"\0\0\0" + struct.pack(endian + "HH", 0, 0)
        out.append(_block(1, struct.pack(endian + "HHI", linktype, 0, 0) + opts, endian))
    for iface, t, data in records:
        resol = interfaces[iface][1]
        units = 10 ** (resol or 6)
        ts = round(t * units)
        out.append(_block(6, struct.pack(endian + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data,
                          endian))
    return b"".join(out)


def run(tmp_path, blobs, name="c.pcap"):
    paths = []
    for i, blob in enumerate(blobs):
        p = tmp_path / f"{i}-{name}"
        p.write_bytes(blob)
        paths.append(str(p))
    result = read_captures(paths)
    return result.model, result.infos


def eth(pkt):
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_byte_orders_and_resolutions(tmp_path, endian, nano):
    blob = pcap([(1700000000.25, eth(esp(1))), (1700000001.5, eth(esp(2))), (1700000002.0, eth(ike()))],
                endian=endian, nano=nano)
    an, infos = run(tmp_path, [blob])
    assert infos[0].packets == 3 and infos[0].format == ("pcap-ns" if nano else "pcap")
    assert an.stats.esp == 2 and an.stats.ike == 1
    flow = next(iter(an.esp.flows.values()))
    assert flow.first_time == pytest.approx(1700000000.25) and flow.last_time == pytest.approx(1700000001.5)
    assert flow.last_frame == 2


def test_pcapng_several_interfaces_and_link_types(tmp_path):
    raw = bytes(esp(7, spi=0x99))
    sll = bytes(CookedLinux(pkttype=0, proto=0x0800) / esp(8, spi=0x99))
    blob = pcapng([(0, 10.0, eth(esp(1))), (1, 11.0, raw), (2, 12.5, sll), (0, 13.0, eth(ike()))],
                  interfaces=((1, None), (101, 9), (113, None)))
    an, infos = run(tmp_path, [blob])
    assert infos[0].linktypes == [1, 101, 113] and infos[0].packets == 4
    assert an.stats.esp == 3 and an.stats.ike == 1
    f = [x for x in an.esp.flows.values() if x.spi == 0x99][0]
    assert (f.packets, f.seq_min, f.seq_max) == (2, 7, 8)
    assert f.first_time == pytest.approx(11.0) and f.last_time == pytest.approx(12.5)


def test_pcapng_big_endian(tmp_path):
    an, infos = run(tmp_path, [pcapng([(0, 5.0, eth(esp(3)))], endian=">")])
    assert an.stats.esp == 1 and infos[0].format == "pcapng"


@pytest.mark.parametrize("layer,linktype", [
    (lambda p: bytes(Ether() / Dot1Q(vlan=10) / p), 1),
    (lambda p: bytes(Ether() / Dot1AD(vlan=20) / Dot1Q(vlan=10) / p), 1),
    (lambda p: bytes(CookedLinux(pkttype=4, proto=0x0800) / p), 113),
    (lambda p: struct.pack(">HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\0" * 8) + bytes(p), 276),
    (lambda p: bytes(Loopback(type=2) / p), 0),
    (lambda p: struct.pack(">I", 2) + bytes(p), 108),
    (lambda p: bytes(p), 101),
    (lambda p: bytes(p), 12),
    (lambda p: bytes(p), 14),
    (lambda p: bytes(p), 228),
])
def test_link_types(tmp_path, layer, linktype):
    an, _ = run(tmp_path, [pcap([(1.0, layer(esp(1))), (2.0, layer(ike()))], linktype=linktype)])
    assert (an.stats.esp, an.stats.ike, an.stats.skipped, an.stats.malformed) == (1, 1, 0, 0)


def test_raw_ipv6_link_type(tmp_path):
    p6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    blob = pcap([(1.0, bytes(p6 / ESP(spi=5, seq=1, data=b"y" * 20))),
                 (2.0, bytes(p6 / UDP(sport=500, dport=500) / ISAKMP(init_cookie=b"\x22" * 8, exch_type=34)))],
                linktype=229)
    an, _ = run(tmp_path, [blob])
    assert (an.stats.esp, an.stats.ike, an.stats.skipped, an.stats.malformed) == (1, 1, 0, 0)


@pytest.mark.parametrize("linktype", sorted(n for n, lt in LINK_TYPES.items() if lt.fast))
def test_fast_path_on_every_link_type_it_reads(tmp_path, linktype):
    """The inline ESP path (one row of linktypes.LINK_TYPES each) counts what the decoder counts."""
    lt = LINK_TYPES[linktype]
    head = bytearray(lt.ip_at)
    if lt.ethertype_at is not None:
        head[lt.ethertype_at : lt.ethertype_at + 2] = b"\x08\x00"
    pkts = [esp(s) for s in (1, 2, 4, 3, 3)] + [IP(src=A, dst=B) / UDP(sport=4500, dport=4500) / ESP(spi=0x77, seq=1)]
    blob = pcap([(float(i), bytes(head) + bytes(p)) for i, p in enumerate(pkts)], linktype=linktype)
    fast, _ = run(tmp_path, [blob])
    assert FAST[linktype] and fast.stats.esp == 6
    assert not [r for b in scan(str(tmp_path / "0-c.pcap"), 0, FileInfo("x"), EspTable()) for r in b]  # all inline
    general = Analyzer()
    for batch in scan(str(tmp_path / "0-c.pcap"), 0, FileInfo("x"), None):
        for rec in batch:
            general.record(rec)
    assert {k: (f.packets, f.duplicates, f.reordered) for k, f in fast.esp.flows.items()} == \
        {k: (f.packets, f.duplicates, f.reordered) for k, f in general.esp.flows.items()}


def test_ipv6_esp_and_ike(tmp_path):
    p6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    blob = pcap([(1.0, eth(p6 / ESP(spi=5, seq=1, data=b"y" * 20))),
                 (2.0, eth(p6 / UDP(sport=500, dport=500) / ISAKMP(init_cookie=b"\x22" * 8, exch_type=34)))])
    an, _ = run(tmp_path, [blob])
    assert an.stats.esp == 1 and an.stats.ike == 1
    f = next(iter(an.esp.flows.values()))
    assert f.src_ip == "2001:db8::1" and f.spi == 5


def _same_as_decoder(path, plain_ipv4=True):
    """Read `path` with the inline ESP path and without it; both must give the same analysis: flows
    (every counter), peer pairs, stats, and the flows and pairs in the same order but those of plain IPv4
    (`plain_ipv4`: untagged; the inline IPv4 path makes those at once, the decoder when it gets to them)."""
    from ikeflow.pipeline import Pipeline

    fast, slow = Pipeline(), Pipeline()
    records, fast.decoded = fast.model.records, []
    fast.model.records = lambda recs: (fast.decoded.extend(rec.ref for rec in recs), records(recs))
    fast.read([path])
    slow.read([path], esp_fast=False)
    for p in (fast, slow):
        p.model.finish(p.infos[0].packets)
    f_flows, s_flows = fast.model.esp.flows, slow.model.esp.flows
    ordered = (lambda key: key >> 160) if plain_ipv4 else (lambda key: True)  # IPv6: esp_key has bit 160 set
    assert [k for k in f_flows if ordered(k)] == [k for k in s_flows if ordered(k)]
    assert f_flows.keys() == s_flows.keys()
    for key, f in f_flows.items():
        g = s_flows[key]
        for attr in ("src", "dst", "packets", "bytes", "first_time", "last_time", "first_frame", "last_frame",
                     "seq_first", "seq_min", "seq_max", "duplicates", "reordered", "lost", "encap", "sport", "dport"):
            assert getattr(f, attr) == getattr(g, attr), (hex(f.spi), attr)
    pairs = [[(p.a, p.b, p.first_time) for p in pipe.model.pairs.values() if not plain_ipv4 or len(p.a) == 16]
             for pipe in (fast, slow)]
    assert pairs[0] == pairs[1]
    assert fast.model.stats == slow.model.stats
    return fast


V6A, V6B = "2001:db8::1", "2001:db8:1::5"


@pytest.mark.parametrize("layer,linktype,tagged", [
    (lambda p: eth(p), 1, False),
    (lambda p: bytes(Ether() / Dot1Q(vlan=10) / p), 1, True),
    (lambda p: bytes(Ether() / Dot1AD(vlan=20) / Dot1Q(vlan=10) / p), 1, True),
    (lambda p: bytes(CookedLinux(pkttype=4, proto=0x86DD if IPv6 in p else 0x0800) / p), 113, False),
    (lambda p: struct.pack(">HHIHBB8s", 0x86DD if IPv6 in p else 0x0800, 0, 2, 1, 0, 6, b"\0" * 8) + bytes(p), 276,
     False),
    (lambda p: bytes(p), 101, False),
    (lambda p: bytes(p), 229, False),
])
def test_inline_ipv6_and_tagged_esp_is_what_the_decoder_counts(tmp_path, monkeypatch, layer, linktype, tagged):
    """IPv6 ESP (plain, UDP-encapsulated) and ESP behind VLAN tags are counted inline, with the same result
    as the decoder: in and out of sequence, duplicates, a copy, a flow that starts before its peers' IKE."""
    monkeypatch.setattr(capture, "MAPPED_SPAN", 500)  # batches of a few frames, decoded as they come
    monkeypatch.setattr(capture, "HOLD", 3)
    v6 = IPv6(src=V6A, dst=V6B)
    udp6 = IPv6(src=V6B, dst=V6A) / UDP(sport=62001, dport=4500)
    flows = [
        [v6 / ESP(spi=0x501, seq=s, data=b"q" * 40) for s in range(1, 40)],
        [udp6 / ESP(spi=0x502, seq=s, data=b"r" * 30) for s in (1, 2, 3, 5, 4, 4, 6, 7, 8, 9, 10)],
        [esp(s, spi=0x503) for s in range(1, 20)],  # IPv4: the inline path, or behind tags _more
        [v6 / UDP(sport=500, dport=500) / ISAKMP(init_cookie=b"\x33" * 8, exch_type=34), udp6 / Raw(b"\xff"),
         udp6 / Raw(b"\0\0\0\0" + bytes(ISAKMP(init_cookie=b"\x34" * 8, exch_type=37)))],
        [IPv6(src="2001:db8:9::1", dst="2001:db8:9::2") / ESP(spi=0x504, seq=s, data=b"s" * 20) for s in (7, 8, 9)],
    ]
    frames = [layer(p) for i in range(39) for f in flows if i < len(f) for p in [f[i]]]  # interleaved
    frames.insert(30, frames[29])  # a copy of the frame before
    blob = pcap([(1000.0 + i / 1000, f) for i, f in enumerate(frames)], linktype=linktype)
    (tmp_path / "c.pcap").write_bytes(blob)
    fast = _same_as_decoder(str(tmp_path / "c.pcap"), not tagged)
    assert fast.model.stats.esp == 39 + 11 + 19 + 3 and fast.model.stats.keepalives == 1
    assert len(fast.decoded) < len(frames) // 2  # most counted inline


def test_inline_path_holds_a_new_flow_back_until_the_decoder_made_it(tmp_path, monkeypatch):
    """The first packet of an IPv6 flow goes to the decoder; the packets read before the decoder got to it are
    held back and counted right after it, in order; out-of-sequence packets are counted inline."""
    monkeypatch.setattr(capture, "MAPPED_SPAN", 600)  # a batch every few frames
    monkeypatch.setattr(capture, "HOLD", 2)
    v6 = IPv6(src=V6A, dst=V6B)
    seqs = [1, 2, 3, 9, 4, 5, 6, 10, 11, 11, 12, 8, 13, 14] + list(range(15, 60))
    blob = pcap([(2000.0 + i, eth(v6 / ESP(spi=0x601, seq=s, data=b"t" * 20))) for i, s in enumerate(seqs)])
    (tmp_path / "c.pcap").write_bytes(blob)
    fast = _same_as_decoder(str(tmp_path / "c.pcap"))
    assert fast.decoded == [1]
    f = next(iter(fast.model.esp.flows.values()))
    assert (f.packets, f.duplicates, f.reordered, f.lost) == (len(seqs), 1, 4, 1)


def test_pcapng_inline_path_on_several_interfaces(tmp_path, monkeypatch):
    """pcapng's packet blocks take the same inline path, interface by interface (Ethernet, Linux cooked v2,
    raw IP), with a copy of a datagram seen on two interfaces and a simple packet block on the way."""
    monkeypatch.setattr(capture, "CHUNK", 700)  # a batch every few blocks
    monkeypatch.setattr(capture, "HOLD", 3)
    sll2 = lambda p: struct.pack(">HHIHBB8s", 0x86DD if IPv6 in p else 0x0800, 0, 2, 1, 0, 6, b"\0" * 8) + bytes(p)
    v6 = IPv6(src=V6A, dst=V6B)
    records = []
    for i in range(1, 30):
        records.append((i % 3, 100.0 + i / 100, [eth, sll2, bytes][i % 3](v6 / ESP(spi=0x701, seq=i, data=b"u" * 24))))
        records.append((0, 100.0 + i / 100 + 0.0001, eth(esp(i, spi=0x702))))
        if i == 12:  # the same datagram again, on the cooked interface
            records.append((1, 100.0 + i / 100 + 0.0002, sll2(esp(i, spi=0x702))))
    blob = pcapng(records, interfaces=((1, None), (276, None), (101, 9)))
    spb = _block(3, struct.pack("<I", 60) + eth(ike())[:56])
    (tmp_path / "c.pcapng").write_bytes(blob + spb)
    fast = _same_as_decoder(str(tmp_path / "c.pcapng"))
    assert fast.infos[0].packets == len(records) + 1 and fast.infos[0].quality.cut == 1
    assert fast.model.stats.esp == 29 + 29 and fast.infos[0].quality.copies == 1
    assert len(fast.decoded) < 10


def test_padded_keepalive_is_no_esp(tmp_path):
    """A NAT-T keepalive padded to Ethernet's 60 bytes (as received) has 4 bytes where an SPI would be."""
    ka = eth(IP(src=A, dst=B) / UDP(sport=4500, dport=4500) / Raw(b"\xff"))
    (tmp_path / "c.pcap").write_bytes(pcap([(1.0, ka + b"\0" * (60 - len(ka)))]))
    fast = _same_as_decoder(str(tmp_path / "c.pcap"))
    assert (fast.model.stats.esp, fast.model.stats.keepalives) == (0, 1)


def test_gzip_and_stdin(tmp_path, monkeypatch):
    blob = pcap([(1.0, eth(esp(1))), (2.0, eth(esp(2)))])
    an, infos = run(tmp_path, [gzip.compress(blob)], name="c.pcap.gz")
    assert an.stats.esp == 2
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(blob))))
    an2 = Analyzer()
    infos2: list = []
    for batch in read_files(["-"], an2.esp, infos2):
        for rec in batch:
            an2.record(rec)
    an2.finish(infos2[0].packets)
    assert an2.stats.esp == 2


def test_truncated_capture_keeps_whole_records(tmp_path):
    blob = pcap([(1.0, eth(esp(1))), (2.0, eth(esp(2))), (3.0, eth(esp(3)))])
    cut = len(blob) - 10
    an, infos = run(tmp_path, [blob[:cut]])
    assert an.stats.esp == 2 and infos[0].packets == 2
    assert infos[0].truncated_at is not None and "byte" in infos[0].warning


def test_truncated_pcapng(tmp_path):
    blob = pcapng([(0, 1.0, eth(esp(1))), (0, 2.0, eth(esp(2)))])
    an, infos = run(tmp_path, [blob[:-7]])
    assert an.stats.esp == 1 and infos[0].truncated_at is not None


@pytest.mark.parametrize("content", [b"", b"hello world, not a capture", b"\x89PNG\r\n\x1a\n0000"])
def test_not_a_capture(tmp_path, content):
    p = tmp_path / "x.pcap"
    p.write_bytes(content)
    with pytest.raises(CaptureError):
        for _ in read_files([str(p)], EspTable(), []):
            pass


def test_several_files_are_one_timeline(tmp_path):
    first = pcap([(10.0, eth(ike())), (30.0, eth(esp(3)))])
    second = pcap([(20.0, eth(esp(1))), (25.0, eth(esp(2)))])
    an, infos = run(tmp_path, [first, second])
    assert [i.packets for i in infos] == [2, 2]
    f = next(iter(an.esp.flows.values()))
    assert split_ref(f.first_frame) == (1, 1)
    assert an.stats.packets == 4


def test_fast_path_equals_general_path(tmp_path):
    """Frames the fast path counts must give exactly what the general decoder gives."""
    pkts = [esp(s) for s in (1, 2, 3, 5, 4, 4, 9, 200, 201, 10)]
    pkts += [IP(src=A, dst=B) / UDP(sport=4500, dport=4500) / ESP(spi=0x77, seq=s, data=b"z" * 30) for s in (1, 2, 4)]
    blob = pcap([(float(i), eth(p)) for i, p in enumerate(pkts)])
    fast, _ = run(tmp_path, [blob])
    general = Analyzer()
    info = FileInfo("x")
    for batch in scan(str(tmp_path / "0-c.pcap"), 0, info, None):
        for rec in batch:
            general.record(rec)
    assert set(fast.esp.flows) == set(general.esp.flows)
    for key, f in fast.esp.flows.items():
        g = general.esp.flows[key]
        for attr in ("packets", "bytes", "first_time", "last_time", "first_frame", "last_frame", "seq_min", "seq_max",
                     "duplicates", "reordered", "lost", "encap", "sport", "dport"):
            assert getattr(f, attr) == getattr(g, attr), attr


@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "pcapng-new-interface"])
def test_two_core_read_equals_one_core(tmp_path, monkeypatch, fmt):
    """A big file is read by two processes (capture._two_cores); the result must be
    what one process gives: same ESP flows, same records in the same order with the same frames.
    (pcapng with an interface described in the helper's part: the main process reads that part itself.)"""
    import ikeflow.sources.capture as capture

    pkts = []
    v6 = IPv6(src=V6A, dst=V6B)
    for i in range(3000):
        if i % 50 == 7:
            pkts.append(ike())
        elif i % 10 == 4:  # IPv6 flows, one of them begun in the helper's part
            spi = 0x90 if i < 2000 else 0x91
            pkts.append(v6 / ESP(spi=spi, seq=i // 10 + 1 - (spi == 0x91) * 200 + (i == 2504) * 9, data=b"v" * 30))
        elif i % 3:
            pkts.append(esp(i // 3 + 1 + (i == 1500) * 5, spi=0x10 + i % 3))
        else:
            pkts.append(IP(src=B, dst=A) / UDP(sport=4500, dport=4500) / ESP(spi=0x77, seq=i // 3 + 1, data=b"z" * 30))
    if fmt == "pcap":
        blob = pcap([(1000.0 + i / 100, eth(p)) for i, p in enumerate(pkts)])
    else:
        blob = pcapng([(0, 1000.0 + i / 100, eth(p)) for i, p in enumerate(pkts)])
    if fmt == "pcapng-new-interface":  # an interface description two thirds in, never used
        cut = blob.index(eth(pkts[2000]))
        cut = blob.rindex(struct.pack("<I", 6), 0, cut)
        blob = blob[:cut] + _block(1, struct.pack("<HHI", 113, 0, 0), "<") + blob[cut:]

    forks = []
    parallel = capture._two_cores
    started = capture._start_helper

    def counted(*args):
        forks.append(1)
        return (yield from parallel(*args))

    monkeypatch.setattr(capture, "_two_cores", counted)
    monkeypatch.setattr(capture, "_cpus", lambda: 2)
    monkeypatch.setattr(capture, "MAPPED_SPAN", 4096)

    def run_with(minimum):
        monkeypatch.setattr(capture, "PARALLEL_MIN", minimum)
        return run(tmp_path, [blob], "c." + fmt[:6])

    one, one_info = run_with(1 << 60)
    assert not forks
    two, two_info = run_with(0)
    assert forks
    assert two_info[0].packets == one_info[0].packets == 3000
    assert one.stats == two.stats and sum(k >> 160 for k in two.esp.flows) == 2  # two IPv6 flows
    assert list(one.esp.flows) == list(two.esp.flows)  # the same order too: the JSON lists them so
    for key, f in one.esp.flows.items():
        g = two.esp.flows[key]
        for attr in ("packets", "bytes", "first_time", "last_time", "first_frame", "last_frame", "seq_min", "seq_max",
                     "lost", "encap"):
            assert getattr(f, attr) == getattr(g, attr), attr
    assert [m.ref for sa in one.sas.values() for m in sa.messages] == [m.ref for sa in two.sas.values() for m in sa.messages]
    assert one_info[0].linktypes == two_info[0].linktypes and one_info[0].warning == two_info[0].warning

    # the ESP decoded past the seam waits for the helper's flows (EspTable.hold); with no room to hold any,
    # the main process waits for the helper's end at once, and the result is the same
    monkeypatch.setattr(capture, "HELD_MAX", -1)
    waited, _ = run_with(0)
    assert waited.stats == one.stats and list(waited.esp.flows) == list(one.esp.flows)
    assert [f.packets for f in waited.esp.flows.values()] == [f.packets for f in one.esp.flows.values()]
    monkeypatch.setattr(capture, "HELD_MAX", 1 << 15)

    def failing(job, spool):  # a helper that dies at once: its part is read by the main process
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE)

    monkeypatch.setattr(capture, "_start_helper", failing)
    alone, alone_info = run_with(0)
    assert alone.stats == one.stats and alone_info[0].warning is None
    assert {k: f.packets for k, f in alone.esp.flows.items()} == {k: f.packets for k, f in one.esp.flows.items()}

    # a helper that dies after writing three batches (smaller ones than here), which the main process has
    # handed on by then: it does the helper's part over, past the records handed on, and the result is the same
    monkeypatch.setattr(capture, "_start_helper", started)
    monkeypatch.setattr(capture, "HELPER", "import os, ikeflow.sources.capture as c\n"
                        "c.MAPPED_SPAN = c.CHUNK = 4096\n"
                        "real = c._help\n"
                        "def three(job):\n"
                        "    work = real(job)\n"
                        "    for _ in range(3):\n"
                        "        yield next(work)\n"
                        "    os._exit(1)\n"
                        "c._help = three\n"
                        "c._helper()")
    again = []
    real_help = capture._help

    def counted_help(job):
        again.append(1)
        return (yield from real_help(job))

    monkeypatch.setattr(capture, "_help", counted_help)
    halfway, halfway_info = run_with(0)
    assert again and halfway_info[0].packets == 3000 and halfway_info[0].warning == one_info[0].warning
    assert halfway.stats == one.stats and list(halfway.esp.flows) == list(one.esp.flows)
    for key, f in one.esp.flows.items():
        assert f.packets == halfway.esp.flows[key].packets and f.lost == halfway.esp.flows[key].lost
    assert [m.ref for sa in one.sas.values() for m in sa.messages] == \
        [m.ref for sa in halfway.sas.values() for m in sa.messages]


def test_two_cores_same_json_on_a_gateway_mix(tmp_path):
    """A generated gateway mix (IPv6 ESP off the fast path next to IPv4 ESP on it) gives the same JSON,
    byte for byte, read on one core and on two (the flows are listed by first frame either way)."""
    path = tmp_path / "mix.pcap"
    gen = [sys.executable, str(Path(__file__).parent / "bench" / "gen_capture.py"), str(path), "--packets", "30000",
           "--peers", "60", "--ipv6", "0.1", "--quiet"]
    subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
    out = {}
    for minimum in ("0", str(1 << 60)):
        env = dict(os.environ, IKEFLOW_PARALLEL_MIN=minimum, PYTHONPATH=str(Path(__file__).parents[1]))
        done = subprocess.run([sys.executable, "-m", "ikeflow", "read", "--json", str(path)], env=env,
                              capture_output=True, check=False)
        out[minimum] = done.returncode, done.stdout
    assert out["0"][1].startswith(b"{") and out["0"] == out[str(1 << 60)]


def test_prestarted_helper_is_taken_or_ended(tmp_path, monkeypatch):
    """`read` starts the helper of a two-core read before it sets up the analysis (`prestart`): the read takes
    it over when it would start the same one, and otherwise ends it and starts its own; either way the
    analysis is that of a one-core read.  A helper that no read takes is ended at exit, and a file that is
    not read on two cores gets none."""
    from ikeflow.limits import DEFAULT
    from ikeflow.pipeline import Options

    path = tmp_path / "mix.pcap"
    gen = [sys.executable, str(Path(__file__).parent / "bench" / "gen_capture.py"), str(path), "--packets", "20000",
           "--peers", "30", "--ipv6", "0.1", "--quiet"]
    subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
    monkeypatch.setattr(capture, "_cpus", lambda: 2)
    monkeypatch.setattr(capture, "PARALLEL_MIN", 1 << 60)
    one = read_captures([str(path)]).model
    monkeypatch.setattr(capture, "PARALLEL_MIN", 0)
    helpers = []
    start = capture._start_helper
    monkeypatch.setattr(capture, "_start_helper", lambda job, spool: helpers.append(start(job, spool)) or helpers[-1])

    def same(model):
        assert model.stats == one.stats and list(model.esp.flows) == list(one.esp.flows)
        assert [f.packets for f in model.esp.flows.values()] == [f.packets for f in one.esp.flows.values()]
        assert [m.ref for sa in model.sas.values() for m in sa.messages] == \
            [m.ref for sa in one.sas.values() for m in sa.messages]

    capture.prestart(str(path), EspTable.of(4500, DEFAULT))
    assert len(helpers) == 1 and capture._early is not None
    same(read_captures([str(path)]).model)  # taken over: no second helper
    assert len(helpers) == 1 and capture._early is None and helpers[0].poll() is not None

    capture.prestart(str(path), EspTable.of(4501, DEFAULT))  # another NAT-T port: another ESP table than the read's
    early = helpers[-1]
    same(read_captures([str(path)], Options(natt_port=4500)).model)
    assert len(helpers) == 3 and early.returncode is not None and capture._early is None

    capture.prestart(str(path), EspTable.of(4500, DEFAULT))  # never read: ended at exit (atexit runs it too)
    assert capture._early is not None
    capture.cancel_prestart()
    assert helpers[-1].returncode is not None and capture._early is None

    capture.prestart(str(path), EspTable.of(4500, DEFAULT))  # the file grows before the read: not the same file
    early = helpers[-1]
    grown = tmp_path / "grown.pcap"
    grown.write_bytes(path.read_bytes())
    data = path.read_bytes()
    with open(path, "ab") as f:  # its first record once more
        f.write(data[24 : 40 + struct.unpack_from("<I", data, 32)[0]])
    more = read_captures([str(path)])
    assert early.returncode is not None and len(helpers) == 6
    monkeypatch.setattr(capture, "PARALLEL_MIN", 1 << 60)
    alone = read_captures([str(path)])
    assert more.infos[0].packets == alone.infos[0].packets == 20001 and more.infos[0].warning is None
    assert more.model.stats == alone.model.stats
    path.write_bytes(grown.read_bytes())
    monkeypatch.setattr(capture, "PARALLEL_MIN", 0)

    fifo = tmp_path / "fifo"  # a named pipe is not opened (that would block until a writer came, then lose it)
    os.mkfifo(fifo)
    done = threading.Thread(target=capture.prestart, args=(str(fifo), EspTable.of(4500, DEFAULT)), daemon=True)
    done.start()
    done.join(10)
    if done.is_alive():  # unblock it before failing
        with open(fifo, "wb"):
            pass
    assert not done.is_alive() and capture._early is None

    small = tmp_path / "small.pcap.gz"  # gzip, a file that is no capture, one too small: no helper
    small.write_bytes(gzip.compress(path.read_bytes()[:100000]))
    (tmp_path / "text").write_text("not a capture\n" * 10)
    for other in (small, tmp_path / "text", tmp_path / "missing"):
        capture.prestart(str(other), EspTable.of(4500, DEFAULT))
    monkeypatch.setattr(capture, "PARALLEL_MIN", 1 << 60)
    capture.prestart(str(path), EspTable.of(4500, DEFAULT))
    assert len(helpers) == 6 and capture._early is None

    def no_spool(job, esp):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(capture, "PARALLEL_MIN", 0)
    monkeypatch.setattr(capture, "_spawn", no_spool)  # no temporary file: the read will say so, not prestart
    capture.prestart(str(path), EspTable.of(4500, DEFAULT))
    assert len(helpers) == 6 and capture._early is None


@pytest.mark.parametrize("value", ["", "64M", "-1"])
def test_parallel_min_that_is_not_a_size_is_ignored(value):
    """IKEFLOW_PARALLEL_MIN (a knob for tests and benchmarks) set to something that is not a byte count
    leaves the default, rather than ending every read with a traceback."""
    env = dict(os.environ, IKEFLOW_PARALLEL_MIN=value, PYTHONPATH=str(Path(__file__).parents[1]))
    done = subprocess.run([sys.executable, "-c", "import ikeflow.sources.capture as c; print(c.PARALLEL_MIN)"],
                          env=env, capture_output=True, text=True, check=False)
    default = (64 if capture._compiled is None else 128) << 20  # (this process and that one import the same)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, str(default), "")


def test_compact_leaves_out_the_marks_that_change_nothing():
    """A helper's batch for the spool (`_compact`): a MARK record is left out only when more than HOLD records
    stay after it, none of them earlier; the first record always stays; the left-out times come in order."""
    from ikeflow.sources.capture import HOLD, MARK, Record, _compact

    n = HOLD + 10
    batch = [Record(i, 100.0 + i, MARK, b"", 60) for i in range(1, n + 1)]
    batch[3] = Record(4, 99.0, MARK, b"", 60)  # earlier than the one before it: after it nothing is earlier
    batch[5] = Record(6, 98.0, MARK, b"", 60)  # ... but this one is, so the fourth stays
    rows, dropped, last = _compact(batch)
    kept = [r[0] for r in rows]
    assert last == n and kept[0] == 1 and 4 in kept and 6 not in kept
    assert kept[-(HOLD + 1):] == list(range(n - HOLD, n + 1))  # the last HOLD+1 stay
    assert len(rows) + len(dropped) == n and dropped == sorted(dropped) and 98.0 in dropped
    assert _compact([]) == ([], [], None)


def test_two_cores_count_late_frames_of_tagged_flows_as_without_compact(tmp_path, monkeypatch):
    """Tagged and IPv6 ESP counted by the helper is spooled without most of its MARK records (`_compact`):
    the frames too late to be put back in order, the time steps back and everything else are what the
    helper gives with every MARK record, byte for byte in the JSON."""
    from click.testing import CliRunner
    from ikeflow.cli import main

    frames, t = [], 1000.0
    tagged = lambda p: bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=7) / p)
    for i in range(1, 4001):
        t += 0.001
        if i % 700 == 0:
            t -= 1.5  # far back: more than HOLD frames earlier
        if i % 333 == 0:
            t -= 0.05  # a little back: put back in order
        if i % 50 == 0:
            pkt = tagged(ike())
        elif i % 3 == 0:
            pkt = tagged(IPv6(src=V6A, dst=V6B) / ESP(spi=0x701, seq=i // 3, data=b"v" * 30))
        else:
            pkt = tagged(esp(i, spi=0x702 + i % 2))
        frames.append((t, pkt))
    path = tmp_path / "t.pcap"
    path.write_bytes(pcap(frames))
    monkeypatch.setattr(capture, "PARALLEL_MIN", 0)
    monkeypatch.setattr(capture, "_cpus", lambda: 2)
    out = []
    every_mark = ("import ikeflow.sources.capture as c\n"
                  "c._compact = lambda b: ([(r.ref, r.time, r.linktype, r.data, r.wirelen) for r in b], [],"
                  " b[-1].ref if b else None)\nc._helper()")
    for helper in (capture.HELPER, every_mark):
        monkeypatch.setattr(capture, "HELPER", helper)
        done = CliRunner().invoke(main, ["read", "--json", str(path)])
        out.append((done.exit_code, done.output))
    assert out[0] == out[1]
    quality = json.loads(out[0][1])["capture"]["files"][0]["quality"]
    assert quality["out_of_order"] > 0 and quality["time_back"] > 0, quality
