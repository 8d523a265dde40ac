"""Properties on hostile input (hypothesis): the decoders never raise on any bytes, and the model,
the diagnosis and both reports never raise on any sequence of frames, whose stats add up."""

import io
import struct

from hypothesis import HealthCheck, given, settings, strategies as st
from rich.console import Console
from scapy.layers.isakmp import ISAKMP_payload_Proposal, ISAKMP_payload_SA, ISAKMP_payload_Transform
from scapy.contrib.ikev2 import IKEv2_Proposal, IKEv2_SA, IKEv2_Transform

from ikeflow.decode import names, packet as pk
from ikeflow.model.analysis import Analyzer
from ikeflow.pipeline import Options, Pipeline
from ikeflow.sources.capture import FileInfo
from ikeflow.decode.ike import decode_isakmp
from ikeflow.limits import DEFAULT, Limits
from ikeflow.decode.proposals import summarize_sa
from ikeflow.render.read_json import MessageSpool, build, write
from ikeflow.render.read_terminal import render

LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]
KINDS = {pk.IKE, pk.ESP, pk.AH, pk.KEEPALIVE, pk.ICMP, pk.FRAGMENT, pk.MALFORMED, pk.SKIPPED}
FAST = settings(max_examples=200, deadline=None)
TINY = Limits(peer_pairs=2, ike_sas=2, esp_flows=2, fragment_buffers=2, fragments_per_datagram=4, fragment_timeout=1.0,
              incomplete_listed=1, icmp_per_pair=1)  # every cap reached by a few frames
SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- building blocks: small sets, so that messages collide into the same SAs and flows --------------

ADDRS = [bytes([192, 0, 2, 1]), bytes([203, 0, 113, 2]), bytes([198, 51, 100, 3])]
SPIS = [b"\x11" * 8, b"\x22" * 8, b"\0" * 8]  # IKE SPIs (the SA is keyed by the first)
V1_SA = bytes(ISAKMP_payload_SA(prop=ISAKMP_payload_Proposal(trans=ISAKMP_payload_Transform(transforms=[
    ("Encryption", "AES-CBC"), ("KeyLength", 128), ("Hash", "SHA"), ("GroupDesc", "2048MODPgr"),
    ("Authentication", "PSK"), ("LifeType", "Seconds"), ("LifeDuration", 28800)]))))[4:]
V2_SA = bytes(IKEv2_SA(prop=IKEv2_Proposal(trans=IKEv2_Transform(transform_type="Encryption", transform_id=12)
                                           / IKEv2_Transform(transform_type="PRF", transform_id=2)
                                           / IKEv2_Transform(transform_type="Integrity", transform_id=2)
                                           / IKEv2_Transform(transform_type="GroupDesc", transform_id=14))))[4:]
NAT_T_VID = bytes.fromhex("4a131c81070358455c5728f20e95452f")
BODIES = {  # payload type -> typical bodies
    1: [V1_SA], 33: [V2_SA], 4: [b"k" * 128], 34: [b"\x00\x0e\x00\x00" + b"k" * 64], 10: [b"n" * 16], 40: [b"n" * 16],
    5: [b"\x01\x11\x01\xf4\xc0\x00\x02\x01"], 35: [b"\x02\x00\x00\x00gw.example"], 36: [b"\x01\x00\x00\x00\xcb\x00\x71\x02"],
    11: [struct.pack(">IBBH", 1, 1, 0, t) for t in (14, 24, 36136)],
    41: [struct.pack(">BBH", 0, 0, t) + d
         for t, d in ((17, b"\x00\x0e"), (16390, b"c" * 16), (14, b""), (24, b""), (16389, b"x" * 20))],
    13: [NAT_T_VID], 43: [NAT_T_VID], 20: [b"d" * 20], 130: [b"d" * 20], 46: [b"e" * 80], 53: [b"\x00\x01\x00\x02" + b"e" * 40],
    12: [struct.pack(">IBBH", 1, 3, 16, 1) + b"s" * 16], 42: [b"\x01\x00\x00\x00"],
    44: [b"\x01\x00\x00\x00\x07\x00\x00\x10\x00\x00\xff\xff\xc0\x00\x02\x00\xc0\x00\x02\xff"],
}
PAYLOAD_TYPES = sorted(BODIES) + [0, 8, 39, 47, 48, 132, 200]


