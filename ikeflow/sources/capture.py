"""Capture-file reader: classic pcap, pcapng, gzip, stdin.

This is the hot path.  `scan()` walks the records of one capture (pcap or
pcapng, memory-mapped when it can) in large chunks with `struct`; ESP, IP
protocol 50 or UDP-encapsulated, over IPv4 or IPv6, behind 802.1Q/802.1ad tags
or not, on the common link types, is counted inline into an `EspTable`, every
other record is handed back in batches for the general decoder (and the first
packet of a flow that is not plain IPv4, see `_PcapWalker._more`).  ESP
accounting does not depend on the order of IKE processing, so the batching is
invisible to the analysis.

On the way the reader counts what the capture itself did to the packets
(`Quality`): a copy of the frame before is dropped (`same_datagram`), frames cut
by the snap length and steps back in time are counted, and the records for the
decoder come out in time order (`read_files`).

The inline path is also compiled (`inline.c`, built at install time when a C
compiler is there): it counts the in-sequence packets that the Python loop would
count and stops at the first record it would not, which the Python loop reads.
Without it, or with IKEFLOW_PURE_PYTHON=1, the Python loop counts them: the same
JSON byte for byte, in about 1.4 times the time on a big capture.
"""

from __future__ import annotations

import atexit
import bisect
import heapq
import io
import mmap
import os
import stat
import struct
import sys
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Iterator

from ikeflow.decode.linktypes import ETHERNET, LINK_TYPES

if TYPE_CHECKING:
    from ikeflow.model.esp import EspTable  # the ESP fast path counts into the model's table

try:
    from ikeflow.sources import inline as _compiled  # the inline path in C (inline.c)
except ImportError:  # not built: the Python loop alone
    _compiled = None
if os.environ.get("IKEFLOW_PURE_PYTHON", "") == "1":
    _compiled = None

CHUNK = 1 << 20
MAPPED_SPAN = 8 << 20  # bytes of a mapped file walked between two batches
RESIDENT = 1 << 20  # bytes of a mapped file read before its pages are let go
# bytes from which a second core helps (measured on gateway mixes: with the compiled loop, a 68 MiB one reads as fast
# on one core); IKEFLOW_PARALLEL_MIN sets it (tests, benchmarks)
PARALLEL_MIN = (64 if _compiled is None else 128) << 20
if os.environ.get("IKEFLOW_PARALLEL_MIN", "").strip().isdigit():  # anything else is not a size: ignored
    PARALLEL_MIN = int(os.environ["IKEFLOW_PARALLEL_MIN"])
# of a file read on two cores, the part the parent reads (it also decodes every record), by format: measured (the
# Python helper walks pcapng blocks more slowly than pcap records; the compiled one reads either in a fraction of the
# time the parent takes for the IKE messages)
PARENT_SHARE = {"pcap": 0.3, "pcapng": 0.35} if _compiled is None else {"pcap": 0.1, "pcapng": 0.1}
MAX_RECORD = 1 << 18  # bigger caplen means a corrupt record, not a packet
COPY_GAP = 0.002  # s: a copy of the frame before within this is the same packet captured twice (see same_datagram)
LISTED = 10  # frames listed as evidence for each capture-quality fact
CUT_KEPT = 4096  # cut frames handed to the decoder that are remembered (to tell a cut message from a broken one)
HOLD = 256  # decoded frames held back from one batch to the next to put them in time order (HOLD_BYTES at most)
HOLD_BYTES = 1 << 20
LOOKBACK = 1 << 16  # bytes of the last chunk kept when streaming, for the copy check of the next frame

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
NEVER = float("-inf")  # the time before the first frame
FLUSH: list = []  # a batch of no records after which every record read so far is to be decoded (_in_time_order)
VLAN_TAGS = (b"\x81\x00", b"\x88\xa8", b"\x91\x00")  # ethertypes of 802.1Q/802.1ad tags

# IPv4 header and the first 16 bytes of its payload in one read: version/IHL, total
# length, flags/fragment offset, protocol, destination, then four 32-bit words w0..w3
# (ESP: SPI, sequence; UDP-encapsulated ESP: ports, length/checksum, SPI, sequence).
_IP = ">BxHxxHxBxx4xIIIII"
FAST = {number: (struct.Struct(_IP).unpack_from if lt.ethertype_at is None else
                  struct.Struct(">H" + "x" * (lt.ip_at - lt.ethertype_at - 2) + _IP[1:]).unpack_from,
                  lt.ethertype_at, lt.ip_at)
         for number, lt in LINK_TYPES.items() if lt.fast}
_IP4 = struct.Struct(_IP).unpack_from
# IPv6 header and the first 16 bytes of its payload: payload length, next header, destination (two halves),
# then w0..w3 as for IPv4.
_IP6 = struct.Struct(">4xHBx16xQQIIII").unpack_from
# The same two for _PcapWalker._inline_more, the IPv6 one with the version byte first, and both with, last,
# the word that would be an ISAKMP length if UDP 4500 carried IKE without the non-ESP marker.
_IP4_INLINE = struct.Struct(_IP + "16xI").unpack_from
_IP6_INLINE = struct.Struct(">B3xHBx16xQQIIII16xI").unpack_from
_U32 = struct.Struct(">I").unpack_from
IPV4_ETHERTYPE, IPV6_ETHERTYPE = 0x0800, 0x86DD
VLAN_ETHERTYPES = frozenset(int.from_bytes(tag, "big") for tag in VLAN_TAGS)
IKE_PORT = 500  # UDP between it and the NAT-T port is IKE to the decoder (a custom --ike-port is not known here)
OTHER, COUNTED, COPY, DECODE = range(4)  # what _PcapWalker._more did with a frame
MARK = -2  # the link type of a Record that stands for a frame counted by _more (wirelen: its captured length;
#            -1 is a pcapng interface never described)
FIRSTS = 1 << 16  # flows whose first packet a two-core helper hands over (past that it hands over every packet)
PENDING = 1 << 12  # new flows whose first packet the decoder has not counted yet (past that it gets all new flows)


class CaptureError(Exception):
    """The input is not a readable capture file."""


REF_SHIFT = 40


def frame_ref(file: int, frame: int) -> int:
    """One int naming a frame: the frame number itself for the first file."""
    return (file << REF_SHIFT) | frame


def split_ref(ref: int) -> tuple[int, int]:
    """(file index, 1-based frame number) of a frame_ref."""
    return ref >> REF_SHIFT, ref & ((1 << REF_SHIFT) - 1)


@dataclass(slots=True)
class Record:
    """One captured frame; `ref` is its frame_ref (frames numbered from 1, as Wireshark does)."""

    ref: int
    time: float
    linktype: int
    data: bytes
    wirelen: int


@dataclass
class Quality:
    """What the capture itself did to the packets, counted by the reader (diagnose.capture_quality reads it).

    Frame lists hold the first LISTED frame_refs."""

    copies: int = 0  # frames dropped: the same IP datagram as the frame before, within COPY_GAP
    copy_frames: list[int] = field(default_factory=list)
    routed: int = 0  # of the copies, those with another TTL/hop limit: seen before and after a router
    cut: int = 0  # frames captured shorter than they were on the wire (snap length)
    cut_frames: list[int] = field(default_factory=list)
    cut_at: int = 0  # the longest captured length of a cut frame: the snap length in effect
    cut_decoded: set[int] = field(default_factory=set)  # the first CUT_KEPT cut frames handed to the decoder
    back: int = 0  # frames timestamped before the frame in front of them
    back_frames: list[int] = field(default_factory=list)
    back_most: float = 0.0  # the longest step back in time, in seconds
    # once time went back: the earliest and the latest timestamp (the latest is the last frame or one right before a
    # step back, the earliest the first frame or one right after a step back)
    earliest: float | None = None
    latest: float | None = None
    late: int = 0  # decoded frames too far out of time order to be put back (more than HOLD frames)
    same_time: int = 0  # frames with the timestamp of the frame in front of them
    zero_time: int = 0  # frames timestamped 0 (1970-01-01: the writer had no clock)

    def clock(self, ref: int, ts: float, before: float) -> None:
        """A frame at `ts` that is not later than the one before it (at `before`)."""
        self.order(ref, ts, before)
        if not ts:
            self.zero_time += 1

    def order(self, ref: int, ts: float, before: float) -> None:
        if ts == before:
            self.same_time += 1
            return
        self.back += 1
        self.back_most = max(self.back_most, before - ts)
        self.earliest = ts if self.earliest is None else min(self.earliest, ts)
        self.latest = before if self.latest is None else max(self.latest, before)
        if len(self.back_frames) < LISTED:
            self.back_frames.append(ref)

    def copy(self, ref: int, routed: bool) -> None:
        self.copies += 1
        self.routed += routed
        if len(self.copy_frames) < LISTED:
            self.copy_frames.append(ref)

    def cut_short(self, ref: int, caplen: int) -> None:
        self.cut += 1
        self.cut_at = max(self.cut_at, caplen)
        if len(self.cut_frames) < LISTED:
            self.cut_frames.append(ref)

    def merge(self, later: Quality, shift: int) -> None:
        """Add what a second reader counted over the next stretch of the same capture (frame refs `shift` short)."""
        for name in ("copies", "routed", "cut", "back", "late", "same_time", "zero_time"):
            setattr(self, name, getattr(self, name) + getattr(later, name))
        for name in ("copy_frames", "cut_frames", "back_frames"):
            mine = getattr(self, name)
            mine += [ref + shift for ref in getattr(later, name)][: LISTED - len(mine)]
        self.back_most = max(self.back_most, later.back_most)
        self.cut_at = max(self.cut_at, later.cut_at)
        for name, pick in (("earliest", min), ("latest", max)):
            values = [v for v in (getattr(self, name), getattr(later, name)) if v is not None]
            setattr(self, name, pick(values) if values else None)
        self.cut_decoded.update([ref + shift for ref in later.cut_decoded][: CUT_KEPT - len(self.cut_decoded)])

    def no_time(self, packets: int) -> bool:
        """No timestamps to go by: every frame has the time of the one before it, or most are at 0."""
        return packets > 1 and (self.same_time == packets - 1 or 2 * self.zero_time > packets)


