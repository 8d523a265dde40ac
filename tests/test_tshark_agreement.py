"""ikeflow against tshark (Wireshark 4.0 dissectors) on every capture of the public corpus.

For each capture that MANIFEST.json lists (including the members unpacked from
the wiki .tgz archives), `ikeflow read --json` runs in-process and tshark runs
once (PDML, see tshark_oracle.py).  The test then checks:

1. ikeflow reads it without a traceback (exit 0 or 1; exit 2 only for a file
   that is not a capture, with a one-line error and tshark failing too), its
   stats add up (packets = ike + esp + ah + keepalives + icmp + fragments +
   malformed + skipped) and packets equals tshark's frame count;
2. for every frame that either tool shows as an ISAKMP message: ispi, rspi,
   major version, exchange type, message ID, the flags (IKEv1 E and C,
   IKEv2 I and R; IKEv2 "encrypted" = an SK/SKF payload at the top level),
   the top-level payload types in wire order, the notify types of the
   top-level Notify payloads, NAT-T (UDP 4500 + non-ESP marker = tshark's
   udpencap dissector), addresses and ports, the IP fragments the message was
   reassembled from, and whether the message is malformed;
3. for every ESP flow (source, destination, SPI): packets, lowest, highest and
   first sequence number, first and last frame, and the encapsulation
   (IP protocol 50 or UDP) from tshark's esp.spi/esp.sequence;
4. NAT-keepalives per sender (udpencap.nat_keepalive) and the ICMP errors
   that quote IKE/ESP (tshark: an isakmp, esp, udpencap or UDP 500/4500 layer
   nested in an icmp/icmpv6 node), frame by frame.

One modelling rule is applied to both sides, not a tolerance: an IKEv1 message
with the E flag has no visible payloads; tshark lists none and names the
first one in isakmp.nextpayload, ikeflow lists one pseudo payload "ENC" whose
type is that next payload.  The tshark side is mapped to [nextpayload].

Every other difference must be listed, with the exact values on both sides,
either in ALLOWED (a legitimate difference: tshark is wrong, or the two
tools model the frame differently) or in KNOWN_BUGS (an ikeflow bug that the
module owners have to fix; such a capture is reported as xfail).  Entries that
no longer occur fail the test, so the tables cannot go stale.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

import tshark_oracle
from conftest import PUBLIC, need_public, need_tshark
from ikeflow.cli import main
from ikeflow.limits import DEFAULT
from ikeflow.sources.capture import FileInfo, scan, split_ref

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".gz")


def _captures() -> list[str]:
    manifest = PUBLIC / "MANIFEST.json"
    if not manifest.is_file():
        return []
    return [c["path"] for c in json.loads(manifest.read_text())["captures"]]


def _manifest() -> dict[str, dict]:
    return {c["path"]: c for c in json.loads((PUBLIC / "MANIFEST.json").read_text())["captures"]}


CAPTURES = _captures()

# --- differences that are not ikeflow bugs --------------------------------------------------
#
# (file, frame, field) -> (ikeflow value, tshark value, reason).  Frame is None for
# ESP flows.  The values must match exactly what the test computes, so an entry
# allows only this one difference.  Field "isakmp": does the frame carry an
# ISAKMP message (ikeflow: "message" or "no message", with its malformed reason;
# tshark: "ISAKMP" / "no ISAKMP").  Field "malformed": ikeflow's reason (or None) against
# whether tshark flagged the frame [Malformed Packet].

TCPDUMP = "tcpdump/tests/"
ZEEK_SPICY = "zeek-spicy-ipsec/tests/traces/"
FIRST_FRAGMENT = (
    "fuzzed tcpdump capture: the only fragment of the datagram is the first one (MF set, offset 0, the "
    "IP total length is far larger than the bytes captured), and it is never completed.  tshark does not "
    "reassemble a fragment that is not fully captured and dissects the first fragment's UDP payload on "
    "its own; ikeflow holds it for reassembly, gives up at the end and counts it in stats.fragments "
    "(it decodes complete datagrams only)")

ALLOWED: dict[tuple[str, int | None, str], tuple[object, object, str]] = {
    # tshark 4.0 does not dissect ISAKMP with a header length below 28 (it shows Data); ikeflow
    # lists the frame as malformed.
    (TCPDUMP + "isakmp-pointer-loop.pcap", 1, "isakmp"): (
        "message, malformed: header length 0 < 28", "no ISAKMP",
        "fuzzed 30-byte UDP 500 payload whose ISAKMP length field is 0: tshark refuses it "
        "(frame.protocols ends in udp:data), ikeflow decodes the header and marks the message malformed"),
    (ZEEK_SPICY + "ipsec-ikev1-zero-length.pcap", 1, "isakmp"): (
        "message, malformed: header length 0 < 28", "no ISAKMP",
        "crafted copy of a Main Mode MM1 with the ISAKMP length field set to 0 (bytes 24..27 of the UDP "
        "payload): tshark shows Data, ikeflow decodes the header and marks the message malformed"),
    # First fragments that are cut short and never completed.
    (TCPDUMP + "ikev1_id_ipv6_addr_subnet-oobr.pcap", 1, "isakmp"): ("no message", "ISAKMP", FIRST_FRAGMENT),
    (TCPDUMP + "isakmp-ikev1_n_print-oobr.pcap", 1, "isakmp"): ("no message", "ISAKMP", FIRST_FRAGMENT),
    (TCPDUMP + "isakmp-ikev1_n_print-oobr.pcap", 3, "isakmp"): ("no message", "ISAKMP", FIRST_FRAGMENT),
    (TCPDUMP + "isakmp-various-oobr.pcap", 1, "isakmp"): ("no message", "ISAKMP", FIRST_FRAGMENT),
    (TCPDUMP + "isakmpv1-attr-oobr.pcap", 1, "isakmp"): ("no message", "ISAKMP", FIRST_FRAGMENT),
    (TCPDUMP + "esp_truncated.pcap", None, "esp 0.254.92.182 > 255.127.255.121 spi c0f7d4c3"): (
        None, (1, None, None, None, 1, 1, "udp"),
        FIRST_FRAGMENT + "; tshark shows ESP-in-UDP with only the SPI (4 bytes of UDP payload captured, "
        "no sequence number)"),
    # IKE on UDP 4500 without the non-ESP marker: tshark reads the IKE SPI as an ESP SPI and sequence.
    ("openswan/tests/unit/xfrmmock/xf88-v1certQI1/v1certN3.pcap", None,
     "esp 192.168.0.1 > 93.184.216.34 spi 80010203"): (
        None, (1, 67438087, 67438087, 67438087, 1, 1, "udp"),
        "Openswan unit-test input: an IKEv1 message (initiator SPI 8001020304050607, version byte 0x10, an encrypted "
        "Main Mode message, ISAKMP length 1324 = the UDP payload length) sent to UDP 4500 without the non-ESP marker "
        "(RFC 3948 2.2); tshark takes the first 8 bytes for an ESP SPI and sequence number, ikeflow reports the "
        "frame as malformed (an IKE message without the marker) and counts no ESP"),
    # UDP length larger than the IP payload.
    (TCPDUMP + "isakmp-delete-segfault.pcap", 1, "isakmp"): (
        "no message, malformed: UDP length 456 does not fit the 146 bytes of the IP payload", "ISAKMP",
        "fuzzed: the UDP length field (456) exceeds the IP payload (146 bytes).  tshark flags the bad "
        "length (expert info) but dissects the 138 bytes anyway, as ISAKMP version 11.14, and throws "
        "[Malformed Packet]; ikeflow rejects the UDP header and lists the frame as malformed"),
    # tshark throws on IKEv1 payload 15, which it decodes as GDOI SA KEK (RFC 6407).
    (TCPDUMP + "ISAKMP_sa_setup.pcap", 3, "payload_types"): (
        [4, 10, 13, 13, 13, 13, 15, 15], [4, 10, 13, 13, 13, 13, 15],
        "MM3: the two 24-byte payloads of type 15 are NAT-D hashes of the draft-ietf-ipsec-nat-t-ike-02 "
        "era (racoon's ISAKMP_NPTYPE_NATD_BADDRAFT = 15): SHA-1(cookies | 10.0.0.2 | 500) = d5664a6f... "
        "and SHA-1(cookies | 10.0.0.1 | 500) = 6db4442c...  tshark decodes type 15 as GDOI SA KEK, reads "
        "a 19055-byte inner length and throws after the first one; the chain in the bytes has two"),
    (TCPDUMP + "ISAKMP_sa_setup.pcap", 3, "malformed"): (
        None, True, "same as the payload_types entry: tshark's GDOI SA KEK decoder throws on a NAT-D payload"),
    (TCPDUMP + "ISAKMP_sa_setup.pcap", 4, "payload_types"): (
        [4, 10, 13, 13, 13, 13, 15, 15], [4, 10, 13, 13, 13, 13, 15],
        "MM4: as frame 3 (type-15 NAT-D payloads, tshark's GDOI SA KEK decoder throws on the first)"),
    (TCPDUMP + "ISAKMP_sa_setup.pcap", 4, "malformed"): (
        None, True, "as frame 3: tshark's GDOI SA KEK decoder throws on a type-15 NAT-D payload"),
    # ikeflow is stricter than tshark about the payload chain and the header length.
    ("nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap", 192, "malformed"): (
        "payload 2 (IDi) missing: message ends at offset 812", False,
        "IKE_AUTH request whose only payload (type 127, 784 bytes) ends exactly at the header length "
        "812 but names IDi as the next payload: the chain is broken.  tshark stops at the length "
        "without complaint"),
    (TCPDUMP + "isakmp-no-none-np.pcapng", 1, "malformed"): (
        "payload 3 (N) missing: message ends at offset 84", False,
        "fuzzed: two 28-byte Notify payloads fill the 84-byte message but the second one's next "
        "payload is Notify again (the file's name: no NONE next payload); tshark stops at the length"),
    ("openswan/tests/unit/libpluto/lp08-parentR1/parentR1notify.pcap", 1, "malformed"): (
        "2 bytes after last payload", False,
        "header length 40, one 10-byte Notify (28 + 10 = 38): 2 bytes inside the message follow the "
        "last payload; tshark shows them as 'Extra data' without an error"),
    (TCPDUMP + "ikev2-id-normal.pcap", 1, "malformed"): (
        "39 bytes after last payload", False,
        "crafted: header length 76, one 9-byte IDi payload (28 + 9 = 37), 39 bytes of deadbeef follow "
        "inside the message; tshark shows them as 'Extra data' without an error"),
    (TCPDUMP + "ikev2-id-short.pcap", 1, "malformed"): (
        "payload 1 (IDi) ID header needs 4 bytes at offset 0, 1 left", False,
        "crafted: IDi payload length 5 leaves 1 byte for the 4-byte ID header; tshark reads the ID type "
        "and address past the payload's end (from the bytes after it) and does not flag it"),
    (ZEEK_SPICY + "ipsec-ikev1-payload-bad-length.pcap", 1, "payload_types"): (
        [1], [1, 13, 13],
        "crafted: the first Vendor ID payload has length 3 (< 4, its own generic header).  ikeflow stops "
        "the chain there (and reports it malformed); tshark shows that VID, steps 3 bytes on, dissects "
        "the following bytes as a second VID and then throws [Malformed Packet]"),
    # tshark only checks the structure; ikeflow also rejects unknown IKEv1 payload types, and the
    # other way round tshark knows the data a notify type should carry.
    ("libreswan/testing/pluto/replay-authip-01/weirdike-eastwest.pcap-ike.pcap", 1, "isakmp"): (
        "no message", "ISAKMP",
        "Microsoft AuthIP (exchange type 243, [MS-AIPS] 2.2.1) on UDP 500: not IKE, so ikeflow skips it "
        "with that reason; tshark dissects the ISAKMP header and shows the private-use payloads 133 and 135"),
    ("openswan/tests/unit/libpluto/lp08-parentR1/parentR1notify.pcap", 2, "malformed"): (
        None, True,
        "INVALID_KE_PAYLOAD notify without its 2-byte accepted-group data (payload length 8): tshark "
        "expects the group and throws; ikeflow decodes the generic Notify structure, which is intact"),
}

# --- ikeflow bugs (for the module owners; do not fix them by editing this table) -------------
#
# Same layout as ALLOWED.  A capture whose only differences are listed here is
# reported as xfail with the bug text; once the bug is fixed the entry no longer
# matches and the test fails until the entry is removed.

KNOWN_BUGS: dict[tuple[str, int | None, str], tuple[object, object, str]] = {}


# --- running the two tools ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def tshark_results(request):
    """tshark dissections of the captures this session tests, started in parallel up front."""
    need_public()
    tshark = need_tshark()
    wanted: list[str] = []
    for item in request.session.items:
        rel = getattr(item, "callspec", None) and item.callspec.params.get("rel")
        if rel and rel not in wanted:
            wanted.append(rel)
    tshark_oracle.environment()  # built here, before any worker thread runs
    pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))
    futures = {rel: pool.submit(tshark_oracle.dissect, tshark, PUBLIC / rel) for rel in wanted}

    def get(rel: str) -> tshark_oracle.Dissection:
        if rel not in futures:
            futures[rel] = pool.submit(tshark_oracle.dissect, tshark, PUBLIC / rel)
        return futures[rel].result()

    yield get
    pool.shutdown(wait=True, cancel_futures=True)


def run_ikeflow(path: Path):
    """`ikeflow read --json PATH` in-process: (exit code, parsed JSON or None, stderr)."""
    runner = CliRunner()
    result = runner.invoke(main, ["read", "--json", str(path)], env={"IKEFLOW_DEBUG": "1"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info))
        pytest.fail(f"ikeflow raised on {path}:\n{tb}")
    stderr = getattr(result, "stderr", "") or ""
    doc = json.loads(result.stdout) if result.exit_code in (0, 1) else None
    return result.exit_code, doc, stderr


# --- the comparison ----------------------------------------------------------------------------

def _flag(t: tshark_oracle.IsakmpMsg, name: str, bit: int) -> bool:
    """A flag as tshark's sub-field shows it, checked against the raw flags octet."""
    raw = bool(t.flags & bit)
    assert t.flag_bits.get(name, raw) == raw, f"frame {t.frame}: tshark isakmp.{name} disagrees with isakmp.flags"
    return t.flag_bits.get(name, raw)