@st.composite
def ike_message(draw) -> bytes:
    version = draw(st.sampled_from([1, 2, 2]))
    payloads = draw(st.lists(st.tuples(st.sampled_from(PAYLOAD_TYPES), st.booleans(), st.binary(max_size=24)), max_size=5))
    chain = b""
    for i, (ptype, typical, raw) in enumerate(payloads):
        body = draw(st.sampled_from(BODIES[ptype])) if typical and ptype in BODIES else raw
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        chain += struct.pack(">BBH", nxt, 0, 4 + len(body)) + body
    first = payloads[0][0] if payloads else 0
    exchange = draw(st.sampled_from([2, 4, 5, 6, 32, 34, 35, 36, 37, 43, 0, 255]))
    flags = draw(st.sampled_from([0, 1, 2, 3, 0x08, 0x20, 0x28, 0xFF]))
    header = struct.pack(">8s8sBBBBII", draw(st.sampled_from(SPIS[:2])), draw(st.sampled_from(SPIS)), first, version << 4,
                         exchange, flags, draw(st.sampled_from([0, 1, 2, 3, 32, 0xFFFFFFFF])), 28 + len(chain))
    return header + chain


def ipv4(src: bytes, dst: bytes, proto: int, body: bytes, ident: int = 1, frag: int = 0) -> bytes:
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, frag, 64, proto, 0, src, dst) + body


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data


def ipv6(src: bytes, dst: bytes, proto: int, body: bytes) -> bytes:
    v6 = lambda a: b"\x20\x01" + a * 3 + b"\0\0"  # noqa: E731
    return struct.pack(">IHBB16s16s", 0x60000000, len(body), proto, 64, v6(src), v6(dst)) + body


@st.composite
def ike_datagram(draw, v6: bool = False) -> bytes:
    src, dst = draw(st.permutations(ADDRS))[:2]
    sport, dport = draw(st.sampled_from([500, 4500, 1025])), draw(st.sampled_from([500, 4500]))
    marker = b"\0\0\0\0" if 4500 in (sport, dport) and draw(st.booleans()) else b""
    ip = ipv6 if v6 and draw(st.booleans()) else ipv4
    return ip(src, dst, 17, udp(sport, dport, marker + draw(ike_message())))


@st.composite
def esp_datagram(draw) -> bytes:
    src, dst = draw(st.permutations(ADDRS))[:2]
    esp = struct.pack(">II", draw(st.sampled_from([0, 0x1234, 0xC0FFEE])), draw(st.integers(0, 5))) + b"p" * 16
    return ipv4(src, dst, 50, esp) if draw(st.booleans()) else ipv4(src, dst, 17, udp(4500, 4500, esp))