@dataclass
class FileInfo:
    """What the reader learnt about one input file."""

    name: str
    format: str = ""
    linktypes: list[int] = field(default_factory=list)
    packets: int = 0
    first_time: float | None = None
    last_time: float | None = None
    bytes_read: int = 0
    truncated_at: int | None = None  # byte offset of the first incomplete record
    warning: str | None = None
    quality: Quality = field(default_factory=Quality)

    def span(self) -> tuple[float | None, float | None]:
        """The earliest and the latest timestamp (the first and the last frame's, unless time went back)."""
        q = self.quality
        if q.earliest is None or self.first_time is None:
            return self.first_time, self.last_time
        return min(self.first_time, q.earliest), max(self.last_time, q.latest)


class _Prefixed(io.RawIOBase):
    """A stream with some already-read bytes put back in front of it."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                head, self._head = self._head, b""
                more = self._rest.read(-1 if n < 0 else n - len(head))
                return head + (more or b"")
            head, self._head = self._head[:n], self._head[n:]
            return head
        return self._rest.read(n)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        _close(self._rest)
        super().close()


def _close(stream: BinaryIO) -> None:
    """Close what a wrapper reads from, unless it is standard input."""
    if stream is not sys.stdin.buffer:
        stream.close()


class _Gunzip(io.RawIOBase):
    """gzip members one after the other, as zcat reads them.  Damage (data cut short, corrupt,
    or not gzip after a member) ends the stream after every byte decompressed before it, and
    `damage` says where."""

    STEP = 1 << 14  # compressed bytes per step: a corrupt step is redone byte by byte

    def __init__(self, raw: BinaryIO):
        self._raw, self._z = raw, zlib.decompressobj(31)
        self._out = bytearray()
        self.fed = 0  # compressed bytes given to zlib
        self.size = 0  # decompressed bytes handed out
        self.damage: str | None = None
        self.garbage = False  # the damage is data after a whole member: nothing was lost

    def close(self) -> None:
        _close(self._raw)
        super().close()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._out) < n) and self._step():
            pass
        out = bytes(self._out if n < 0 else self._out[:n])
        del self._out[: len(out)]
        self.size += len(out)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def _step(self) -> bool:
        """Decompress one step into _out; False at the end of the data or at damage."""
        if self._z is None:
            return False
        data = self._raw.read(self.STEP)
        if not data:
            if self._z.eof:
                self._z = None
                return False
            return self._stop(f"gzip data cut short at compressed byte {self.fed}")
        return self._feed(data)

    def _feed(self, data: bytes) -> bool:
        while True:
            saved = self._z.copy()
            try:
                self._out += self._z.decompress(data)
            except zlib.error:
                self._z = saved
                for i in range(len(data)):  # again byte by byte: keep all that precedes the damage
                    try:
                        self._out += self._z.decompress(data[i : i + 1])
                    except zlib.error as e:
                        why = e.args[0].split(": ")[-1]
                        return self._stop(f"corrupt gzip data at compressed byte {self.fed + i} ({why})")
            self.fed += len(data)
            data = self._z.unused_data
            if not (self._z.eof and data):
                return True
            self.fed -= len(data)
            if len(data) < 2:  # the next member's magic may be split across two steps
                data += self._raw.read(1)
            if data[:2] != GZIP_MAGIC:  # another member follows, or garbage
                self.garbage = True
                return self._stop(f"data after the end of the gzip stream at compressed byte {self.fed} ignored")
            self._z = zlib.decompressobj(31)

    def _stop(self, why: str) -> bool:
        self.damage, self._z = why, None
        return False


def open_capture(path: str) -> tuple[BinaryIO, bytes, _Gunzip | None]:
    """Open a capture (path or '-' for stdin), undo gzip; (stream, first 4 bytes, the gzip reader)."""
    try:
        raw: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        raise CaptureError(f"{path}: {e.strerror or e}") from None
    try:
        head, gz = raw.read(4), None
        if head[:2] == GZIP_MAGIC:
            raw = gz = _Gunzip(_Prefixed(head, raw))  # type: ignore[assignment]
            head = raw.read(4)
            if len(head) < 4 and gz.damage:
                raise CaptureError(f"{path}: starts like gzip, but not even a capture's first 4 bytes could be "
                                   f"decompressed: {gz.damage}")
        if head in PCAP_MAGICS or head == PCAPNG_MAGIC:
            return _Prefixed(head, raw), head, gz  # type: ignore[return-value]
        if not head:
            raise CaptureError(f"{path}: empty file, not a capture")
        raise CaptureError(
            f"{path}: not a pcap or pcapng capture (starts with {head.hex()}); "
            "save it with tcpdump -w or as pcap/pcapng in Wireshark"
        )
    except CaptureError:
        _close(raw)
        raise


def scan(path: str, file_index: int, info: FileInfo, esp: EspTable | None) -> Iterator[list[Record]]:
    """Yield batches of records that need the general decoder.

    With an `esp` table, ESP is counted into it on the way and not yielded (see
    the module's docstring).  Problems with the file end the scan with `info.warning` set.
    """
    stream, magic, gz = open_capture(path)
    try:
        if magic == PCAPNG_MAGIC:
            info.format = "pcapng"
            yield from _scan_pcapng(stream, path, file_index, info, esp)
        else:
            endian, scale = PCAP_MAGICS[magic]
            info.format = "pcap" if scale == 1e-6 else "pcap-ns"
            mapped = _mapped(path)
            if mapped is not None:
                with mapped:
                    yield from _scan_pcap_mapped(mapped, path, endian, scale, file_index, info, esp)
            else:
                yield from _scan_pcap(stream, endian, scale, file_index, info, esp)
    except (OSError, EOFError) as e:  # gzip/zlib errors mid-stream are OSError/EOFError
        info.warning = f"read error after {info.packets} packets: {e}"
    finally:
        stream.close()  # and the file under it (never standard input)
    if gz is not None and gz.damage:
        _gzip_damage(info, gz)


def _gzip_damage(info: FileInfo, gz: _Gunzip) -> None:
    """Put where the gzip data broke in front of the reader's warning (whose offsets are then
    in the decompressed data)."""
    last = "; " + info.warning.replace("at byte", "at decompressed byte") if info.warning else ""
    if info.truncated_at is None and not gz.garbage:
        info.truncated_at = gz.size
    info.warning = f"{gz.damage} (after {gz.size} decompressed bytes){last}"


def same_datagram(a, i: int, b, j: int, n: int) -> bool:
    """a[i:i+n] and b[j:j+n] (IP headers on) are the same IP datagram: every byte equal but the TTL or hop
    limit and the IPv4 header checksum, which a router changes between its two interfaces."""
    if n >= 20 and a[i] >> 4 == 4:
        return a[i : i + 8] == b[j : j + 8] and a[i + 9] == b[j + 9] and a[i + 12 : i + n] == b[j + 12 : j + n]
    if n >= 40 and a[i] >> 4 == 6:
        return a[i : i + 7] == b[j : j + 7] and a[i + 8 : i + n] == b[j + 8 : j + n]
    return False  # not IP: a repeated ARP or BPDU is no copy to speak of


def ip_start(linktype: int, frame, p: int, n: int) -> int:
    """How far into frame[p:p+n] its IP header starts (past 802.1Q/802.1ad tags on Ethernet); -1 if unknown."""
    lt = LINK_TYPES.get(linktype)
    if lt is None:
        return -1
    at = lt.ip_at
    if linktype == ETHERNET:
        while at + 4 <= n and frame[p + at - 2 : p + at] in VLAN_TAGS:
            at += 4
    return at if at < n else -1


class Previous:
    """The frame before, for the frame-by-frame reader (live): time, order and copies."""

    __slots__ = ("quality", "buf", "at", "size", "time")

    def __init__(self, quality: Quality):
        self.quality = quality
        self.buf, self.at, self.size, self.time = b"", 0, -1, NEVER

    def copy(self, ref: int, ts: float, linktype: int, buf, p: int, caplen: int, wirelen: int) -> bool:
        """Count this frame's clock and cut; True (and counted) if it is a copy of the frame before."""
        q = self.quality
        if ts <= self.time:
            q.clock(ref, ts, self.time)
        elif not ts and self.time == NEVER:  # the first frame, at 0
            q.zero_time += 1
        if caplen < wirelen:
            q.cut_short(ref, caplen)
        ip = ip_start(linktype, buf, p, caplen)
        p, n = p + ip, caplen - ip if ip >= 0 else -1
        copy = n == self.size >= 0 and abs(ts - self.time) <= COPY_GAP and same_datagram(self.buf, self.at, buf, p, n)
        if copy:
            q.copy(ref, self.buf[self.at : self.at + n] != buf[p : p + n])
        self.buf, self.at, self.size, self.time = buf, p, n, ts
        return copy


def fast_esp(buf: bytes, p: int, end: int, fast, esp: EspTable, ts: float, ref: int) -> bool:
    """Count plain IPv4 ESP at buf[p:end] into `esp`; False if it is anything else.

    An in-sequence packet of a known flow is counted right here (the same
    update as the first branch of `EspTable.add`); everything else goes to
    `EspTable.add`.  `_PcapWalker.walk` has the same steps inline.
    """
    unpack, etype_at, l2 = fast
    ip = p + l2
    if end - ip < 36:
        return False
    if etype_at is None:
        etype, (vhl, size, frag, proto, dst, w0, w1, w2, w3) = 0x0800, unpack(buf, p)
    else:
        etype, vhl, size, frag, proto, dst, w0, w1, w2, w3 = unpack(buf, p + etype_at)
    if etype != 0x0800 or vhl != 0x45 or frag & 0x3FFF:  # not IPv4, options, a fragment
        return False
    natt = esp.natt_port
    if proto == 50:
        spi, seq, ports = w0, w1, 0
    elif proto == 17 and ((w0 >> 16) == natt or (w0 & 0xFFFF) == natt) and 16 <= w1 >> 16 <= size - 20:
        spi, seq, ports = w2, w3, w0  # not a keepalive padded to the Ethernet minimum, say
    else:
        return False
    if not spi:  # SPI 0 is reserved (RFC 4303 2.1): not ESP
        return False
    h = esp.hot.get(spi)
    if h is not None and h[5] == dst and seq == h[4] + 1:  # esp.PACKETS, BYTES, LAST_TIME, LAST_FRAME, SEQ_MAX, DST
        h[0] += 1
        h[1] += size
        h[2] = ts
        h[3] = ref
        h[4] = seq
    elif ports and _ike_without_marker(buf, ip + 28, ip + size):
        return False  # the general decoder reports it
    else:
        esp.add(dst << 32 | spi, "udp" if ports else "esp", ports >> 16, ports & 0xFFFF, buf[ip + 12 : ip + 16],
                buf[ip + 16 : ip + 20], seq, size, ts, ref)
    return True


