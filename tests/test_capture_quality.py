"""Capture quality: frames captured twice, cut by the snap length, out of time order, without timestamps.

Real captures where the corpus has them (suricata-verify's duplicated capture, nDPI's merged one, tcpdump's
zero-time one), lab captures made worse the way a capture goes wrong (routed twice through `tcpdump -i any`,
cut with a snap length, shuffled, timestamps dropped), and small scapy-built cases for the edges.
"""

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_SA
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import RawPcapReader

import ikeflow.sources.capture as capture
from conftest import PCAPS, need_public
from ikeflow.diagnose import capture_quality
from ikeflow.diagnose.finding import INFO, WARNING
from ikeflow.pipeline import COPY, Pipeline, read_captures
from ikeflow.sources.capture import FileInfo

LAB = PCAPS / "lab"
A, B = "192.0.2.1", "203.0.113.5"
SLL2_IN, SLL2_OUT = 0, 4  # packet types of a Linux cooked v2 header: to this host, sent by it


def pcap(records, linktype=1, snaplen=262144) -> bytes:
    """A classic pcap file; records are (time, bytes) or (time, bytes, length on the wire)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for t, data, *wire in records:
        sec = int(t)
        out.append(struct.pack("<IIII", sec, round((t - sec) * 1e6), len(data), wire[0] if wire else len(data)) + data)
    return b"".join(out)


def pcapng(records, linktype=1) -> bytes:
    """A pcapng file with one interface (microseconds); records as for pcap()."""
    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)), block(1, struct.pack("<HHI", linktype, 0, 0))]
    for t, data, *wire in records:
        us = round(t * 1e6)
        head = struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(data), wire[0] if wire else len(data))
        out.append(block(6, head + data))
    return b"".join(out)


def lab(name: str) -> list[tuple[float, bytes]]:
    """The frames of a lab capture, read with scapy (not with the reader under test)."""
    return [(meta.sec + meta.usec / 1e6, data) for data, meta in RawPcapReader(str(LAB / name))]


def read(tmp_path, blob: bytes, name="c.pcap"):
    p = tmp_path / name
    p.write_bytes(blob)
    return read_captures([str(p)])


def codes(result, code):
    return [f for f in result.findings if f.code == code]


def adds_up(result) -> bool:
    s = result.model.stats
    return s.packets == s.ike + s.esp + s.ah + s.keepalives + s.icmp + s.fragments + s.malformed + s.skipped


def eth(pkt) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt)


def ike(msgid=0):
    return IP(src=A, dst=B) / UDP(sport=500, dport=500) / ISAKMP(init_cookie=b"\x11" * 8, exch_type=34, flags=8,
                                                                   id=msgid) / ISAKMP_payload_SA()


def esp(seq, data=b"x" * 40):
    return IP(src=A, dst=B) / ESP(spi=0x1234, seq=seq, data=data)


def ladder(result) -> list[tuple]:
    return [(sa.ispi, m.ref, m.label, m.retransmission) for sa in result.model.sas.values() for m in sa.messages]


def labels(result) -> list[tuple]:
    """The ladder without frame numbers: what each message was taken for."""
    return [(label, resent) for *_, label, resent in ladder(result)]


# -- capture-duplicates ------------------------------------------------------------------------------------------


def test_every_packet_twice_in_a_real_capture():
    """suricata-verify's detect-bypass-udp has each frame twice, byte for byte, 1-29 µs apart."""
    path = need_public() / "suricata-verify/tests/detect-bypass-udp/input.pcap"
    result = read_captures([str(path)])
    q = result.infos[0].quality
    assert (q.copies, q.routed, q.copy_frames[:3]) == (33, 0, [2, 4, 6])
    s = result.model.stats
    assert (s.packets, s.ike, s.skipped, result.model.skipped[COPY]) == (66, 33, 33, 33) and adds_up(result)
    assert not any(m.retransmission for sa in result.model.sas.values() for m in sa.messages)
    assert not codes(result, "retransmissions")
    [f] = codes(result, "capture-duplicates")
    assert f.severity == WARNING and f.frames == q.copy_frames and "33 of 66 frames captured twice" in f.summary


