"""Coverage-guided fuzzer of `ikeflow read`, in process (atheris, i.e. libFuzzer).

    python3 tests/fuzz/fuzz_read.py --runs 1000000 --seed 1

Inputs are small captures (up to 6 packets, 8 KiB) cut from pcaps/lab, ../shared/pcaps/public and
../shared/repro.  Most mutations change the packets inside a valid pcap/pcapng (gzip) container:
libFuzzer's byte mutations on one packet, a header byte set, truncation, a packet spliced in from
another capture, duplication, reordering, deletion, odd timestamps, ISAKMP header fields taken
from another packet (SAs collide), other link layers; the rest mutate the container bytes.

Every input goes through the steps of `ikeflow read` (`read_pipeline`: the JSON document, and the
terminal report for every --render-every'th input, as it costs ten times the rest), every other
input with caps (TINY) that a few packets reach; the JSON must parse and the stats must add up.
Any exception other than CaptureError (exit 2), a failed check, or an execution using more than
--slow CPU seconds is a crash: each distinct one (exception type + innermost ikeflow function) is
saved once, as the smallest input seen, in tests/fuzz/crashes/ (the capture and a one-line .txt).
Other -flags go to libFuzzer (e.g. -max_total_time=600).  Executions per second: libFuzzer's
exec/s, and a summary line every minute.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from ikeflow.limits import DEFAULT, Limits  # imported before the instrumented modules: nothing to cover

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CRASHES = HERE / "crashes"
SOURCES = [ROOT / "pcaps", ROOT.parent / "shared" / "pcaps" / "public", ROOT.parent / "shared" / "repro"]
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
NG_MAGIC, GZ_MAGIC = b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"
MAX_RECORDS = 64
MAX_SEED = 8192
TINY = Limits(peer_pairs=2, ike_sas=2, esp_flows=2, fragment_buffers=2, fragments_per_datagram=4, fragment_timeout=1.0,
              incomplete_listed=1, icmp_per_pair=1)  # caps a few packets reach, for every other input
TINY_SUFFIX = "-tiny-caps"  # ends the name of a crash seen with TINY


def read_pipeline(path: str, terminal: bool = True, limits: Limits = DEFAULT) -> int:
    """The steps of `ikeflow read --json` and (if `terminal`) of the terminal report on one file;
    its exit code.  Raises AssertionError when the JSON does not parse (NaN and Infinity
    included) or the stats do not account for every frame."""
    from rich.console import Console

    from ikeflow.pipeline import Options, Pipeline
    from ikeflow.render.read_json import MessageSpool, build, write
    from ikeflow.render.read_terminal import render
    from ikeflow.sources.capture import CaptureError

    spool = MessageSpool(1)
    pipeline = Pipeline(Options(limits=limits), [spool.add])
    try:
        try:
            pipeline.read([path])
        except CaptureError as e:
            assert "\n" not in str(e), "CaptureError message on several lines"
            return 2
        r = pipeline.conclude()
        out = io.StringIO()
        write(out, build(r.model, r.infos, r.findings, r.verdicts), spool)
        json.loads(out.getvalue(), parse_constant=_not_json)
    finally:
        spool.file.close()
    if terminal:
        render(Console(file=io.StringIO(), width=120, no_color=True, highlight=False), r.model, r.infos, r.findings,
               r.verdicts)
    an = r.model
    s = an.stats
    counted = s.ike + s.esp + s.ah + s.keepalives + s.icmp + s.fragments + s.malformed + s.skipped
    assert s.packets == counted, f"stats count {counted} frames of {s.packets}"
    return r.exit_code


def _not_json(name: str):
    raise AssertionError(f"{name} in the JSON document")


# -- captures as lists of records ---------------------------------------------------------------


class Capture:
    """A pcap or pcapng file (maybe gzipped) as a head, records and unparsed tail bytes.

    A record is [block type, fields, data]: pcap records are type "p" with fields
    [sec, frac, wirelen]; pcapng packet blocks are type 6 with [iface, ts_hi, ts_lo, wirelen,
    options]; other pcapng blocks (and packet blocks that do not parse) keep their body as data
    and fields None."""

    def __init__(self, head: bytes, endian: str, ng: bool, records: list, tail: bytes, gz: bool):
        self.head, self.endian, self.ng, self.records, self.tail, self.gz = head, endian, ng, records, tail, gz

    def linktype(self) -> int:
        """Of the file (pcap) or of its first interface (pcapng)."""
        if not self.ng:
            return struct.unpack_from(self.endian + "I", self.head, 20)[0] & 0x0FFFFFFF
        idb = next((r[2] for r in self.records if r[0] == 1 and len(r[2]) >= 2), None)
        return struct.unpack_from(self.endian + "H", idb)[0] if idb else 1

    def packets(self) -> list:
        return [r for r in self.records if r[1] is not None]

    def render(self) -> bytes:
        e, out = self.endian, [self.head]
        for btype, f, data in self.records:
            if btype == "p":
                out.append(struct.pack(e + "IIII", f[0], f[1], len(data), f[2]) + data)
                continue
            if f is not None:
                pad = b"\0" * (-len(data) % 4)
                data = struct.pack(e + "IIIII", f[0], f[1], f[2], len(data), f[3]) + data + pad + f[4]
            out.append(struct.pack(e + "II", btype, 12 + len(data)) + data + struct.pack(e + "I", 12 + len(data)))
        raw = b"".join(out) + self.tail
        return gzip.compress(raw, compresslevel=1, mtime=0) if self.gz else raw


def parse(data: bytes, limit: int = 1 << 22) -> Capture | None:
    """A Capture of the records that parse, the rest as tail; None if not pcap/pcapng."""
    gz = data[:2] == GZ_MAGIC
    if gz:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                data = f.read(limit)
        except Exception:
            return None
    if data[:4] in PCAP_MAGICS and len(data) >= 24:
        e, off, records = PCAP_MAGICS[data[:4]], 24, []
        while off + 16 <= len(data) and len(records) < 100_000:
            sec, frac, caplen, wirelen = struct.unpack_from(e + "IIII", data, off)
            if off + 16 + caplen > len(data):
                break
            records.append(["p", [sec, frac, wirelen], data[off + 16 : off + 16 + caplen]])
            off += 16 + caplen
        return Capture(data[:24], e, False, records, data[off:], gz)
    if data[:4] == NG_MAGIC and len(data) >= 12:
        e = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(data[8:12])
        if not e:
            return None
        head_len = struct.unpack_from(e + "I", data, 4)[0]
        if head_len < 12 or head_len > len(data):
            return None
        off, records = head_len, []
        while off + 12 <= len(data) and len(records) < 100_000:
            btype, blen = struct.unpack_from(e + "II", data, off)
            if blen < 12 or blen % 4 or off + blen > len(data):
                break
            body = data[off + 8 : off + blen - 4]
            caplen = struct.unpack_from(e + "I", body, 12)[0] if btype == 6 and len(body) >= 20 else -1
            if 0 <= caplen <= len(body) - 20:
                iface, hi, lo, _, wirelen = struct.unpack_from(e + "IIIII", body)
                end = 20 + caplen + (-caplen % 4)
                records.append([6, [iface, hi, lo, wirelen, body[end:]], body[20 : 20 + caplen]])
            else:
                records.append([btype, None, body])
            off += blen
        return Capture(data[:head_len], e, True, records, data[off:], gz)
    return None


def windows(cap: Capture, rng: random.Random, count: int = 4) -> list[bytes]:
    """Small captures cut from `cap`: a few runs of up to 6 consecutive packets, with the
    pcapng blocks (interfaces) that come before them."""
    idx = [i for i, r in enumerate(cap.records) if r[1] is not None]
    out = []
    for n in range(min(count, len(idx))):
        start = 0 if n == 0 else rng.randrange(len(idx))
        chosen = idx[start : start + rng.randint(1, 6)]
        while True:
            records = [r for i, r in enumerate(cap.records) if i in chosen or (i < chosen[-1] and r[1] is None)]
            data = Capture(cap.head, cap.endian, cap.ng, records, b"", cap.gz).render()
            if len(data) <= MAX_SEED or len(chosen) == 1:
                break
            chosen.pop()
        if len(data) <= MAX_SEED:
            out.append(data)
    return out


def seeds(rng: random.Random) -> list[bytes]:
    """Small inputs from every capture under SOURCES; also feeds POOL."""
    out = []
    for root in SOURCES:
        for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
            with open(path, "rb") as f:
                data = f.read(1 << 22)
            cap = parse(data)
            if cap is None:
                continue
            if len(data) <= MAX_SEED:
                out.append(data)
            out.extend(windows(cap, rng))
            POOL.extend(r[2] for r in rng.sample(cap.packets(), min(20, len(cap.packets()))))
    return out


# -- mutations ------------------------------------------------------------------------------------

POOL: list[bytes] = []  # packets from the seed captures, for splicing
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF)


def libfuzzer_mutate(data: bytes, max_size: int) -> bytes:
    import atheris  # its Mutate works once Fuzz() runs

    return atheris.Mutate(data, max_size)


def _packet(cap, rng):
    pkts = cap.packets()
    return rng.choice(pkts) if pkts else None


def op_bytes(cap, rng):
    """libFuzzer's byte mutations on one packet."""
    if r := _packet(cap, rng):
        r[2] = libfuzzer_mutate(r[2], len(r[2]) + 64)