def _ike_without_marker(buf, p: int, end: int) -> bool:
    """decode.packet.ike_without_marker(buf[p:end]), its cheap half first: an ISAKMP length field (at 24) equal
    to the length of the payload.  The decoder is imported only for such a payload: the helper of a two-core
    read seldom meets one, and is smaller without it."""
    end = min(end, len(buf))
    if end - p < 28 or _U32(buf, p + 24)[0] != end - p:
        return False
    from ikeflow.decode.packet import ike_without_marker

    return ike_without_marker(buf[p:end])


def _mapped(path: str):
    """The file memory-mapped (regular files only), or None."""
    if path == "-":
        return None
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode) or os.fstat(f.fileno()).st_size == 0:
                return None
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    if mm[:2] == GZIP_MAGIC:
        mm.close()
        return None
    if hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_SEQUENTIAL)
    return mm


def _etype_at(fast) -> int:
    """For the compiled inline path: where a FAST entry's link type has its ethertype (-1: raw IP)."""
    return -1 if fast[1] is None else fast[1]


def _inline(fast) -> tuple:
    """The inline path's reader of a frame's IPv4 header (a FAST entry, None: no inline path), its offset
    from the record header and the link header's length (no inline path: a length no record reaches)."""
    if fast is None:
        return None, 16, 1 << 40
    unpack, at, l2 = fast
    if at is None:  # no ethertype: read the IP header with a fake one in front
        raw = unpack
        unpack, at = (lambda b, o: (IPV4_ETHERTYPE, *raw(b, o))), 0
    return unpack, at + 16, l2