def copies(path: Path) -> set[int]:
    """Frames ikeflow's reader drops as a copy of the frame before (capture-duplicates): the frames it
    does not hand on."""
    info = FileInfo(str(path))
    handed = {split_ref(r.ref)[1] for batch in scan(str(path), 0, info, None) for r in batch}
    return set(range(1, info.packets + 1)) - handed


def without(ts: tshark_oracle.Dissection, frames: set[int]) -> tshark_oracle.Dissection:
    """The modelling rule for copies, applied to tshark's side: a copy is one frame counted as skipped."""
    return dataclasses.replace(ts, isakmp={f: m for f, m in ts.isakmp.items() if f not in frames},
                               esp=[e for e in ts.esp if e.frame not in frames],
                               keepalives=[k for k in ts.keepalives if k[0] not in frames],
                               icmp_about_ipsec=ts.icmp_about_ipsec - frames)


def compare(doc: dict, ts: tshark_oracle.Dissection) -> tuple[list[tuple], dict]:
    """Every difference as (frame, field, ikeflow value, tshark value), and counts of what was compared."""
    diffs: list[tuple] = []
    counts = {"messages": 0, "esp_packets": 0}

    def check(frame, field, mine, theirs):
        if mine != theirs:
            diffs.append((frame, field, mine, theirs))

    messages = {m["frame"]: m for m in doc["messages"]}
    malformed = {m["frame"]: m["reason"] for m in doc["malformed"]}
    assert len(messages) == len(doc["messages"]), "two ikeflow messages on one frame"

    for frame in sorted(set(messages) | set(ts.isakmp)):
        m, t = messages.get(frame), ts.isakmp.get(frame)
        if m is None or t is None:
            if m is None:
                status = f"no message, malformed: {malformed[frame]}" if frame in malformed else "no message"
            else:
                status = f"message, malformed: {m['malformed']}" if m["malformed"] else "message"
            check(frame, "isakmp", status, "ISAKMP" if t is not None else "no ISAKMP")
            continue
        counts["messages"] += 1
        check(frame, "ispi", m["ispi"], t.ispi)
        check(frame, "rspi", m["rspi"], t.rspi)
        check(frame, "version", m["version"], t.version)
        check(frame, "exchange_type", m["exchange_type"], t.exchange_type)
        check(frame, "message_id", m["message_id"], t.message_id)
        check(frame, "natt", m["natt"], t.natt)
        check(frame, "endpoints", [m["src"], m["sport"], m["dst"], m["dport"]], [t.src, t.sport, t.dst, t.dport])
        check(frame, "ip_fragments", sorted(m["ip_fragments"]), t.fragments)
        top = t.payload_types
        if t.version == 1:
            encrypted = _flag(t, "flag_e", 0x01)
            check(frame, "flags.encrypted", m["flags"]["encrypted"], encrypted)
            check(frame, "flags.commit", m["flags"]["commit"], _flag(t, "flag_c", 0x02))
            if encrypted and not top:  # the modelling rule of the module docstring
                top = [t.next_payload]
                check(frame, "payloads", m["payloads"], ["ENC"])
        elif t.version == 2:
            check(frame, "flags.initiator", m["flags"]["initiator"], _flag(t, "flag_i", 0x08))
            check(frame, "flags.response", m["flags"]["response"], _flag(t, "flag_r", 0x20))
            check(frame, "flags.encrypted", m["flags"]["encrypted"], any(p in (46, 53) for p in t.payload_types))
        check(frame, "payload_types", m["payload_types"], top)
        check(frame, "notify_types", [n["type"] for n in m["notify"]], t.notify_types)
        if bool(m["malformed"]) != t.malformed:
            diffs.append((frame, "malformed", m["malformed"], t.malformed))

    flows: dict[tuple, list] = defaultdict(list)
    for e in ts.esp:
        flows[(e.src, e.dst, f"{e.spi:08x}")].append(e)
    theirs = {}
    for key, pkts in flows.items():
        seqs = [e.seq for e in pkts if e.seq is not None]
        theirs[key] = (len(pkts), min(seqs, default=None), max(seqs, default=None), pkts[0].seq,
                       pkts[0].frame, pkts[-1].frame, "udp" if pkts[0].udp else "esp")
        if any(e.udp != pkts[0].udp for e in pkts):
            diffs.append((None, f"esp {key[0]} > {key[1]} spi {key[2]}", "one encapsulation", "mixed"))
    mine = {(f["src"], f["dst"], f["spi"]): (f["packets"], f["seq_min"], f["seq_last"], f["seq_first"],
                                             f["first_frame"], f["last_frame"], f["encap"])
            for f in doc["esp_flows"]}
    for key in sorted(set(mine) | set(theirs)):
        check(None, f"esp {key[0]} > {key[1]} spi {key[2]}", mine.get(key), theirs.get(key))
        if key in mine and key in theirs:
            counts["esp_packets"] += mine[key][0]

    # NAT-keepalives per sender, and ICMP errors about IKE/ESP frame by frame
    my_keepalives: dict[str, int] = defaultdict(int)
    for p in doc["peers"]:
        for sender, n in p["keepalives"].items():
            my_keepalives[sender] += n
    their_keepalives: dict[str, int] = defaultdict(int)
    for _, sender in ts.keepalives:
        their_keepalives[sender] += 1
    for sender in sorted(set(my_keepalives) | set(their_keepalives)):
        check(None, f"keepalives from {sender}", my_keepalives.get(sender, 0), their_keepalives.get(sender, 0))
    check(None, "keepalives", doc["stats"]["keepalives"], len(ts.keepalives))
    my_icmp = {e["frame"] for p in doc["peers"] for e in p["icmp"]}
    # a pair lists its first Limits.icmp_per_pair errors; stats.icmp counts them all
    capped = any(len(p["icmp"]) >= DEFAULT.icmp_per_pair for p in doc["peers"])
    for frame in sorted(my_icmp - ts.icmp_about_ipsec if capped else my_icmp ^ ts.icmp_about_ipsec):
        check(frame, "icmp", frame in my_icmp, frame in ts.icmp_about_ipsec)
    check(None, "icmp", doc["stats"]["icmp"], len(ts.icmp_about_ipsec))
    counts["keepalives"] = len(ts.keepalives)
    counts["icmp"] = len(ts.icmp_about_ipsec)
    return diffs, counts