def op_header_byte(cap, rng):
    """One byte among the first 80 (link, IP, UDP, ISAKMP headers) set to an interesting value."""
    if (r := _packet(cap, rng)) and r[2]:
        data = bytearray(r[2])
        data[rng.randrange(min(80, len(data)))] = rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randrange(256)
        r[2] = bytes(data)


def op_truncate(cap, rng):
    if r := _packet(cap, rng):
        r[2] = r[2][: rng.randrange(len(r[2]) + 1)]


def op_splice(cap, rng):
    """A packet from another capture inserted (with a neighbour's header fields)."""
    if (r := _packet(cap, rng)) and POOL and len(cap.records) < MAX_RECORDS:
        cap.records.insert(rng.randrange(len(cap.records) + 1), [r[0], list(r[1]), rng.choice(POOL)])


def op_duplicate(cap, rng):
    """One record repeated 1 to 40 times, at once or later."""
    if cap.records:
        r = rng.choice(cap.records)
        at = rng.randrange(len(cap.records) + 1)
        for _ in range(min(rng.choice((1, 1, 2, 3, 8, 40)), MAX_RECORDS - len(cap.records))):
            cap.records.insert(at, [r[0], list(r[1]) if r[1] else None, r[2]])


def op_move(cap, rng):
    if len(cap.records) > 1:
        cap.records.insert(rng.randrange(len(cap.records)), cap.records.pop(rng.randrange(len(cap.records))))