class _PcapWalker:
    """The hot loop over classic pcap records, shared by the mapped and the streamed reader.

    `start`: where records begin in the buffers walked; the copy check looks back no further.
    `firsts`: given to the helper of a two-core read (see `_more`)."""

    def __init__(self, endian: str, scale: float, linktype: int, file_index: int, esp: EspTable | None,
                 quality: Quality, start: int, firsts: set[int] | None = None):
        self.rec = struct.Struct(endian + "IIII").unpack_from
        self.scale, self.linktype, self.esp = scale, linktype, esp
        self.quality, self.start = quality, start
        self.base = self.ref = self.decoded = frame_ref(file_index, 0)  # decoded: the last frame not counted inline
        self.first = self.last = None
        self.fast = FAST.get(linktype) if esp is not None else None
        self.unpack, self.ip_at, self.l2 = _inline(self.fast)
        self.need = self.l2 + 36  # IPv4 header and 16 bytes of payload
        self.big = endian == ">"
        self.corrupt: int | None = None  # offset of a record header with an impossible length
        self.firsts = firsts
        self.pending: dict[int, list[tuple]] = {}  # flow key -> esp.add arguments held back (see _more)
        self.flood = 0  # the frame from which there were too many flows pending: the decoder counts the newer flows

    def walk(self, buf, off: int, n: int, span: int) -> tuple[int, list[Record]]:
        """Records starting in buf[off:off+span] that end by n; returns where it stopped and the
        records for the general decoder.  Stops early at a record cut short by the end of buf.

        The next in-sequence packet of a known plain IPv4 ESP flow, most of a gateway's traffic, is
        counted right in the loop (a call per packet would cost a third of the speed); other plain IPv4
        ESP goes to `_esp_v4`, IPv6 and tagged frames to `_beyond`, the rest to `_general`."""
        q, esp = self.quality, self.esp
        if self.pending:
            self.settle(esp.flows)
        stop = min(n - 15, off + span)
        if self.first is None and off < stop:
            sec, frac = self.rec(buf, off)[:2]
            self.first = sec + frac * self.scale
            if not self.first:
                q.zero_time += 1
        ref, ts, decoded = self.ref, self.last if self.last is not None else NEVER, self.decoded
        batch: list[Record] = []
        rec, scale, esp_v4, beyond, general = self.rec, self.scale, self._esp_v4, self._beyond, self._general
        unpack, at, need, inline_more = self.unpack, self.ip_at, self.need, self._inline_more
        hot_get, natt = (esp.hot.get, esp.natt_port) if esp is not None else (None, 0)
        compiled = _compiled.pcap if _compiled is not None and unpack is not None else None
        if compiled is not None:
            big, etype_at, l2, ethernet = self.big, _etype_at(self.fast), self.l2, self.linktype == ETHERNET
        while off < stop:
            if compiled is not None:
                off, ts, ref = compiled(buf, off, stop, n, ts, ref, scale, big, esp.hot, natt, etype_at, l2, need,
                                        ethernet, not (self.pending or self.flood), Record, MARK, b"", batch)
                if off >= stop:
                    break
            sec, frac, caplen, wirelen = rec(buf, off)
            end = off + 16 + caplen
            if end > n:
                if caplen > MAX_RECORD:
                    self.corrupt = off
                break
            ref += 1
            t = sec + frac * scale
            if t <= ts:
                q.clock(ref, t, ts)
            ts = t
            if caplen < wirelen:
                q.cut_short(ref, caplen)
            if caplen >= need:
                etype, vhl, size, frag, proto, dst, w0, w1, w2, w3 = unpack(buf, off + at)
                if etype == IPV4_ETHERTYPE and vhl == 0x45 and not frag & 0x3FFF:
                    if proto == 50:
                        spi, seq, ports = w0, w1, 0
                    elif proto == 17 and ((w0 >> 16) == natt or (w0 & 0xFFFF) == natt) and 16 <= w1 >> 16 <= size - 20:
                        spi, seq, ports = w2, w3, w0  # (a UDP length that holds SPI and sequence, as the decoder asks)
                    else:
                        spi = 0  # SPI 0 is reserved (RFC 4303 2.1): not ESP
                    if spi and (h := hot_get(spi)) is not None and h[5] == dst and seq == h[4] + 1:
                        h[0] += 1
                        h[1] += size
                        h[2] = ts
                        h[3] = ref
                        h[4] = seq
                        off = end
                        continue
                    decoded = (esp_v4(buf, off, caplen, wirelen, ts, ref, decoded, batch, dst, spi, seq, ports, size)
                               if spi else general(buf, off, caplen, wirelen, ts, ref, decoded, batch))
                elif inline_more(buf, off, caplen, wirelen, etype, ts, ref, batch):  # IPv6, or behind VLAN tags
                    decoded = ref
                else:
                    decoded = beyond(buf, off, caplen, wirelen, etype, ts, ref, decoded, batch)
            else:
                decoded = general(buf, off, caplen, wirelen, ts, ref, decoded, batch)
            off = end
        self.ref, self.decoded = ref, decoded
        if ref != self.base:
            self.last = ts
        return off, batch

    def _inline_more(self, buf, off: int, caplen: int, wirelen: int, etype: int, ts: float, ref: int,
                     batch: list[Record]) -> bool:
        """Count the frame at `off` (its clock and cut counted; `etype`: what the link type's fixed offset holds)
        if it is the next in sequence of a known ESP flow over IPv6 or behind 802.1Q/802.1ad tags, plain or
        UDP-encapsulated, as `_more` counts it (with its MARK record); else False, for `_beyond`.  One call for
        what `_beyond` and `_more` take two calls and more steps for: most of such traffic."""
        if self.pending or self.flood:
            return False
        ip, end = off + 16 + self.l2, off + 16 + caplen
        if self.linktype == ETHERNET:
            while etype in VLAN_ETHERTYPES and ip + 4 <= end:
                etype = (buf[ip + 2] << 8) | buf[ip + 3]
                ip += 4
        if etype == IPV6_ETHERTYPE:
            if ip + 76 > end:
                return False
            v, plen, proto, dst_hi, dst_lo, w0, w1, w2, w3, w_ike = _IP6_INLINE(buf, ip)
            dst, body, size = (dst_hi << 64) | dst_lo, 40, 40 + plen
            if v >> 4 != 6 or not dst >> 32:  # (an address that an IPv4 flow's destination could equal)
                return False
        elif etype == IPV4_ETHERTYPE:
            if ip + 56 > end:
                return False
            vhl, size, frag, proto, dst, w0, w1, w2, w3, w_ike = _IP4_INLINE(buf, ip)
            if vhl != 0x45 or frag & 0x3FFF:
                return False
            body = 20
        else:
            return False
        if ip + size > end:  # cut by the capture, or a length that does not fit
            return False
        if proto == 50:
            spi, seq = (w0, w1) if size - body >= 8 else (0, 0)
        elif proto == 17:
            natt, udp_len = self.esp.natt_port, w1 >> 16
            if ((w0 >> 16) != natt and (w0 & 0xFFFF) != natt) or IKE_PORT in (w0 >> 16, w0 & 0xFFFF) \
                    or not 16 <= udp_len <= size - body or (udp_len >= 36 and w_ike == udp_len - 8):
                return False  # not NAT-T, cut short, or maybe IKE without the non-ESP marker (_ike_without_marker)
            spi, seq = w2, w3
        else:
            return False
        h = self.esp.hot.get(spi) if spi else None
        if h is None or h[5] != dst or seq != h[4] + 1:
            return False
        h[0] += 1
        h[1] += size
        h[2] = ts
        h[3] = ref
        h[4] = seq
        if caplen < wirelen:
            self._counted(ref)
        batch.append(Record(ref, ts, MARK, b"", caplen))  # as _beyond does for what _more counted
        return True

    def _esp_v4(self, buf, off: int, caplen: int, wirelen: int, ts: float, ref: int, decoded: int,
                batch: list[Record], dst: int, spi: int, seq: int, ports: int, size: int) -> int:
        """Plain IPv4 ESP at `off` (its clock and cut counted) that is not the next in sequence of a known
        flow: a copy of the frame before is dropped (it repeats a sequence number), UDP that may be IKE
        without the non-ESP marker goes to the decoder, the rest is counted (`EspTable.add`).  Returns the
        last frame not counted inline (`decoded`)."""
        if self._copy(buf, off, caplen, ts, ref):
            return decoded
        ip = off + 16 + self.l2
        if ports and _ike_without_marker(buf, ip + 28, ip + size):
            batch.append(Record(ref, ts, self.linktype, buf[off + 16 : off + 16 + caplen], wirelen))
            return ref
        self.esp.add(dst << 32 | spi, "udp" if ports else "esp", ports >> 16, ports & 0xFFFF,
                     buf[ip + 12 : ip + 16], buf[ip + 16 : ip + 20], seq, size, ts, ref)
        return decoded

    def _general(self, buf, off: int, caplen: int, wirelen: int, ts: float, ref: int, decoded: int,
                 batch: list[Record]) -> int:
        """A frame for the decoder, unless it is a copy of the decoded frame before it."""
        if decoded != ref - 1 or not self._copy(buf, off, caplen, ts, ref):
            batch.append(Record(ref, ts, self.linktype, buf[off + 16 : off + 16 + caplen], wirelen))
        return ref

    def _beyond(self, buf, off: int, caplen: int, wirelen: int, etype: int, ts: float, ref: int, decoded: int,
                batch: list[Record]) -> int:
        """A frame that is not plain IPv4 where the inline path looks (`etype`): IPv6, or behind VLAN tags
        (`_more`), else `_general`."""
        got = self._more(buf, off + 16, off + 16 + caplen, etype, caplen < wirelen, ts, ref)
        if not got:
            return self._general(buf, off, caplen, wirelen, ts, ref, decoded, batch)
        if got == DECODE:
            batch.append(Record(ref, ts, self.linktype, buf[off + 16 : off + 16 + caplen], wirelen))
        elif got == COUNTED:  # it keeps its place among the records put in time order
            batch.append(Record(ref, ts, MARK, b"", caplen))
        return ref

    def _more(self, buf, p: int, end: int, etype: int, cut: bool, ts: float, ref: int) -> int:
        """The ESP that the inline IPv4 path leaves to the decoder, at buf[p:end] (the frame; `etype`: what
        the fixed offset of the link type holds): IPv6 (plain or UDP-encapsulated) and IPv4 or IPv6 behind
        802.1Q/802.1ad tags.  OTHER: not such ESP, the caller goes on; COUNTED: counted here; COPY: a copy
        of the frame before, dropped; DECODE: ESP for the decoder.

        The decoder used to count these frames: so that the analysis stays what it was, it still counts
        the first packet of each flow (which makes the peer pair when the pair is new, and the flow when
        it gets to it), and the packets of the flow read before it did so are held back (`pending`) and
        counted, in order, right after (`settle`).  The helper of a two-core read (`firsts` set) has no
        decoder behind it: it hands over the first packet of each such flow and counts the rest, which
        the main process adds to the flow after the first (`_two_cores`)."""
        linktype = self.linktype
        lt = LINK_TYPES[linktype]
        if lt.ethertype_at is None:  # raw IP: the version says
            ip = p
            etype = IPV6_ETHERTYPE if buf[ip] >> 4 == 6 else IPV4_ETHERTYPE
        else:
            ip = p + lt.ip_at
            if linktype == ETHERNET:
                while etype in VLAN_ETHERTYPES and ip + 4 <= end:
                    etype = (buf[ip + 2] << 8) | buf[ip + 3]
                    ip += 4
        natt = self.esp.natt_port
        if etype == IPV6_ETHERTYPE:
            if ip + 56 > end or buf[ip] >> 4 != 6:
                return OTHER
            plen, proto, dst_hi, dst_lo, w0, w1, w2, w3 = _IP6(buf, ip)
            size, body, dst = 40 + plen, ip + 40, (dst_hi << 64) | dst_lo
            if dst < 1 << 32:  # an IPv6 address that an IPv4 flow's destination could equal
                return OTHER
            key = ((1 << 128) | dst) << 32  # as model.esp.esp_key
        elif etype == IPV4_ETHERTYPE:
            if ip + 36 > end:
                return OTHER
            vhl, size, frag, proto, dst, w0, w1, w2, w3 = _IP4(buf, ip)
            if vhl != 0x45 or frag & 0x3FFF:
                return OTHER
            body, key = ip + 20, dst << 32
        else:
            return OTHER
        datagram_end = ip + size
        if datagram_end > end:  # cut by the capture, or a length that does not fit
            return OTHER
        if proto == 50:
            if datagram_end - body < 8:
                return OTHER
            spi, seq, ports = w0, w1, 0
        elif proto == 17 and ((w0 >> 16) == natt or (w0 & 0xFFFF) == natt) and IKE_PORT not in (w0 >> 16, w0 & 0xFFFF):
            udp_end = body + (w1 >> 16)
            if not body + 16 <= udp_end <= datagram_end or _ike_without_marker(buf, body + 8, udp_end):
                return OTHER  # a keepalive, cut short, or IKE without the non-ESP marker
            spi, seq, ports = w2, w3, w0
        else:
            return OTHER
        if not spi:  # IKE after the non-ESP marker (SPI 0 is reserved, RFC 4303 2.1)
            return OTHER
        key |= spi
        esp, pending = self.esp, self.pending.get(key) if self.pending else None
        if pending is None and self.flood and ((f := esp.flows.get(key)) is None or f.first_frame >= self.flood):
            return OTHER  # a flow begun since: all of it to the decoder, as before
        if pending is None:
            h = esp.hot.get(spi)
            if h is not None and h[5] == dst and seq == h[4] + 1:
                h[0] += 1
                h[1] += size
                h[2] = ts
                h[3] = ref
                h[4] = seq
                return self._counted(ref) if cut else COUNTED
        if self._copy(buf, p - 16, end - p, ts, ref):
            return COPY
        addresses = (buf[ip + 8 : ip + 24], buf[ip + 24 : ip + 40]) if etype == IPV6_ETHERTYPE else \
            (buf[ip + 12 : ip + 16], buf[ip + 16 : ip + 20])
        args = (key, "udp" if ports >> 16 else "esp", ports >> 16, ports & 0xFFFF, *addresses, seq, size, ts, ref)
        if pending is not None:
            pending.append(args)
            return self._counted(ref) if cut else COUNTED
        if key in esp.flows or (self.firsts is not None and key in self.firsts):
            esp.add(*args)  # "udp" by the source port, as the decoder says
            return self._counted(ref) if cut else COUNTED
        if self.firsts is not None:
            if len(self.firsts) < FIRSTS:
                self.firsts.add(key)
        elif len(self.pending) < PENDING:
            self.pending[key] = []
        else:  # an SPI scan or flood, say
            self.flood = ref
        return DECODE

    def _counted(self, ref: int) -> int:
        """COUNTED, for a cut frame: remembered as the pipeline remembers a cut frame it decodes."""
        kept = self.quality.cut_decoded
        if len(kept) < CUT_KEPT:
            kept.add(ref)
        return COUNTED

    def settle(self, flows: dict | None = None) -> None:
        """Count the packets held back for flows the decoder has made (of `flows`; None: for all, at the end)."""
        esp = self.esp
        for key in [k for k in self.pending if flows is None or k in flows]:
            for args in self.pending.pop(key):
                esp.add(*args)

    def _copy(self, buf, off: int, caplen: int, ts: float, ref: int) -> bool:
        """The record at `off` is a copy of the record before it (counted as such)."""
        back = off - 16 - caplen  # where the record before starts, if it is as long as this one
        if back < self.start:
            return False
        sec, frac, length = self.rec(buf, back)[:3]
        if length != caplen or abs(ts - (sec + frac * self.scale)) > COPY_GAP:
            return False
        ip = ip_start(self.linktype, buf, off + 16, caplen)
        if ip < 0 or not same_datagram(buf, back + 16 + ip, buf, off + 16 + ip, caplen - ip):
            return False
        self.quality.copy(ref, buf[back + 16 + ip : off] != buf[off + 16 + ip : off + 16 + caplen])
        return True

    def intact(self, head) -> bool:
        """The part read so far is fit to have a helper's part put after it (`_two_cores`)."""
        return self.corrupt is None

    def tail(self) -> tuple:
        """What a helper that read the later part tells of it (`follow`)."""
        return self.ref - self.base, self.first, self.last, self.corrupt

    def follow(self, tail: tuple, shift: int) -> None:
        """Go on as if this walker had read the later part that a helper read (`tail`) itself."""
        frames, _, last, self.corrupt = tail
        self.ref += frames
        self.last = last if last is not None else self.last

    def resume_at(self, tail: tuple) -> int | None:
        """Where to read on after following a helper (`tail`): a pcap helper reads to the end."""
        return None


def _pcap_linktype(header: bytes, endian: str) -> int:
    return struct.unpack(endian + "I", header[20:24])[0] & 0x0FFFFFFF


def _scan_pcap_mapped(mm, path, endian, scale, file_index, info, esp) -> Iterator[list[Record]]:
    """Classic pcap from a memory-mapped file: no copies; pages already read are let go.  A big file is
    read on two cores (`_two_cores`) from the first record boundary past PARENT_SHARE of it."""
    n = len(mm)
    if n < 24:
        info.truncated_at = n
        info.warning = "pcap file header is cut short"
        return
    info.linktypes = [_pcap_linktype(mm[:24], endian)]
    walker = _PcapWalker(endian, scale, info.linktypes[0], file_index, esp, info.quality, 24)
    job = _pcap_job(mm, path, endian, scale, file_index) if _two(esp, n) else None
    if job is None:
        yield from _walk_mapped(mm, walker, 24, n, info)
    else:
        on = yield from _two_cores(mm, walker, _walk_mapped, job, info, esp)
        if on is not None and walker.corrupt is None:
            yield from _walk_mapped(mm, walker, on, n, info)
    yield from _settled(walker)
    _pcap_end(walker, info, info.bytes_read, n)