@pytest.mark.parametrize("rel", CAPTURES, ids=CAPTURES)
def test_agrees_with_tshark(rel, tshark_results):
    path = PUBLIC / rel
    code, doc, stderr = run_ikeflow(path)

    # 1. exit code, stats, frame count
    if code == 2:  # allowed only for a file that is not a capture at all
        assert len(stderr.strip().splitlines()) == 1, f"exit 2 needs a one-line error, got {stderr!r}"
        with pytest.raises(RuntimeError, match="tshark failed"):
            tshark_results(rel)
        return
    assert code in (0, 1), f"exit code {code}: {stderr}"
    ts = tshark_results(rel)
    stats = doc["stats"]
    parts = ("ike", "esp", "ah", "keepalives", "icmp", "fragments", "malformed", "skipped")
    assert stats["packets"] == sum(stats[k] for k in parts), f"stats do not add up: {stats}"
    assert stats["packets"] == ts.frames, f"ikeflow counts {stats['packets']} packets, tshark {ts.frames} frames"
    assert doc["capture"]["packets"] == ts.frames

    # 2./3. message by message, flow by flow
    diffs, _counts = compare(doc, without(ts, copies(path)))
    tshark_oracle.judge(rel, diffs, ALLOWED, KNOWN_BUGS, show=40)