def op_delete(cap, rng):
    if len(cap.records) > 1:
        del cap.records[rng.randrange(len(cap.records))]


def op_field(cap, rng):
    """A timestamp, wire length or interface number set to an odd value."""
    if r := _packet(cap, rng):
        i = rng.randrange(len(r[1]) - (r[0] == 6))
        near = (min(r[1][i] + 1, 0xFFFFFFFF), max(0, r[1][i] - 1))
        r[1][i] = rng.choice((0, 1, 999_999, 1_000_000, 0x7FFFFFFF, 0xFFFFFFFF) + near)


def op_ike_header(cap, rng):
    """A field of an ISAKMP header (SPIs, next payload, version, exchange, flags, message ID, length)
    set to the same field of another IKE packet of the capture (SAs collide) or a small number."""
    from ikeflow.decode.packet import IKE, decode

    ike = []
    for r in cap.packets():
        pkt = decode(cap.linktype(), r[2])
        if pkt.kind == IKE and len(pkt.payload) >= 28:
            ike.append((r, r[2].find(pkt.payload)))
    if not ike:
        return
    (r, at), (donor, donor_at) = rng.choice(ike), rng.choice(ike)
    off, size = rng.choice(((0, 8), (8, 8), (16, 1), (17, 1), (18, 1), (19, 1), (20, 4), (24, 4)))
    if rng.random() < 0.5:
        value = donor[2][donor_at + off : donor_at + off + size]
    else:
        value = rng.choice((0, 1, 2, 3, 5, 32, 33, 34, 35, 36, 37, 43, 0x20, 0x28, 255)).to_bytes(size, "big")
    r[2] = r[2][: at + off] + value + r[2][at + off + size :]