def _pcap_job(mm, path: str, endian: str, scale: float, file_index: int) -> tuple | None:
    """The helper's job (`_helper`, but the ESP table and the spool) for a two-core read of the mapped pcap
    `mm`: from the first record boundary past PARENT_SHARE of it; None if there is none."""
    split = _resync(mm, endian, scale, max(24, int(len(mm) * PARENT_SHARE["pcap"])))
    if split is None or split <= 24:
        return None
    return "pcap", path, split, file_index, (endian, scale, _pcap_linktype(mm[:24], endian))


def _pcapng_job(mm, path: str, file_index: int) -> tuple | None:
    """As `_pcap_job`, for a mapped pcapng: from an Enhanced Packet Block past PARENT_SHARE of it."""
    head = _pcapng_head(mm, file_index)
    split = _pcapng_resync(mm, head[0], int(len(mm) * PARENT_SHARE["pcapng"])) if head else None
    return None if split is None else ("pcapng", path, split, file_index, head)


def _two(esp, size: int) -> bool:
    """A file of `size` bytes is worth a second core (and there is one)."""
    return esp is not None and size >= PARALLEL_MIN and _cpus() > 1


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _resync(mm, endian: str, scale: float, start: int) -> int | None:
    """The first record boundary at or after `start`: a header whose length, time and the
    headers of the next 16 records chained after it all look right; None if not found nearby."""
    rec = struct.Struct(endian + "IIII").unpack_from
    n = len(mm)
    first_sec = rec(mm, 24)[0]
    frac_limit = 1_000_000 if scale == 1e-6 else 1_000_000_000
    snaplen = struct.unpack_from(endian + "I", mm, 16)[0] or MAX_RECORD

    def plausible(off: int) -> bool:
        if off + 16 > n:
            return False
        sec, frac, caplen, wirelen = rec(mm, off)
        return (frac < frac_limit and caplen <= snaplen and caplen <= MAX_RECORD and caplen <= wirelen
                and abs(sec - first_sec) < 10 * 365 * 86400)

    for pos in range(start, min(start + (1 << 20), n - 16)):
        off, chained = pos, 0
        while chained < 16 and plausible(off):
            off += 16 + rec(mm, off)[2]
            chained += 1
            if off == n:
                return pos
        if chained == 16:
            return pos
    return None


def _two_cores(mm, walker, walk, job: tuple, info: FileInfo, esp) -> Iterator[list[Record]]:
    """Read a mapped capture on two cores: a helper process (`_helper`, on `job`; `prestart` may have
    started it already) counts the ESP of the part from `split` (job[2]) on and spools its other records
    a batch at a time; this process reads the part before (`walk`, from the walker's start), then hands
    on the helper's records, renumbered, as they come, and merges the helper's ESP flows when it has them.
    The flows whose first packet in the later part the helper handed over (`_PcapWalker._more`) are
    merged after the last record.

    The helper's flows come before the packets that the decoder counts from here on, so these are held
    (`EspTable.hold`) until the helper's end, and so are the cut frames it remembers (`_HeldRefs`).
    Returns where this process reads on: None at the end of the file; `split` when the helper read
    nothing that was handed on (it could not be started, it failed at once, or the part before is
    broken or not what it was told); the block where the helper stopped because only a read from the
    start goes on past it (pcapng: a new section or interface).  A helper that fails halfway is done
    over here (`_help`: once for its counts, which come first, then for the records past those handed on)."""
    split = job[2]
    spool, helper = _prestarted(job, esp, len(mm)) or _spawn(job, esp)
    try:
        yield from walk(mm, walker, walker.start, split, info)
        if helper is None or not walker.intact(job[-1]):
            return split
        yield from _settled(walker)
        shift, quality = walker.ref - walker.base, info.quality
        esp.hold()
        cut, quality.cut_decoded = quality.cut_decoded, _HeldRefs()
        spooled, handed, result = _Spool(spool, helper), None, None  # handed: the helper's last record handed on

        def settle(done: tuple) -> None:
            """The helper's flows and capture quality merged, then what was held since."""
            nonlocal result
            result, (flows, _, tail, _, later) = done, done
            esp.merge(flows, shift)
            esp.release()
            first = tail[1]
            if first is not None and walker.last is not None and first <= walker.last:  # at the seam
                quality.order(walker.ref + 1, first, walker.last)
            held, quality.cut_decoded = quality.cut_decoded, cut
            quality.merge(later, shift)
            cut.update(held[: max(0, CUT_KEPT - len(cut))])

        try:
            file = split_ref(walker.base)[0]
            while (got := spooled.next()) is not None:
                rows, dropped, last, info.bytes_read = got
                if last is not None:
                    handed = last
                batch = _Compacted([Record(ref + shift, ts, linktype, data, wirelen)
                                    for ref, ts, linktype, data, wirelen in rows])
                batch.dropped, batch.file = dropped, file
                yield batch
                if result is None and len(esp.held) > HELD_MAX:  # hold no more: wait for the helper's flows
                    if spooled.wait() is None:
                        break
                    settle(spooled.result)
            if result is None and spooled.result is not None:
                settle(spooled.result)
            elif result is None and handed is not None:  # it failed halfway: its part again, past what was handed on
                work = _help((*job, esp.fresh()))
                while True:  # first for what it counts, which comes before the records handed on from here
                    try:
                        next(work)
                    except StopIteration as done:
                        settle(done.value)
                        break
                for batch, info.bytes_read in _help((*job, esp.fresh())):
                    if batch and batch[-1].ref > handed:
                        yield [Record(r.ref + shift, r.time, r.linktype, r.data, r.wirelen)
                               for r in batch if r.ref > handed]
        finally:
            if result is None:  # nothing to merge: what was held is counted as it is
                esp.release()
                held, quality.cut_decoded = quality.cut_decoded, cut
                cut.update(held[: max(0, CUT_KEPT - len(cut))])
        if result is None:
            return split
        flows, after, tail, end, later = result
        yield FLUSH  # every record decoded before the flows they begin are merged
        esp.merge(after, shift)
        walker.follow(tail, shift)
        info.bytes_read, info.packets = end, walker.ref - walker.base
        return walker.resume_at(tail)
    finally:
        spool.close()
        if helper is not None:
            if helper.poll() is None:  # stopped early, or its work is not wanted
                helper.kill()
            if helper.stdout:
                helper.stdout.close()
            helper.wait()


class _HeldRefs(list):
    """Stands in for `Quality.cut_decoded` while a helper's part is handed on: the cut frames the pipeline
    remembers, in order, to be added after the helper's own (as a one-core read adds them)."""

    add = list.append


class _Spool:
    """What a two-core read's helper writes (`_helper`), read as it comes: frames of a kind byte, a length
    and a pickle; BATCH: (records as tuples, the times of MARK records left out, the last frame, bytes
    read: `_compact`), then RESULT: what `_help` returns."""

    def __init__(self, spool, helper):
        import pickle
        import time

        self.fd, self.helper, self.at = spool.fileno(), helper, 0
        self.loads, self.sleep = pickle.loads, time.sleep
        self.result = None  # the helper's RESULT, once read

    def wait(self) -> tuple | None:
        """Wait for the helper's end, handing on nothing: its RESULT (kept in `result`), None if it failed."""
        at = self.at
        while (frame := self._frame(at)) is not None:
            kind, end = frame
            if kind == RESULT:
                self.result = self._load(at, end)
                return self.result
            at = end
        return None

    def next(self) -> tuple | None:
        """The next batch, waiting for it; None at the helper's end (`result`: None if it failed)."""
        frame = self._frame(self.at)
        if frame is None:  # it ended without its result, and everything it wrote is read
            return None
        (kind, end), at = frame, self.at
        self.at = end
        got = self._load(at, end)
        if kind == RESULT:
            self.result = got
            return None
        return got

    def _frame(self, at: int) -> tuple[bytes, int] | None:
        """(kind, where the next begins) of the frame at `at` once it is whole, waiting for the helper to
        write it; None if the helper ended without."""
        ended = False
        while True:
            head = os.pread(self.fd, 9, at)
            if len(head) == 9:
                end = at + 9 + int.from_bytes(head[1:], "little")
                if os.fstat(self.fd).st_size >= end:
                    return head[:1], end
            if ended:
                return None
            if self.helper.poll() is not None:
                ended = True  # one more look: it may have written its last frame just before it ended
            else:
                self.sleep(WAIT)

    def _load(self, at: int, end: int):
        """The pickle of the frame at `at`; None if it is not what the helper writes (it failed)."""
        try:
            return self.loads(os.pread(self.fd, end - at - 9, at + 9))
        except Exception:
            return None


HELPER = "from ikeflow.sources.capture import _helper; _helper()"  # what the helper process runs
BATCH, RESULT = b"B", b"R"  # kinds of frames in a two-core read's spool
WAIT = 0.002  # s between two looks at the spool of a helper that has not written its next batch yet
HELD_MAX = 1 << 15  # ESP packets decoded past the seam held for the helper's flows, at most (then it waits for them)


# the helper `prestart` started, until taken or ended: (job, ESP settings, the file as it was, spool, helper)
_early: tuple | None = None


def prestart(path: str, esp: EspTable) -> None:
    """Start now the helper that a two-core read of the capture file `path` would start (a regular pcap or
    pcapng file of PARALLEL_MIN or more, and a second core), so that it starts while this process imports
    and sets up the analysis (about 60 ms).  `esp`: an empty table with the settings of the one the read
    counts into.  The read of `path` takes the helper over if it reads the same file, unchanged, on two
    cores with the same job; else it is ended (`cancel_prestart`), at the latest at exit.  Never raises:
    the read reports what is wrong with the file."""
    global _early
    if _early is not None:
        return
    try:
        seen = _identity(path)
        if seen is None:  # not a regular file (a named pipe must not be opened twice), or none at all
            return
        mm = _mapped(path)
        if mm is None:
            return
        with mm:
            magic, job = bytes(mm[:4]), None
            if not _two(esp, len(mm)):
                return
            if magic == PCAPNG_MAGIC:
                job = _pcapng_job(mm, path, 0)
            elif magic in PCAP_MAGICS and len(mm) >= 24:
                job = _pcap_job(mm, path, *PCAP_MAGICS[magic], 0)
        if job is None:
            return
        spool, helper = _spawn(job, esp)
    except Exception:  # the read will say what is wrong, or start its helper itself
        return
    if helper is None:
        spool.close()
        return
    _early = (job, esp.settings, seen, spool, helper)