def routed_twice(frames: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """What `tcpdump -i any` on the router in between records: each IP packet on its way in, then 40 µs later
    on its way out with the TTL one lower (Linux cooked v2 headers: packet type and interface differ)."""
    out = []
    for t, frame in frames:
        pkt = Ether(frame)[IP]
        routed = pkt.copy()
        routed.ttl -= 1
        del routed.chksum
        for when, ptype, iface, ip in ((t, SLL2_IN, 2, pkt), (t + 40e-6, SLL2_OUT, 3, routed)):
            sll2 = struct.pack(">HHIHBB6sxx", 0x0800, 0, iface, 1, ptype, 6, b"\x02\0\0\0\0\x01")
            out.append((when, sll2 + bytes(ip)))
    return out


@pytest.mark.parametrize("name", ["ikev2-ok", "ikev1-main-ok", "ikev2-responder-down"])
def test_tcpdump_any_on_a_router_reads_as_one_interface(tmp_path, name):
    """Every packet captured before and after the router (TTL changed): the analysis is that of the plain capture,
    retransmissions (ikev2-responder-down resends IKE_SA_INIT ~0.5 s apart) stay retransmissions."""
    frames = lab(f"{name}.inside.pcap")
    plain = read(tmp_path, pcap(frames), "plain.pcap")
    twice = read(tmp_path, pcap(routed_twice(frames), linktype=276), "any.pcap")
    q = twice.infos[0].quality
    assert q.copies == q.routed == len(frames) and twice.model.stats.skipped == len(frames) and adds_up(twice)
    assert labels(twice) == labels(plain)
    assert twice.verdicts == plain.verdicts
    assert plain.infos[0].quality.copies == 0
    assert "TTL changed" in codes(twice, "capture-duplicates")[0].summary


@pytest.mark.parametrize("gap, copy", [(5e-6, True), (0.0019, True), (0.0025, False), (0.5, False)])
def test_a_copy_is_close_a_retransmission_is_not(tmp_path, gap, copy):
    """The same IP datagram again: within 2 ms a copy, later a retransmission (daemons wait 0.5 s or more)."""
    frame = eth(ike())
    result = read(tmp_path, pcap([(100.0, frame), (100.0 + gap, frame)]))
    assert result.infos[0].quality.copies == copy
    assert [m.retransmission for sa in result.model.sas.values() for m in sa.messages] == [False] + [True] * (not copy)


def test_only_the_same_ip_datagram_is_a_copy(tmp_path):
    """Another IP ID, or a repeated frame that is not IP at all (ARP), is not a copy; VLAN tags are walked."""
    other_id = ike()
    other_id.id = 7
    arp = bytes.fromhex("ffffffffffff020000000001080600010800060400010200000000010a0000010000000000000a000002")
    tagged = bytes(Ether() / Dot1Q(vlan=10) / ike())
    result = read(tmp_path, pcap([(1.0, eth(ike())), (1.0001, eth(other_id)), (2.0, arp), (2.0001, arp),
                                  (3.0, tagged), (3.0001, tagged)]))
    q = result.infos[0].quality
    assert (q.copies, q.copy_frames) == (1, [6]) and adds_up(result)


def test_esp_copies_on_the_fast_path(tmp_path):
    """The reader's inline ESP path drops copies as the decoder's path does; a replay with other bytes (the same
    sequence number) is an ESP duplicate, not a copy."""
    frames = []
    for seq in range(1, 21):
        frames += [(seq * 0.1, eth(esp(seq))), (seq * 0.1 + 3e-6, eth(esp(seq)))]
    frames.append((3.0, eth(esp(20, data=b"y" * 40))))
    fast = read(tmp_path, pcap(frames))
    p = Pipeline()
    p.read([str(tmp_path / "c.pcap")], esp_fast=False)
    general = p.conclude()
    for result in (fast, general):
        [flow] = result.model.esp.flows.values()
        assert (flow.packets, flow.duplicates, result.infos[0].quality.copies) == (21, 1, 20)
        assert result.model.stats.esp == 21 and result.model.stats.skipped == 20 and adds_up(result)


# -- the same facts from every reader ---------------------------------------------------------------------------


def messy() -> list[tuple]:
    """Frames with copies, cut frames, steps back in time and equal timestamps, over ESP and IKE."""
    out, t = [], 1000.0
    for i in range(1, 3001):
        t += 0.001
        pkt = ike(i) if i % 40 == 0 else esp(i)
        frame = eth(pkt)
        when = t - 0.5 if i % 500 == 0 else t  # time goes back
        if i % 300 == 0:
            out.append((when, eth(esp(10 ** 6 + i))))  # the frame after it has the same time
        if i % 97 == 0:
            out.append((when, frame[:60], len(frame)))  # cut by a snap length
        else:
            out.append((when, frame))
        if i % 7 == 0:
            out.append((when + 1e-6, frame))  # a copy
    return out


FACTS = ("copies", "copy_frames", "cut", "cut_frames", "cut_at", "back", "back_frames", "back_most", "same_time",
         "zero_time", "earliest", "latest")


def facts(result) -> tuple:
    q = result.infos[0].quality
    values = (getattr(q, name) for name in FACTS)
    return tuple(round(v, 6) if isinstance(v, float) else v for v in values), result.model.stats, ladder(result)


def test_every_reader_counts_the_same(tmp_path, monkeypatch):
    """Mapped pcap, pcap through gzip (streamed in small chunks), two cores, pcapng and live frame by frame."""
    records = messy()
    mapped = facts(read(tmp_path, pcap(records), "m.pcap"))
    q = mapped[0]
    assert q[0] == sum(i % 7 == 0 and i % 97 != 0 for i in range(1, 3001))  # a cut frame's copy is whole: no copy
    assert (q[2], q[5], q[8]) == (3000 // 97, 6, 10)
    monkeypatch.setattr(capture, "CHUNK", 5000)
    assert facts(read(tmp_path, gzip.compress(pcap(records)), "s.pcap.gz")) == mapped
    monkeypatch.setattr(capture, "_cpus", lambda: 2)
    monkeypatch.setattr(capture, "MAPPED_SPAN", 4096)
    monkeypatch.setattr(capture, "PARALLEL_MIN", 0)
    for share in (0.1, 0.35, 0.5):  # seams at other frames (0.1: a copy right across it)
        monkeypatch.setattr(capture, "PARENT_SHARE", {"pcap": share, "pcapng": share})
        assert facts(read(tmp_path, pcap(records), "p.pcap")) == mapped, share
        assert facts(read(tmp_path, pcapng(records), "n.pcapng")) == mapped, share
    live = Pipeline()
    live.source(FileInfo("eth0 (live)", "live", [1]))
    for ref, (t, data, *wire) in enumerate(records, 1):
        live.frame(ref, t, 1, data, wire[0] if wire else len(data))
    live.infos[0].packets = len(records)
    got = facts(live.conclude())
    assert got[0] == mapped[0] and got[1] == mapped[1]  # live feeds frames as they come: no time order


# -- capture-snaplen ------------------------------------------------------------------------------------------------


def cut(frames: list[tuple[float, bytes]], snaplen: int) -> list[tuple]:
    """`tcpdump -s SNAPLEN`: each frame's first bytes, with its length on the wire."""
    return [(t, data[:snaplen], len(data)) for t, data in frames]


def test_cut_by_the_snap_length_is_not_loss(tmp_path):
    """ikev2-fragments-dropped (IKE_AUTH in IP fragments) cut at 200 bytes: the finding says what the cut hides."""
    frames = lab("ikev2-fragments-dropped.inside.pcap")
    result = read(tmp_path, pcap(cut(frames, 200), snaplen=200))
    q = result.infos[0].quality
    assert (q.cut, q.cut_at) == (sum(len(d) > 200 for _, d in frames), 200) and adds_up(result)
    [f] = codes(result, "capture-snaplen")
    assert f.severity == WARNING and f.frames == q.cut_frames
    assert "IKE messages cut" in f.summary and "not lost on the path" in f.summary
    files = result.infos
    incomplete = result.model.reassembler.incomplete
    assert incomplete and all(capture_quality.cut(files, d["frames"]) for d in incomplete)
    whole = read(tmp_path, pcap(frames), "whole.pcap")
    assert not codes(whole, "capture-snaplen") and not capture_quality.cut(whole.infos, [1, 2, 3])


def test_cut_ike_messages_of_a_real_tunnel(tmp_path):
    """ikev2-ok cut at 200 bytes: four IKE messages cut, ESP counted in full."""
    frames = lab("ikev2-ok.inside.pcap")
    whole = read(tmp_path, pcap(frames), "whole.pcap")
    result = read(tmp_path, pcap(cut(frames, 200), snaplen=200))
    [f] = codes(result, "capture-snaplen")
    assert "4 IKE messages cut" in f.summary and "ESP is counted in full" in f.summary
    assert result.model.stats.esp == whole.model.stats.esp
    assert [fl.bytes for fl in result.model.esp.flows.values()] == [fl.bytes for fl in whole.model.esp.flows.values()]


# -- capture-order ----------------------------------------------------------------------------------------------------


def test_time_going_back_in_a_real_capture():
    """nDPI's ipsec_isakmp_esp.pcap was put together flow by flow: an SA's IKE_SA_INIT comes after its IKE_AUTH
    in the file, 14 s earlier in time.  The ladder is in time order; the capture's span is the whole of it."""
    path = need_public() / "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap"
    result = read_captures([str(path)])
    q = result.infos[0].quality
    assert (q.back, q.back_frames[:3], q.late) == (10, [16, 77, 104], 0)
    sa = result.model.sas[(2, bytes.fromhex("01906191e2a59b03"))]
    assert [m.label for m in sa.messages][:5] == ["IKE_SA_INIT"] * 4 + ["IKE_AUTH"]
    for sa in result.model.sas.values():
        assert [m.time for m in sa.messages] == sorted(m.time for m in sa.messages)
    all_times = [meta.sec + meta.usec / 1e6 for _, meta in RawPcapReader(str(path))]
    assert result.infos[0].span() == pytest.approx((min(all_times), max(all_times)))
    [f] = codes(result, "capture-order")
    assert f.severity == WARNING and "analysed in time order" in f.summary


def shuffled(frames: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """Two interfaces merged badly: the second half of the capture written first."""
    half = len(frames) // 2
    return frames[half:] + frames[:half]


@pytest.mark.parametrize("name", ["ikev2-psk-mismatch", "ikev1-main-ok", "ikev2-responder-down"])
def test_a_shuffled_capture_reads_as_the_sorted_one(tmp_path, name):
    frames = lab(f"{name}.inside.pcap")
    plain = read(tmp_path, pcap(frames), "plain.pcap")
    result = read(tmp_path, pcap(shuffled(frames)))
    assert labels(result) == labels(plain)
    assert result.verdicts == plain.verdicts
    assert result.infos[0].quality.back == 1 and codes(result, "capture-order")


def test_too_far_out_of_order_is_said(tmp_path, monkeypatch):
    monkeypatch.setattr(capture, "HOLD", 1)
    monkeypatch.setattr(capture, "MAPPED_SPAN", 2000)  # small batches: the reader sorts a few frames at a time
    result = read(tmp_path, pcap(shuffled(lab("ikev2-responder-down.inside.pcap"))))
    q = result.infos[0].quality
    assert q.late > 0
    [f] = codes(result, "capture-order")
    assert f.severity == WARNING and f"{q.late} frames came too late to be put back in order" in f.summary


def test_timestamping_jitter_is_information(tmp_path):
    """Steps back of a few µs (several CPUs or NIC queues stamping) are no warning."""
    frames = [(1.0 + i * 0.01 - (i % 5 == 0) * 0.011, eth(esp(i))) for i in range(1, 30)]
    result = read(tmp_path, pcap(frames))
    [f] = codes(result, "capture-order")
    assert f.severity == INFO and result.infos[0].quality.back_most < 0.002


# -- capture-no-time --------------------------------------------------------------------------------------------------


def test_no_timestamps_in_a_real_capture():
    """tcpdump's isakmp4500.pcap has all 35 frames at time 0."""
    path = need_public() / "tcpdump/tests/isakmp4500.pcap"
    result = read_captures([str(path)])
    assert capture_quality.no_time(result.infos)
    [f] = codes(result, "capture-no-time")
    assert "all 35 frames carry the same timestamp (0: 1970-01-01)" in f.summary
    assert "retransmission intervals" in f.summary


@pytest.mark.parametrize("how, fires", [
    (lambda i, t: 0.0, True),  # no clock
    (lambda i, t: 1700000000.0, True),  # one time for all
    (lambda i, t: 0.0 if i % 4 else t, True),  # most at 0
    (lambda i, t: t, False),
])
def test_no_time(tmp_path, how, fires):
    frames = [(how(i, t), data) for i, (t, data) in enumerate(lab("ikev2-responder-down.inside.pcap"))]
    result = read(tmp_path, pcap(frames))
    assert capture_quality.no_time(result.infos) == fires and bool(codes(result, "capture-no-time")) == fires
    assert adds_up(result) and result.model.stats.ike == 4


def test_one_frame_is_not_a_clock_problem(tmp_path):
    result = read(tmp_path, pcap([(0.0, eth(ike()))]))
    assert not capture_quality.no_time(result.infos)
    assert not [f for f in result.findings if f.code.startswith("capture-")]


# -- JSON -------------------------------------------------------------------------------------------------------------


def test_json_capture_files_quality(tmp_path):
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap([(5.0, eth(ike())), (5.000002, eth(ike())), (4.0, eth(esp(1))[:50], 82)]))
    doc = json.loads(subprocess.run([sys.executable, "-m", "ikeflow", "read", "--json", str(p)], capture_output=True,
                                    cwd=Path(__file__).resolve().parents[1]).stdout)
    assert doc["capture"]["files"][0]["quality"] == {
        "duplicates": 1, "duplicate_frames": [2], "routed_duplicates": 0, "cut": 1, "snaplen": 50, "cut_frames": [3],
        "time_back": 1, "time_back_frames": [3], "time_back_max": pytest.approx(1.000002), "out_of_order": 0,
        "same_time": 0, "zero_time": 0, "no_time": False}
    assert (doc["capture"]["first_time"], doc["capture"]["last_time"]) == (4.0, pytest.approx(5.000002))
    assert doc["skipped"] == {COPY: 1}
    assert {f["code"] for f in doc["findings"]} >= {"capture-duplicates", "capture-snaplen", "capture-order"}