LINK_HEADERS = {  # link type -> header in front of an IPv4 (4) or IPv6 (6) packet
    101: lambda v: b"", 228: lambda v: b"", 229: lambda v: b"",
    113: lambda v: b"\0\0\0\1\0\6" + b"\2" * 8 + (b"\x08\x00" if v == 4 else b"\x86\xdd"),
    276: lambda v: (b"\x08\x00" if v == 4 else b"\x86\xdd") + b"\0\0\0\0\0\1\0\0\0\6" + b"\2" * 8,
    0: lambda v: struct.pack("<I", 2 if v == 4 else 24), 108: lambda v: struct.pack(">I", 2 if v == 4 else 30),
    1: lambda v: b"\2" * 12 + b"\x81\x00\x00\x07" + (b"\x08\x00" if v == 4 else b"\x86\xdd"),  # VLAN 7
}


def op_link(cap, rng):
    """An Ethernet pcap re-encapsulated: raw IP, Linux cooked v1/v2, BSD loopback or VLAN."""
    if cap.ng or cap.linktype() != 1:
        return
    linktype = rng.choice(list(LINK_HEADERS))
    for r in cap.packets():
        if r[2][12:14] in (b"\x08\x00", b"\x86\xdd"):
            r[2] = LINK_HEADERS[linktype](4 if r[2][12] == 8 else 6) + r[2][14:]
    cap.head = cap.head[:20] + struct.pack(cap.endian + "I", linktype)


PACKET_OPS = [op_bytes, op_bytes, op_header_byte, op_header_byte, op_truncate, op_splice, op_splice,
              op_duplicate, op_move, op_delete, op_field, op_ike_header, op_ike_header, op_link]


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer custom mutator: mostly packet-level, sometimes the container's bytes."""
    rng = random.Random(seed)
    cap = parse(data) if rng.random() < 0.9 else None
    if cap is None:
        choice = rng.random()
        if choice < 0.1 and data[:2] != GZ_MAGIC:
            return gzip.compress(data, mtime=0)[:max_size]
        if choice < 0.2:
            return data[: rng.randrange(len(data) + 1)]
        return libfuzzer_mutate(data, max_size)
    for _ in range(rng.randint(1, 3)):
        rng.choice(PACKET_OPS)(cap, rng)
    out = cap.render()
    return out if len(out) <= max_size else libfuzzer_mutate(data, max_size)