def _identity(path: str) -> tuple | None:
    """(device, inode, size, modification time) of the regular file `path`, or None: a file that changed
    since `prestart` looked at it is not the one its helper reads."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def _prestarted(job: tuple, esp, size: int) -> tuple | None:
    """(spool, helper) of the helper `prestart` started for `job` with `esp`'s settings on the file as it is
    now (mapped: `size` bytes), or None (one started for anything else is ended)."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    seen = early[2]
    if early[:2] == (job, esp.settings) and seen[2] == size and _identity(job[1]) == seen:
        return early[3:]
    _end(*early[3:])
    return None


def cancel_prestart() -> None:
    """End the helper `prestart` started, if no read took it (the command stopped before it read; at exit)."""
    global _early
    if _early is not None:
        early, _early = _early, None
        _end(*early[3:])


atexit.register(cancel_prestart)


def _end(spool, helper) -> None:
    """End a helper this process started (by its PID: Popen's own) and close its spool."""
    if helper.poll() is None:
        helper.kill()
    helper.wait()
    spool.close()


def _spawn(job: tuple, esp) -> tuple:
    """(spool, helper) for `job`: a new spool file, and the helper started on it (None if it cannot be)."""
    import tempfile

    spool = tempfile.TemporaryFile()
    return spool, _start_helper((*job, esp.fresh(), spool.fileno()), spool)


def _start_helper(job: tuple, spool):
    """The helper of a two-core read, started on `job` (the arguments of `_helper`); None if it cannot be.

    A fresh interpreter that imports only this module: a forked copy of this process would count
    all of this process's memory a second time in the resident set of the two."""
    import pickle
    import subprocess

    if not sys.executable:
        return None
    home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # where ikeflow/ is
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [home, os.environ.get("PYTHONPATH")])))
    try:
        helper = subprocess.Popen([sys.executable, "-S", "-c", HELPER],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  pass_fds=(spool.fileno(),), env=env)
    except OSError:
        return None
    try:
        with helper.stdin:
            pickle.dump(job, helper.stdin, pickle.HIGHEST_PROTOCOL)
    except OSError:  # it died at once: read on one core
        helper.kill()
        helper.wait()
        return None
    return helper


def _helper() -> None:
    """The helper process of a two-core read (`_two_cores`): does `_help` on the job on standard input and
    writes each batch, then what it counted, to the spool file descriptor it names (see `_Spool`; tuples,
    one pickle a frame: no pickler memo keeps records alive, and tuples are fast)."""
    import pickle
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it ends this one
    try:
        *job, esp, spool = pickle.load(sys.stdin.buffer)
        with os.fdopen(spool, "wb") as out:
            def frame(kind: bytes, what) -> None:
                data = pickle.dumps(what, pickle.HIGHEST_PROTOCOL)
                out.write(kind + len(data).to_bytes(8, "little") + data)
                out.flush()

            work = _help((*job, esp))
            while True:
                try:
                    batch, at = next(work)
                except StopIteration as done:
                    frame(RESULT, done.value)
                    break
                frame(BATCH, (*_compact(batch), at))
    except Exception:  # the main process reads this part itself
        sys.exit(1)


def _compact(batch: list[Record]) -> tuple[list[tuple], list[float], int | None]:
    """A helper's batch as the spool takes it: the records as tuples, but for the MARK records that cannot
    change what `_in_time_order` does with them; the times of those, in order (it counts the ones earlier
    than what it let through before as `late`, as it would have); the batch's last frame.

    Left out: a MARK record that is not the batch's first, with more than HOLD records kept after it and none
    after it earlier than it.  It would be let through with this batch and not be the last let through,
    and no record's place or `late` count depends on it.  On the mix most frames of IPv6 and tagged flows
    are such: they are not pickled, unpickled and sorted again."""
    rows: list[tuple] = []
    dropped: list[float] = []
    after, low = 0, float("inf")
    for i in range(len(batch) - 1, -1, -1):
        r = batch[i]
        t = r.time
        if r.linktype == MARK and after > HOLD and t <= low and i:
            dropped.append(t)
        else:
            rows.append((r.ref, t, r.linktype, r.data, r.wirelen))
            after += 1
        if t < low:
            low = t
    rows.reverse()
    dropped.reverse()  # (each one no later than those after it: in order)
    return rows, dropped, batch[-1].ref if batch else None


class _Compacted(list):
    """A batch of a helper's records without the MARK records left out (`_compact`): `dropped`, their times,
    and `file`, the index of their file."""

    __slots__ = ("dropped", "file")


def _help(job: tuple) -> Iterator[tuple[list[Record], int]]:
    """A two-core read's helper's work on `job` (fmt, path, split, file_index, head, an empty EspTable):
    counts the ESP of the file from `split` on and yields each batch of the other records with the bytes
    read so far; returns the flows it counted, those whose first packet it handed over (kept apart), the
    walker's tail, the bytes read and the capture quality."""
    fmt, path, split, file_index, head, esp = job
    mm, firsts, info = _mapped(path), set(), FileInfo(path)
    if mm is None:
        raise CaptureError(f"{path}: cannot be mapped again to read its later part")
    if fmt == "pcap":
        walker, walk = _PcapWalker(*head, file_index, esp, Quality(), 24, firsts), _walk_mapped
    else:
        walker, walk = _PcapngWalker(file_index, esp, info, head, firsts), _walk_pcapng
        walker.before_seam(mm, split)
    for batch in walk(mm, walker, split, len(mm), info):
        yield batch, info.bytes_read
    after = type(esp.flows)()  # the model's Flows, for the flows whose first packet is in the spool
    for key in firsts & esp.flows.keys():
        after[key] = esp.flows.pop(key)
    return esp.flows, after, walker.tail(), info.bytes_read, walker.quality


def _walk_mapped(mm, walker: "_PcapWalker", off: int, stop: int, info: FileInfo) -> Iterator[list[Record]]:
    """Walk records starting in mm[off:stop], a batch for each MAPPED_SPAN bytes; let go of the pages read
    every RESIDENT bytes (what the walker does in between depends only on the batches: they stay the same)."""
    begun, done, batch = off, off, []
    while True:
        new, more = walker.walk(mm, off, len(mm), min(RESIDENT, stop - off, begun + MAPPED_SPAN - off))
        batch += more
        info.bytes_read, info.packets = new, walker.ref - walker.base
        if (new == off or new - begun >= MAPPED_SPAN) and batch:
            yield batch
            batch = []
        if new == off:
            return
        if new - begun >= MAPPED_SPAN:
            begun = new
        off = new
        if hasattr(mm, "madvise") and off - done >= RESIDENT:  # keep the resident set small
            start = done - done % mmap.PAGESIZE
            end = off - off % mmap.PAGESIZE
            mm.madvise(mmap.MADV_DONTNEED, start, end - start)
            done = end


def _settled(walker: _PcapWalker) -> Iterator[list[Record]]:
    """FLUSH if packets are held back for flows whose first packet the decoder has not counted yet; then
    count them (after FLUSH every record read has been decoded)."""
    if walker.pending:
        yield FLUSH
        walker.settle()


def _pcap_end(walker: _PcapWalker, info: FileInfo, off: int, n: int) -> None:
    if walker.corrupt is not None:
        info.truncated_at = walker.corrupt
        info.warning = f"corrupt record header at byte {walker.corrupt}"
    elif off < n:
        info.truncated_at = off
        info.warning = f"capture ends inside a record at byte {off} (cut short while writing?)"
    _finish(info, walker.ref - walker.base, walker.first, walker.last)


def _scan_pcap(stream, endian, scale, file_index, info, esp) -> Iterator[list[Record]]:
    """Classic pcap from a stream (stdin, gzip), chunk by chunk."""
    header = stream.read(24)
    if len(header) < 24:
        info.truncated_at = len(header)
        info.warning = "pcap file header is cut short"
        return
    info.linktypes = [_pcap_linktype(header, endian)]
    walker = _PcapWalker(endian, scale, info.linktypes[0], file_index, esp, info.quality, 0)
    buf, off, consumed = b"", 0, 24  # consumed: where buf starts in the file
    while walker.corrupt is None:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        info.bytes_read += len(chunk)
        keep = max(0, off - LOOKBACK)  # the records just walked stay, for the copy check of the next one
        consumed += keep
        buf = buf[keep:] + chunk
        off, batch = walker.walk(buf, off - keep, len(buf), len(buf))
        info.packets = walker.ref - walker.base
        if batch:
            yield batch
    if walker.corrupt is not None:
        walker.corrupt += consumed
    yield from _settled(walker)
    _pcap_end(walker, info, consumed + off, consumed + len(buf))


def _finish(info: FileInfo, frames: int, first, last) -> None:
    info.packets, info.first_time, info.last_time = frames, first, last


def _scan_pcapng(stream, path: str, file_index: int, info: FileInfo, esp) -> Iterator[list[Record]]:
    """pcapng: memory-mapped when it can be (pages already read are let go; a big file on two cores, as
    pcap), else chunk by chunk."""
    walker = _PcapngWalker(file_index, esp, info)
    mapped = _mapped(path)
    if mapped is not None:
        with mapped:
            n = len(mapped)
            job = _pcapng_job(mapped, path, file_index) if _two(esp, n) else None
            if job is None:
                yield from _walk_pcapng(mapped, walker, 0, n, info)
            else:
                on = yield from _two_cores(mapped, walker, _walk_pcapng, job, info, esp)
                if on is not None and walker.bad is None:
                    yield from _walk_pcapng(mapped, walker, on, n, info)
            yield from _settled(walker)
            walker.end(info, walker.stopped, n)
        return
    buf, off, consumed = b"", 0, 0  # consumed: where buf starts in the file
    while walker.bad is None:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        info.bytes_read += len(chunk)
        consumed += off
        buf = buf[off:] + chunk
        walker.at = consumed
        off, batch = walker.walk(buf, 0, len(buf), len(buf))
        info.packets = walker.ref - walker.base
        if batch:
            yield batch
    yield from _settled(walker)
    walker.end(info, consumed + off, consumed + len(buf))