@st.composite
def frames(draw) -> list[bytes]:
    """One frame, or several: the fragments of an IKE datagram (some maybe lost or duplicated)."""
    kind = draw(st.sampled_from(["ike", "ike", "ike", "esp", "fragments", "icmp", "keepalive", "garbage"]))
    if kind == "ike":
        return [draw(ike_datagram(v6=True))]
    if kind == "esp":
        return [draw(esp_datagram())]
    if kind == "keepalive":
        src, dst = draw(st.permutations(ADDRS))[:2]
        return [ipv4(src, dst, 17, udp(4500, 4500, b"\xff"))]
    if kind == "garbage":
        return [draw(st.binary(max_size=60))]
    whole = draw(ike_datagram())
    if kind == "icmp":
        quoted = whole[: draw(st.integers(20, len(whole)))]
        return [ipv4(ADDRS[2], whole[12:16], 1, struct.pack(">BBHI", draw(st.sampled_from([3, 11, 0])), 3, 0, 0) + quoted)]
    body, size = whole[20:], draw(st.sampled_from([8, 16, 64]))
    ident = draw(st.integers(1, 3))
    parts = [ipv4(whole[12:16], whole[16:20], 17, body[o : o + size], ident,
                  (o // 8) | (0x2000 if o + size < len(body) else 0)) for o in range(0, len(body), size)]
    return draw(st.lists(st.sampled_from(parts), min_size=1, max_size=len(parts) + 2)) if draw(st.booleans()) else parts


def run(datagrams: list[bytes], times: list[float], limits: Limits = DEFAULT) -> Analyzer:
    """The steps of `ikeflow read` after reading, on raw-IP frames; checks the stats add up."""
    spool = MessageSpool(1)
    pipeline = Pipeline(Options(limits=limits), [spool.add])
    pipeline.source(FileInfo("x.pcap", "pcap", [101], len(datagrams), times[0] if times else None,
                             max(times, default=None)))
    for n, (data, ts) in enumerate(zip(datagrams, times), 1):
        pipeline.frame(n, ts, 101, data, len(data))
    r = pipeline.conclude()
    an = r.model
    write(io.StringIO(), build(an, r.infos, r.findings, r.verdicts), spool)
    spool.file.close()
    render(Console(file=io.StringIO(), width=120, no_color=True), an, r.infos, r.findings, r.verdicts)
    s = an.stats
    assert s.packets == s.ike + s.esp + s.ah + s.keepalives + s.icmp + s.fragments + s.malformed + s.skipped
    return an


# -- decoders ---------------------------------------------------------------------------------------


@FAST
@given(st.sampled_from(LINKTYPES), st.binary(max_size=120))
def test_decode_never_raises(linktype, data):
    assert pk.decode(linktype, data).kind in KINDS


@FAST
@given(st.one_of(ike_datagram(), esp_datagram()), st.integers(0, 80), st.binary(min_size=1, max_size=4))
def test_decode_ip_never_raises_on_damaged_datagrams(ip, at, junk):
    damaged = ip[:at] + junk + ip[at + len(junk):]
    for data in (damaged, damaged[: at + 1], b"\x60" + damaged[1:]):
        assert pk.decode_ip(data).kind in KINDS


@FAST
@given(st.one_of(st.binary(max_size=100), ike_message(), ike_message().map(lambda m: m[: len(m) // 2])))
def test_decode_isakmp_never_raises(data):
    msg = decode_isakmp(data)
    (msg.exchange, msg.notifies, msg.encrypted, msg.initiator, msg.response, msg.commit)
    for p in msg.payloads:
        if p.name == "SA":
            summarize_sa(p)


@FAST
@given(st.binary(max_size=40), st.integers(0, 1 << 16), st.sampled_from([1, 2, 3]))
def test_names_never_raise(vid, n, version):
    names.vendor_name(vid)
    for name in (names.exchange_name, names.payload_name, names.notify_name,
                 names.protocol_name, names.id_type_name):
        name(version, n)
    names.group_name(n)
    names.v2_transform_name(version, n)
    names.v1_transform_name(version, n)


# -- model, diagnosis, reports ----------------------------------------------------------------------


@SLOW
@given(st.lists(frames(), max_size=12), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=12),
       st.lists(st.sampled_from([0.0, 0.001, 0.5, 2.0, 40.0, -1.0]), min_size=1, max_size=20), st.sampled_from([DEFAULT, TINY]))
def test_analysis_and_reports_never_raise_and_stats_add_up(groups, again, steps, limits):
    """Frames in any order, some sent again byte for byte (retransmissions), at odd intervals;
    with the default caps and with caps so small that every one of them turns entries away."""
    datagrams = [d for g in groups for d in g]
    for i, at in again if datagrams else []:
        datagrams.insert(at % (len(datagrams) + 1), datagrams[i % len(datagrams)])
    times, t = [], 1000.0
    for i in range(len(datagrams)):
        t += steps[i % len(steps)]
        times.append(t)
    run(datagrams, times, limits)


def _mostly_in_order(draw_ops):
    """Sequence numbers 1..n in order with a few drawn duplicates, swaps and losses."""
    n, ops = draw_ops
    seqs = list(range(1, n + 1))
    for at, kind in ops:
        at %= len(seqs)
        if kind == 0:
            seqs.insert(at, seqs[at])  # a duplicate
        elif kind == 1 and at + 1 < len(seqs):
            seqs[at], seqs[at + 1] = seqs[at + 1], seqs[at]  # two swapped
        elif kind == 2 and len(seqs) > 2:
            del seqs[at]  # lost
        elif kind == 3:
            seqs.insert(at, seqs[at] + 200)  # one from far ahead
    return seqs


_SEQS = st.one_of(
    st.lists(st.integers(min_value=1, max_value=400), min_size=2, max_size=300),
    st.tuples(st.integers(min_value=2, max_value=700),
              st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=3)),
                       max_size=12)).map(_mostly_in_order),
)


@settings(max_examples=600, deadline=None)
@given(_SEQS, st.data())
def test_esp_counted_in_two_stretches_equals_one(seqs, data):
    """A flow counted by two readers over two stretches of a capture and merged (a two-core read) has
    the duplicates, reordering, losses and sequence numbers of one reader's count, also when duplicates
    and reordering straddle the seam (EspTable.merge judges the later stretch's first sequence numbers
    after the earlier's)."""
    from ikeflow.model.esp import WINDOW, EspTable

    cut = data.draw(st.integers(min_value=1, max_value=len(seqs) - 1))
    dst = b"\xc6\x33\x64\x01"
    key = int.from_bytes(dst, "big") << 32 | 0x1234

    def count(table, part, start):
        for i, seq in enumerate(part, start):
            table.add(key, "esp", 0, 0, b"\xc0\x00\x02\x01", dst, seq, 100, float(i), i + 1)

    one, first, later = EspTable(), EspTable(), EspTable()
    count(one, seqs, 0)
    count(first, seqs[:cut], 0)
    count(later, seqs[cut:], cut)
    first.merge(later.flows, 0)
    f, g = one.flows[key], first.flows[key]
    fields = ("packets", "bytes", "seq_min", "seq_max", "duplicates", "reordered", "lost", "last_frame")
    if later.flows[key].early is False or max(seqs[:cut]) - seqs[cut] >= WINDOW:
        return  # more out-of-order packets than a flow notes, or a stretch that starts a window back: the sum
    assert [getattr(g, n) for n in fields] == [getattr(f, n) for n in fields]