def crossover(data1: bytes, data2: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer custom crossover: a run of packets of one input inserted into the other."""
    rng = random.Random(seed)
    a, b = parse(data1), parse(data2)
    if a is None or b is None or not a.packets() or not b.packets():
        cut = rng.randrange(len(data1) + 1)
        return (data1[:cut] + data2[cut:])[:max_size]
    kind, fields, _ = a.packets()[0]
    src = b.packets()
    start, at = rng.randrange(len(src)), rng.randrange(len(a.records) + 1)
    a.records[at:at] = [[kind, list(fields), r[2]] for r in src[start : start + rng.randint(1, 4)]]
    del a.records[MAX_RECORDS:]
    out = a.render()
    return out if len(out) <= max_size else data1


# -- harness --------------------------------------------------------------------------------------


class Slow(BaseException):
    """An execution used more than --slow CPU seconds."""


def _on_slow(signum, frame):
    raise Slow("execution too slow")


def signature(e: BaseException, limits: Limits) -> tuple[str, str]:
    """A name from the exception type and the innermost ikeflow function (for a RecursionError,
    the ikeflow function found most often on the stack), and a one-line description."""
    frames = [(f"{Path(fs.filename).stem}.{fs.name}", f"ikeflow/{Path(fs.filename).name}:{fs.lineno}")
              for fs in traceback.extract_tb(e.__traceback__) if f"{os.sep}ikeflow{os.sep}" in fs.filename]
    where, line = frames[-1] if frames else ("nowhere", "")
    if isinstance(e, RecursionError) and frames:
        where = Counter(w for w, _ in frames).most_common(1)[0][0]
        line = next(ln for w, ln in frames if w == where)
    kind = type(e).__qualname__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__qualname__}"
    name, text = f"{kind}-{where}", f"{kind}: {str(e)[:200]} at {line} in {where}"
    return (name + TINY_SUFFIX, text + " (with the TINY caps)") if limits is TINY else (name, text)


def extension(data: bytes) -> str:
    inner = data[:4]
    if data[:2] == GZ_MAGIC:
        try:
            inner = gzip.decompress(data)[:4]
        except Exception:
            return ".pcap.gz"
    return (".pcapng" if inner == NG_MAGIC else ".pcap") + (".gz" if data[:2] == GZ_MAGIC else "")


class Harness:
    """The libFuzzer target: runs the pipeline (every other input with TINY caps), records crashes,
    prints a summary every minute."""

    def __init__(self, path: str, slow: float, render_every: int):
        self.path, self.slow, self.render_every = path, slow, render_every
        self.runs, self.start, self.next_report = 0, time.monotonic(), time.monotonic() + 60
        self.found: Counter = Counter()  # crash name -> executions that hit it in this run
        self.smallest = {p.name.rsplit(".pcap", 1)[0]: p.stat().st_size for p in CRASHES.glob("*.pcap*")}

    def __call__(self, data: bytes) -> None:
        self.runs += 1
        if time.monotonic() >= self.next_report:
            self.report()
            self.next_report += 60
        limits = TINY if self.runs % 2 else DEFAULT
        e = self.run(data, self.runs % self.render_every == 0, limits)
        if e is not None:
            self.crash(e, data, limits)

    def run(self, data: bytes, terminal: bool = True, limits: Limits = DEFAULT) -> BaseException | None:
        with open(self.path, "wb") as f:
            f.write(data)
        signal.setitimer(signal.ITIMER_VIRTUAL, self.slow)
        try:
            read_pipeline(self.path, terminal, limits)
        except (Exception, Slow) as e:
            return e
        finally:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        return None

    def crash(self, e: BaseException, data: bytes, limits: Limits) -> None:
        if limits is TINY:  # a crash that the default caps show too is theirs
            again = self.run(data)
            if again is not None and signature(again, DEFAULT)[0] == signature(e, DEFAULT)[0]:
                e, limits = again, DEFAULT
        name, text = signature(e, limits)
        if name not in self.found:
            print(f"\n== new crash {name} (run {self.runs}): {text}", file=sys.stderr, flush=True)
        self.found[name] += 1
        if len(data) < self.smallest.get(name, 1 << 62):
            data = self.shrink(data, name, limits)
            self.smallest[name] = len(data)
            CRASHES.mkdir(exist_ok=True)
            for old in CRASHES.glob(name + ".*"):
                old.unlink()
            (CRASHES / (name + extension(data))).write_bytes(data)
            (CRASHES / (name + ".txt")).write_text(text + "\n")

    def shrink(self, data: bytes, name: str, limits: Limits) -> bytes:
        """Drop records one by one while the same crash still happens."""
        cap = parse(data)
        if cap is None or cap.gz:
            return data
        for i in reversed(range(len(cap.records))):
            record = cap.records.pop(i)
            e = self.run(cap.render(), limits=limits)
            if e is None or signature(e, limits)[0] != name:
                cap.records.insert(i, record)
        return min(data, cap.render(), key=len)

    def report(self) -> None:
        took = time.monotonic() - self.start
        crashes = ", ".join(f"{n} x{c}" for n, c in self.found.items()) or "none"
        print(f"fuzz_read: {self.runs} executions in {took:.0f} s ({self.runs / max(took, 1e-9):.0f}/s); "
              f"crashes: {crashes}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100_000, help="executions (seed inputs included)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slow", type=float, default=2.0, help="CPU seconds after which an execution is a crash")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "ikeflow-fuzz"),
                    help="scratch folder (emptied first): the corpus libFuzzer grows and the current input")
    ap.add_argument("--max-len", type=int, default=MAX_SEED, help="largest input in bytes")
    ap.add_argument("--render-every", type=int, default=10,
                    help="draw the terminal report for every Nth input (it costs 10 times the rest)")
    args, libfuzzer = ap.parse_known_args()

    import atheris

    with atheris.instrument_imports(include=["ikeflow"]):
        import ikeflow.pipeline, ikeflow.render.read_json, ikeflow.render.read_terminal  # noqa: E401,F401
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    for n, s in enumerate(seeds(random.Random(args.seed))):
        (corpus / f"seed{n:05}").write_bytes(s)
    print(f"fuzz_read: {n + 1} seed inputs in {corpus}", file=sys.stderr)
    harness = Harness(str(work / "input"), args.slow, args.render_every)
    signal.signal(signal.SIGVTALRM, _on_slow)
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed}", f"-max_len={args.max_len}",
                   "-timeout=60", f"-artifact_prefix={work}/", *libfuzzer, str(corpus)],
                  harness, custom_mutator=mutate, custom_crossover=crossover)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