def _walk_pcapng(mm, walker: _PcapngWalker, off: int, stop: int, info: FileInfo) -> Iterator[list[Record]]:
    """Blocks of a mapped pcapng from `off` that end by `stop`, a batch for each CHUNK of the file (where
    the chunks of a stream end: the same records in each); pages already read are let go."""
    walker.stopped, done = off, off - off % mmap.PAGESIZE
    for limit in range(off - off % CHUNK + CHUNK, stop + CHUNK, CHUNK):
        off, batch = walker.walk(mm, off, min(limit, stop), len(mm))
        walker.stopped = off
        info.bytes_read, info.packets = min(limit, stop), walker.ref - walker.base
        if batch:
            yield batch
        if walker.bad is not None:
            return
        if hasattr(mm, "madvise") and off - done >= RESIDENT:  # keep the resident set small
            mm.madvise(mmap.MADV_DONTNEED, done, off - off % mmap.PAGESIZE - done)
            done = off - off % mmap.PAGESIZE


def _pcapng_head(mm, file_index: int) -> tuple | None:
    """(byte order, interfaces, link types) that the blocks in front of the first packet block describe;
    None if they describe no interface."""
    walker, off = _PcapngWalker(file_index, None, FileInfo("")), 0
    while off + 8 <= len(mm) and struct.unpack_from(walker.endian + "I", mm, off)[0] not in (2, 3, 6):
        off = walker._block(mm, off, len(mm))[0]
        if off is None:
            return None
    return (walker.endian, walker.ifaces, walker.info.linktypes) if walker.ifaces else None


def _pcapng_resync(mm, endian: str, start: int) -> int | None:
    """The first Enhanced Packet Block at or after `start` that begins a chain of 16 blocks whose lengths
    agree at both ends; None if not found nearby."""
    u32, n = struct.Struct(endian + "I").unpack_from, len(mm)

    def after(off: int) -> int:  # where the block at `off` ends, if it looks like one; else 0
        if off + 12 > n:
            return 0
        blen = u32(mm, off + 4)[0]
        if blen < 12 or blen % 4 or blen > MAX_RECORD + 64 or off + blen > n or u32(mm, off + blen - 4)[0] != blen:
            return 0
        return off + blen

    for pos in range(start - start % 4, min(start + (1 << 20), n - 12), 4):
        if u32(mm, pos)[0] != 6:
            continue
        off, chained = pos, 0
        while chained < 16 and (end := after(off)):
            off, chained = end, chained + 1
            if off == n:
                return pos
        if chained == 16:
            return pos
    return None


class _PcapngWalker(_PcapWalker):
    """The hot loop over the Enhanced Packet Blocks of a pcapng file (and the other blocks on the way).

    The frame before is kept for the copy check, by IP datagram (`Previous`, whatever the link layers)."""

    def __init__(self, file_index: int, esp: EspTable | None, info: FileInfo, head: tuple | None = None,
                 firsts: set[int] | None = None):
        """`head` and `firsts`: for the helper of a two-core read, which starts past the blocks that `head`
        (`_pcapng_head`) describes and stops at a section header or an interface description."""
        self.esp, self.quality, self.info = esp, info.quality, info
        self.base = self.ref = self.decoded = frame_ref(file_index, 0)
        self.first = self.last = None
        self.firsts, self.pending, self.flood = firsts, {}, 0
        self.endian, self.ifaces = "<", []  # ifaces: (linktype, ts scale, ts offset) of each interface described
        self.sealed = head is not None
        if head is not None:
            self.endian, self.ifaces, info.linktypes = head[0], list(head[1]), list(head[2])
        self.start = self.stopped = 0  # where the walk begins and where it stopped
        self.linktype = -1
        self.unknown = self.unknown_first = 0  # packet blocks on an interface never described, the first's frame
        self.bad: str | None = None
        self.at = 0  # where the buffer walked starts in the file
        self.before = (b"", 0, -1, NEVER, -1)  # the frame before: buffer, where, captured length, time, link type

    def walk(self, buf, off: int, n: int, span: int) -> tuple[int, list[Record]]:
        """Blocks starting in buf[off:off+span] that end by n, as _PcapWalker.walk: each run of packet blocks
        on one interface is read as a pcap's records are (`_run`)."""
        esp = self.esp
        if self.pending:
            self.settle(esp.flows)
        epb = struct.Struct(self.endian + "III").unpack_from
        batch: list[Record] = []
        stop = min(n - 11, off + span)
        while off < stop and self.bad is None:
            btype, _, iface = epb(buf, off) if off + 28 <= n else (-1, 0, 0)  # too short for a packet block
            if btype == 6 or btype == 2:
                number = iface & 0xFFFF if btype == 2 else iface
                linktype, scale, tsoff = self.ifaces[number] if number < len(self.ifaces) else (-1, 1e-6, 0.0)
                self.linktype = linktype
                self.fast = FAST.get(linktype) if esp is not None else None
                self.unpack, self.ip_at, self.l2 = _inline(self.fast)
                self.need = self.l2 + 36
                new = self._run(buf, off, n, stop, btype, iface, number, scale, tsoff, batch)
                if new == off:
                    break
                off = new
            else:
                new, record = self._block(buf, off, n)
                if new is None:
                    break
                off = new
                epb = struct.Struct(self.endian + "III").unpack_from  # a section header may change it
                if record is not None:
                    batch.append(record)
        return off, batch

    def _run(self, buf, off: int, n: int, stop: int, btype: int, iface: int, number: int, scale: float,
             tsoff: float, batch: list[Record]) -> int:
        """The packet blocks of type `btype` from `off` on, while on interface word `iface` (`number`), read as
        _PcapWalker.walk reads records; returns where they end."""
        epb = struct.Struct(self.endian + "IIIIIII").unpack_from
        q, ref, decoded, linktype = self.quality, self.ref, self.decoded, self.linktype
        esp_v4, beyond, general, inline_more = self._esp_v4, self._beyond, self._general, self._inline_more
        ts = self.last if self.last is not None else NEVER
        unknown, first, longest = number >= len(self.ifaces), self.first is None, MAX_RECORD + 64
        before, prev = self.before, -1  # the frame before (for the copy check): `before`, or the block at `prev`
        unpack, ip_at, need = self.unpack, self.ip_at + 12, self.need  # (from the block: 12 bytes before a record's)
        esp = self.esp
        hot_get, natt = (esp.hot.get, esp.natt_port) if esp is not None else (None, 0)
        compiled = _compiled.pcapng if _compiled is not None and unpack is not None and not unknown else None
        if compiled is not None:
            big, etype_at, l2, ethernet = self.endian == ">", _etype_at(self.fast), self.l2, linktype == ETHERNET
        while off < stop and off + 28 <= n:
            if compiled is not None and not first:
                off, ts, ref, last = compiled(buf, off, stop, n, ts, ref, scale, tsoff, big, btype, iface, esp.hot,
                                              natt, etype_at, l2, need, ethernet, not (self.pending or self.flood),
                                              Record, MARK, b"", batch)
                if last >= 0:
                    prev, pts = last, ts
                if off >= stop or off + 28 > n:
                    break
            kind, blen, word, hi, lo, caplen, wirelen = epb(buf, off)
            if kind != btype or word != iface:
                break
            if blen < 32 or blen % 4 or blen > longest or caplen > blen - 32:
                why = f"captured length {caplen} > block" if blen >= 32 and caplen > blen - 32 else f"length {blen}"
                self.bad = f"corrupt pcapng block at byte {self.at + off} ({why})"
                break
            end = off + blen
            if end > n:
                break
            ref += 1
            if unknown:
                self.unknown, self.unknown_first = self.unknown + 1, self.unknown_first or ref - self.base
            t = ((hi << 32) | lo) * scale + tsoff
            if first:
                self.first, first = t, False
                if not t:
                    q.zero_time += 1
            elif t <= ts:
                q.clock(ref, t, ts)
            ts = t
            if caplen < wirelen:
                q.cut_short(ref, caplen)
            if caplen >= need:  # as in _PcapWalker.walk
                etype, vhl, size, frag, proto, dst, w0, w1, w2, w3 = unpack(buf, off + ip_at)
                if etype == IPV4_ETHERTYPE and vhl == 0x45 and not frag & 0x3FFF:
                    if proto == 50:
                        spi, seq, ports = w0, w1, 0
                    elif proto == 17 and ((w0 >> 16) == natt or (w0 & 0xFFFF) == natt) and 16 <= w1 >> 16 <= size - 20:
                        spi, seq, ports = w2, w3, w0
                    else:
                        spi = 0
                    if spi and (h := hot_get(spi)) is not None and h[5] == dst and seq == h[4] + 1:
                        h[0] += 1
                        h[1] += size
                        h[2] = ts
                        h[3] = ref
                        h[4] = seq
                    else:
                        self.before = before if prev < 0 else (buf, prev + 28, epb(buf, prev)[5], pts, linktype)
                        at = off + 12
                        decoded = (esp_v4(buf, at, caplen, wirelen, ts, ref, decoded, batch, dst, spi, seq, ports, size)
                                   if spi else general(buf, at, caplen, wirelen, ts, ref, decoded, batch))
                elif inline_more(buf, off + 12, caplen, wirelen, etype, ts, ref, batch):  # IPv6, or behind VLAN tags
                    decoded = ref
                else:
                    self.before = before if prev < 0 else (buf, prev + 28, epb(buf, prev)[5], pts, linktype)
                    decoded = beyond(buf, off + 12, caplen, wirelen, etype, ts, ref, decoded, batch)
            else:
                self.before = before if prev < 0 else (buf, prev + 28, epb(buf, prev)[5], pts, linktype)
                decoded = general(buf, off + 12, caplen, wirelen, ts, ref, decoded, batch)
            prev, pts = off, ts
            off = end
        self.ref, self.decoded = ref, decoded
        self.before = before if prev < 0 else (buf, prev + 28, epb(buf, prev)[5], pts, linktype)
        if ref != self.base:
            self.last = ts
        return off

    def _block(self, buf, off: int, n: int) -> tuple[int | None, Record | None]:
        """Any block but a packet block at buf[off:]: where the next begins (None: stop here) and the
        record of a simple packet block."""
        if off + 12 > n:
            return None, None
        if self.sealed and (buf[off : off + 4] == PCAPNG_MAGIC or struct.unpack_from(self.endian + "I", buf, off)[0] == 1):
            self.bad = SEALED
            return None, None
        if buf[off : off + 4] == PCAPNG_MAGIC:
            bom = buf[off + 8 : off + 12]
            self.endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
            if not self.endian:
                self.bad = f"bad pcapng section header at byte {self.at + off}"
                return None, None
            self.ifaces = []
        endian = self.endian
        btype, blen = struct.unpack_from(endian + "II", buf, off)
        if blen < _MIN_BLOCK.get(btype, 12) or blen % 4 or blen > MAX_RECORD + 64:
            self.bad = f"corrupt pcapng block at byte {self.at + off} (length {blen})"
            return None, None
        end = off + blen
        if end > n:
            return None, None
        record = None
        if btype == 3:  # simple packet block: interface 0, no timestamp
            self.ref += 1
            ref = self.ref
            (wirelen,) = struct.unpack_from(endian + "I", buf, off + 8)
            caplen = min(wirelen, blen - 16)
            linktype = self.ifaces[0][0] if self.ifaces else -1
            if not self.ifaces:
                self.unknown, self.unknown_first = self.unknown + 1, self.unknown_first or ref - self.base
            ts, q = self.last or 0.0, self.quality
            if self.first is None:
                self.first = ts
                if not ts:
                    q.zero_time += 1
            elif ts <= self.last:
                q.clock(ref, ts, self.last)
            self.last = ts
            if caplen < wirelen:
                q.cut_short(ref, caplen)
            if not self._copy(buf, off - 4, caplen, ts, ref):
                record = Record(ref, ts, linktype, buf[off + 12 : off + 12 + caplen], wirelen)
            self.decoded, self.before = ref, (buf, off + 12, caplen, ts, linktype)
        elif btype == 1:  # interface description
            linktype = struct.unpack_from(endian + "H", buf, off + 8)[0]
            scale, tsoff = _idb_options(buf, off + 16, end - 4, endian)
            self.ifaces.append((linktype, scale, tsoff))
            if linktype not in self.info.linktypes:
                self.info.linktypes.append(linktype)
        return end, record

    def _copy(self, buf, off: int, caplen: int, ts: float, ref: int) -> bool:
        """The frame at buf[off + 16 : off + 16 + caplen] (of the current link type) is the same IP datagram
        as the frame before it (counted as such)."""
        pbuf, pp, plen, pts, plt = self.before
        if plen < 0 or abs(ts - pts) > COPY_GAP:
            return False
        p = off + 16
        ip, pip = ip_start(self.linktype, buf, p, caplen), ip_start(plt, pbuf, pp, plen)
        size = caplen - ip
        if ip < 0 or pip < 0 or size != plen - pip or not same_datagram(pbuf, pp + pip, buf, p + ip, size):
            return False
        self.quality.copy(ref, pbuf[pp + pip : pp + pip + size] != buf[p + ip : p + ip + size])
        return True

    def before_seam(self, buf, at: int) -> None:
        """A two-core read's helper, before it reads from `at`: the frame before is the last packet block in
        front of it (found by the lengths that end the blocks), as for the main process that read up to it,
        so that a copy across the seam is one.  Nothing past a section header or an interface description
        (after which the helper's part is not taken: `intact`), nor past 64 blocks."""
        u32 = struct.Struct(self.endian + "I").unpack_from
        end, simple = at, False  # simple: a simple packet block (which has no time) was met on the way
        for _ in range(64):
            if end < 12:
                return
            blen = u32(buf, end - 4)[0]
            p = end - blen
            if blen < 12 or blen % 4 or p < 0 or u32(buf, p + 4)[0] != blen:
                return
            btype = u32(buf, p)[0]
            if (btype == 6 or btype == 2) and blen >= 32:
                word, hi, lo, caplen = struct.unpack_from(self.endian + "IIII", buf, p + 8)
                number = word & 0xFFFF if btype == 2 else word
                linktype, scale, tsoff = self.ifaces[number] if number < len(self.ifaces) else (-1, 1e-6, 0.0)
                ts = ((hi << 32) | lo) * scale + tsoff
                if not simple:
                    self.before = (buf, p + 28, caplen, ts, linktype)
                else:  # the simple packet block after it has its time (`_block`)
                    self.before = self.before[:3] + (ts or 0.0,) + self.before[4:]
                return
            if btype == 3 and not simple and blen >= 16:
                simple = True
                caplen = min(u32(buf, p + 8)[0], blen - 16)
                self.before = (buf, p + 12, caplen, 0.0, self.ifaces[0][0] if self.ifaces else -1)
            elif btype in (0x0A0D0D0A, 1):
                return
            end = p

    def intact(self, head) -> bool:
        return self.bad is None and (self.endian, self.ifaces) == head[:2]

    def tail(self) -> tuple:
        """As _PcapWalker.tail, with where it stopped and why (SEALED: a new section or interface)."""
        return self.ref - self.base, self.first, self.last, self.bad, self.stopped, self.unknown, self.unknown_first

    def follow(self, tail: tuple, shift: int) -> None:
        frames, _, last, bad, self.stopped, unknown, unknown_first = tail
        self.bad = None if bad == SEALED else bad  # past SEALED this walker reads on (`resume_at`)
        self.ref += frames
        self.last = last if last is not None else self.last
        if unknown:
            self.unknown += unknown
            self.unknown_first = self.unknown_first or unknown_first + shift

    def resume_at(self, tail: tuple) -> int | None:
        """Where to read on after following a helper (`tail`): the block that stopped it, if it was SEALED
        (this walker knows the sections and interfaces before it)."""
        return tail[4] if tail[3] == SEALED else None

    def end(self, info: FileInfo, off: int, n: int) -> None:
        """What the file's end tells: damage, a block cut short, packets on undescribed interfaces."""
        if self.bad:
            info.truncated_at, info.warning = off, self.bad
        elif off < n:
            info.truncated_at = off
            info.warning = f"capture ends inside a block at byte {off} (cut short while writing?)"
        if self.unknown:
            info.warning = "; ".join(filter(None, (
                f"{self.unknown} packets (the first is frame {self.unknown_first}) on an interface the file does "
                "not describe, counted as skipped", info.warning)))
        frames = self.ref - self.base
        if not info.linktypes and not frames and not info.warning:
            info.warning = "pcapng file has no interfaces"
        _finish(info, frames, self.first, self.last)