def test_oracle_matches_manifest(tshark_results):
    """The oracle's counts equal the tshark facts the corpus manifest records, so a broken
    PDML parse cannot make the comparison above pass vacuously."""
    need_public()
    wrong = []
    for rel, facts in _manifest().items():
        ts = tshark_results(rel)
        got = (ts.frames, len(ts.isakmp), len(ts.esp), len(ts.malformed_frames))
        want = (facts["packets"], facts["ike_packets"], facts["esp_packets"], facts["malformed_packets"])
        if got != want:
            wrong.append(f"{rel}: frames/isakmp/esp/malformed {got}, manifest {want}")
    assert not wrong, "\n".join(wrong)


def test_manifest_lists_every_capture():
    """Every capture file in the corpus tree is one of the parametrized cases above."""
    root = need_public()
    listed = set(_captures())
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*")
               if p.is_file() and p.name.lower().endswith(CAPTURE_SUFFIXES)}
    assert on_disk <= listed, f"captures missing from MANIFEST.json: {sorted(on_disk - listed)}"
    assert all((root / rel).is_file() for rel in listed), "MANIFEST.json lists files that do not exist"


def test_tables_name_corpus_files():
    """Every ALLOWED/KNOWN_BUGS entry names a capture of the corpus and gives a reason."""
    need_public()
    listed = set(_captures())
    for key, entry in list(ALLOWED.items()) + list(KNOWN_BUGS.items()):
        assert key[0] in listed, key
        assert len(entry) == 3 and len(entry[2]) > 40, key