_MIN_BLOCK = {0x0A0D0D0A: 28, 1: 20, 2: 32, 3: 16, 6: 32}  # block type -> smallest valid length
SEALED = "a section header or interface description in the part of the file a two-core read's helper reads"


def _idb_options(buf: bytes, p: int, end: int, endian: str) -> tuple[float, float]:
    """Timestamp resolution and offset of an interface description block."""
    scale, tsoff = 1e-6, 0.0
    while p + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, p)
        if code == 0:
            break
        if p + 4 + length > end:  # an option past the end of the block
            break
        value = buf[p + 4 : p + 4 + length]
        if code == 9 and length >= 1:  # if_tsresol
            r = value[0]
            scale = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
        elif code == 14 and length == 8:  # if_tsoffset, seconds
            tsoff = float(struct.unpack(endian + "q", value)[0])
        p += 4 + ((length + 3) & ~3)
    return scale, tsoff


def read_files(paths: list[str], esp: EspTable, infos: list[FileInfo]) -> Iterator[list[Record]]:
    """Batches of records from several files merged on their timestamps, as one timeline.

    A single file uses the fast ESP path.  Several files are merged record by
    record so that ESP sequence tracking sees packets in time order; that goes
    through the general decoder and is slower.  Either way the records come out
    in time order, as far as holding back HOLD of them can put them there.
    """
    for path in paths:
        infos.append(FileInfo(path))
    if len(paths) == 1:
        yield from _in_time_order(scan(paths[0], 0, infos[0], esp), infos)
        return
    streams = [_records(scan(p, i, infos[i], None)) for i, p in enumerate(paths)]
    yield from _in_time_order(_batches(heapq.merge(*streams, key=lambda r: r.time)), infos)


def _in_time_order(batches: Iterator[list[Record]], infos: list[FileInfo]) -> Iterator[list[Record]]:
    """The records sorted on time (file order among equal times): each batch, and the last HOLD records (at most
    HOLD_BYTES) of the batches before it; one earlier than a record already let through is counted `late`.
    FLUSH lets through every record held.  The frames that _PcapWalker._more counted itself are held and
    sorted as the records they were before it did (MARK records, never let through): the decoder then
    gets to each record, and so to the first packet of a flow, when it did."""
    held: list[Record] = []
    let_through = NEVER
    for batch in batches:
        if type(batch) is _Compacted and batch.dropped and batch.dropped[0] < let_through:  # (see _compact)
            infos[batch.file].quality.late += bisect.bisect_left(batch.dropped, let_through)
        for r in batch:
            if not held or r.time >= held[-1].time:
                held.append(r)
            else:
                if r.time < let_through:
                    infos[split_ref(r.ref)[0]].quality.late += 1
                bisect.insort(held, r, key=_time)
        keep = size = 0
        for r in reversed(held if batch is not FLUSH else ()):
            size += r.wirelen if r.linktype == MARK else len(r.data)
            if keep == HOLD or size > HOLD_BYTES:
                break
            keep += 1
        out, held = held[: len(held) - keep], held[len(held) - keep :]
        if out:
            let_through = out[-1].time
        yield [r for r in out if r.linktype != MARK]  # even empty: a batch read is progress
    if held:
        yield [r for r in held if r.linktype != MARK]


def _time(r: Record) -> float:
    return r.time


def _batches(records: Iterator[Record]) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for r in records:
        batch.append(r)
        if len(batch) >= 4096:
            yield batch
            batch = []
    if batch:
        yield batch


def _records(batches: Iterator[list[Record]]) -> Iterator[Record]:
    for batch in batches:
        yield from batch
