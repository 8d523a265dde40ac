"""`ikeflow live IFACE`: watch IKE/ESP negotiations as they happen.

A Linux packet socket with a kernel BPF filter (compiled by libpcap through
Scapy) hands raw frames to the same sans-I/O core as `ikeflow read`: every
frame becomes a `capture.Record` numbered from 1 in capture order, plain ESP
goes through the reader's inline counter (`capture.fast_esp`), everything
else through `Analyzer.record`.  So the final report is what `ikeflow read`
prints for the same packets, e.g. for the `--write` file.

Two capture backends share one interface (`open_socket`): on Linux the
kernel hands frames over through a TPACKET_V3 ring (`PacketSocket`:
PACKET_RX_RING, shared memory, no system call per packet; IKEFLOW_LIVE_RING=0
falls back to one recvmsg per packet); elsewhere, or with `--backend scapy`,
libpcap through Scapy (`PcapSocket`).  Everything runs in one thread: the loop drains the
ring without blocking, and every quarter second refreshes the view (rich Live
on a terminal, JSON lines otherwise).  Findings, "waiting for ..." lines, ESP
rates and the kernel's drop counter (PACKET_STATISTICS) are updated once a
second.  The findings shown while capturing are `findings.find` on the
analysis so far; the final report is the same call after `Analyzer.finish`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque

import click

from ikeflow.decode import linktypes as lk
from ikeflow.cli import limit_options
from ikeflow.limits import DEFAULT, Limits
from ikeflow.model.events import MessageSeen

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE = 1, 772, 65534
SNAPLEN = 1 << 18  # = capture.MAX_RECORD, the largest record `read` accepts
RCVBUF = 64 << 20  # kernel socket buffer: absorbs bursts while the view redraws
BATCH = 2048  # frames drained per wake-up before the clock is looked at again
REFRESH = 0.25  # seconds between view refreshes
EVALUATE = 1.0  # seconds between findings / ESP rate / kernel drop updates
STALL_GRACE = 1.5  # a stall finding must persist this long before it is shown (an answer may be in flight)
WAIT_SHOWN = 2.0  # an unanswered message becomes a "waiting for ..." event after this many seconds
DRAIN = 3.0  # seconds at most to take in what arrived before the stop
WAIT_STEPS = (2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)

LIVE_HELP = """Watch IKE/ESP negotiations on INTERFACE as they happen.

\b
  sudo ikeflow live eth0
  sudo ikeflow live any --filter 'host 203.0.113.7' --write tun.pcap

Captures UDP 500, UDP 4500 and ESP (IP protocol 50), plus IP fragments and
ICMP errors, with a kernel BPF filter; --filter adds a pcap-filter expression
(ANDed).  On a terminal it shows one row per peer pair (state, last message,
retransmissions, NAT, ESP each way) and the events as they come, including
"waiting for MM6 for 12 s (3 retransmissions)" while a stall unfolds.
Without a terminal, or with --json, it prints one JSON object per line per
event: start, message, finding, esp (at most once a second per flow), and at
the end capture (packets, kernel drops) and report (the `ikeflow read --json`
document).

\b
Ctrl-C, --count or --duration end the capture with the same final report
and exit codes as `ikeflow read`: 0 nothing wrong, 1 at least one error
finding, 2 usage error or the interface cannot be captured on, 3 internal error.
Needs root or CAP_NET_RAW.  On Linux it reads the kernel's packet ring;
elsewhere (macOS, BSD), or with --backend scapy, libpcap through Scapy.
"""


class LiveError(Exception):
    """The capture cannot start: one line for the user, exit 2."""


def base_filter(ike_port: int, natt_port: int) -> str:
    """IKE, NAT-T and ESP, plus what the core needs to see around them:
    non-first IP fragments (no UDP header) and ICMP errors (they quote IKE)."""
    return (f"udp port {ike_port} or udp port {natt_port} or ip proto 50 or ip6 proto 50"
            " or (ip[6:2] & 0x1fff != 0) or (ip6 and ip6[6] == 44)"
            " or icmp[icmptype] == icmp-unreach or icmp[icmptype] == icmp-timxceed"
            " or (icmp6 and (ip6[40] == 1 or ip6[40] == 2 or ip6[40] == 3))")


# -- the packet socket ------------------------------------------------------------


class PacketSocket:
    """AF_PACKET socket on one interface (or `any`) with a kernel BPF filter."""

    name = "ring"

    def __init__(self, iface: str, expr: str):
        self.iface = iface
        self.drops = 0
        self.kernel_packets = 0
        if iface == "any":
            hatype, cooked = None, True
        else:
            hatype = _check_interface(iface)
            cooked = hatype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE)
        self.cooked = cooked
        self.loopback = iface == "any" or hatype == ARPHRD_LOOPBACK  # outgoing copies to skip
        if cooked:
            self.linktype = lk.SLL
        else:
            self.linktype = lk.RAW if hatype == ARPHRD_NONE else lk.ETHERNET
        # The filter sees what the socket returns: the link header for SOCK_RAW, the network header for SOCK_DGRAM.
        program = _compile(expr, lk.RAW if cooked or hatype == ARPHRD_NONE else lk.ETHERNET)
        kind = socket.SOCK_DGRAM if cooked else socket.SOCK_RAW
        try:
            # Protocol 0 receives nothing until bound: the filter is in place before the first packet.
            # `any` cannot be bound by name, so it listens at once and drops what came before the filter.
            s = socket.socket(socket.AF_PACKET, kind, socket.htons(ETH_P_ALL) if iface == "any" else 0)
        except PermissionError:
            raise LiveError(f"not permitted to capture on {iface}: run with sudo, or grant CAP_NET_RAW "
                            f"(sudo setcap cap_net_raw,cap_net_admin=eip {os.path.realpath(sys.executable)})") from None
        self.sock = s
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
            _attach(s, program)
            self.ring = None
            if os.environ.get("IKEFLOW_LIVE_RING", "1") != "0":  # 0: plain recvmsg, one system call per packet
                try:
                    self.ring = _Ring(s)
                except OSError:
                    pass
            if iface == "any" and self.ring is None:
                _drain(s)
            elif iface != "any":
                s.bind((iface, ETH_P_ALL))
            if self.ring is None:
                try:
                    s.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE (root), beyond rmem_max
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.stats()  # reset the kernel counters (reading them clears them)
            self.drops = self.kernel_packets = 0
        except OSError as e:
            s.close()
            if e.errno in (errno.ENODEV, errno.ENXIO):
                raise LiveError(f"no such interface: {iface} (see ip link)") from None
            if e.errno == errno.ENETDOWN:
                raise LiveError(f"interface {iface} is down: bring it up with  ip link set {iface} up") from None
            if e.errno == errno.EPERM:
                raise LiveError(f"not permitted to capture on {iface}: run with sudo, or grant CAP_NET_RAW") from None
            raise
        self.buf = bytearray(SNAPLEN)
        self.view = memoryview(self.buf)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int) -> list[tuple[int, int, bytes, int]]:
        """Up to about `limit` waiting frames as (seconds, microseconds, data, wire length), without blocking."""
        if self.ring is not None:
            return self.ring.read(limit, self.cooked, self.loopback)
        out = []
        recv, buf, view, cooked = self.sock.recvmsg_into, [self.buf], self.view, self.cooked
        flags = socket.MSG_DONTWAIT | socket.MSG_TRUNC
        for _ in range(limit):
            try:
                n, anc, _f, addr = recv(buf, 64, flags)
            except BlockingIOError:
                break
            except InterruptedError:
                break
            if addr[2] == PACKET_OUTGOING and addr[3] == ARPHRD_LOOPBACK:
                continue  # loopback: the same packet comes back as incoming (libpcap skips it too)
            caplen = n if n < SNAPLEN else SNAPLEN
            data = bytes(view[:caplen])
            if cooked:  # Linux cooked header (SLL), as libpcap builds it for `any`
                hw = addr[4]
                data = struct.pack(">HHH8sH", addr[2], addr[3], len(hw), hw[:8], addr[1]) + data
                n += 16
            if anc:
                sec, nsec = struct.unpack("qq", anc[0][2][:16])
                usec = nsec // 1000
            else:
                now = time.time()
                sec = int(now)
                usec = int((now - sec) * 1e6)
            out.append((sec, usec, data, n))
        return out

    def stats(self) -> None:
        """Add the kernel's counters since the last call (PACKET_STATISTICS resets them)."""
        try:
            packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return
        self.kernel_packets += packets
        self.drops += drops

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
        self.sock.close()


class _Ring:
    """PACKET_RX_RING, TPACKET_V3: the kernel fills blocks of frames in shared memory, no system call per
    packet.  A block is handed over when full or after RETIRE ms, so a lone IKE message waits at most that."""

    BLOCK, BLOCKS, FRAME, RETIRE = 1 << 20, 64, 1 << 11, 20
    PACKET_VERSION, TPACKET_V3, PACKET_RX_RING = 10, 2, 5

    def __init__(self, sock: socket.socket):
        import mmap

        sock.setsockopt(SOL_PACKET, self.PACKET_VERSION, self.TPACKET_V3)
        req = struct.pack("7I", self.BLOCK, self.BLOCKS, self.FRAME, self.BLOCK // self.FRAME * self.BLOCKS,
                          self.RETIRE, 0, 0)
        sock.setsockopt(SOL_PACKET, self.PACKET_RX_RING, req)
        self.mm = mmap.mmap(sock.fileno(), self.BLOCK * self.BLOCKS, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.block = 0

    def read(self, limit: int, cooked: bool, loopback: bool) -> list[tuple[int, int, bytes, int]]:
        mm, out = self.mm, []
        unpack, head = struct.unpack_from, struct.Struct("IIIII4xHH").unpack_from
        while len(out) < limit:
            base = self.block * self.BLOCK
            if not unpack("I", mm, base + 8)[0] & 1:  # TP_STATUS_USER: the block is ours
                break
            count, first = unpack("II", mm, base + 12)
            p = base + first
            for _ in range(count):
                nxt, sec, nsec, snaplen, wirelen, mac, net = head(mm, p)
                # struct sockaddr_ll after the 48-byte header: family, protocol (big endian), ifindex,
                # hatype (host order), pkttype, halen, address
                if loopback or cooked:
                    hatype, pkttype, halen = unpack("=HBB", mm, p + 56)
                    if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
                        p += nxt
                        continue
                if cooked:  # Linux cooked header (SLL), as libpcap builds it for `any`
                    start = p + net
                    proto = unpack(">H", mm, p + 50)[0]
                    data = struct.pack(">HHH", pkttype, hatype, halen) + mm[p + 60 : p + 68] + \
                        struct.pack(">H", proto) + mm[start : start + snaplen]
                    wirelen += 16
                else:
                    start = p + mac
                    data = mm[start : start + snaplen]
                out.append((sec, nsec // 1000, data, wirelen))
                p += nxt
            struct.pack_into("I", mm, base + 8, 0)  # TP_STATUS_KERNEL: hand it back
            self.block = (self.block + 1) % self.BLOCKS
        return out

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()


class PcapSocket:
    """libpcap through Scapy (`conf.L2listen` with `conf.use_pcap`): the portable backend, for macOS
    and the BSDs or where AF_PACKET is not available.  Same interface as `PacketSocket`."""

    name = "scapy"

    def __init__(self, iface: str, expr: str):
        from scapy.config import conf
        from scapy.error import Scapy_Exception

        self.iface, self.drops, self.kernel_packets = iface, 0, 0
        if iface != "any" and sys.platform.startswith("linux"):
            _check_interface(iface)  # one clear line for a missing or down interface
        conf.use_pcap = True
        if not conf.use_pcap:
            raise LiveError("the scapy backend needs libpcap (Debian: apt-get install libpcap0.8)")
        try:
            self.sock = conf.L2listen(iface=iface, filter=expr, promisc=False)
        except (OSError, Scapy_Exception) as e:
            text = str(e)
            if "ermission" in text or "not permitted" in text:
                raise LiveError(f"not permitted to capture on {iface}: run with sudo, or grant CAP_NET_RAW") from None
            raise LiveError(f"cannot capture on {iface}: {text}") from None
        self.pcap = self.sock.pcap_fd
        self.pcap.setnonblock(True)
        self.linktype = self.pcap.datalink()

    def fileno(self) -> int:
        return self.pcap.fileno()

    def read(self, limit: int) -> list[tuple[int, int, bytes, int]]:
        """Up to `limit` waiting frames as (seconds, microseconds, data, wire length), without blocking."""
        out, pcap = [], self.pcap
        for _ in range(limit):
            _ts, data = pcap.next()
            if data is None:
                break
            h = pcap.header.contents
            out.append((h.ts.tv_sec, h.ts.tv_usec, data, h.len))
        return out

    def stats(self) -> None:
        """libpcap's counters (cumulative since the capture started)."""
        from ctypes import byref

        from scapy.libs.winpcapy import pcap_stat, pcap_stats

        st = pcap_stat()
        if pcap_stats(self.pcap.pcap, byref(st)) == 0:
            self.kernel_packets, self.drops = st.ps_recv, st.ps_drop + st.ps_ifdrop

    def close(self) -> None:
        self.sock.close()


BACKENDS = {b.name: b for b in (PacketSocket, PcapSocket)}


def open_socket(backend: str | None, iface: str, expr: str):
    """The capture socket: `backend` by name, or the packet ring where Linux has it, else libpcap."""
    if backend is None:
        backend = "ring" if hasattr(socket, "AF_PACKET") else "scapy"
    return BACKENDS[backend](iface, expr)


def _check_interface(iface: str) -> int:
    """The interface's ARPHRD type; LiveError if it does not exist or is down (no root needed)."""
    try:
        socket.if_nametoindex(iface)
    except (OSError, ValueError):
        raise LiveError(f"no such interface: {iface} (see ip link)") from None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("256s", iface.encode())), 16)[0]
        except OSError:
            raise LiveError(f"no such interface: {iface} (see ip link)") from None
    if not flags & IFF_UP:
        raise LiveError(f"interface {iface} is down: bring it up with  ip link set {iface} up")
    try:
        with open(f"/sys/class/net/{iface}/type") as f:
            return int(f.read())
    except (OSError, ValueError):
        return -1


def _compile(expr: str, linktype: int):
    try:
        from scapy.arch.common import compile_filter
        from scapy.error import Scapy_Exception
    except ImportError as e:
        raise LiveError(f"cannot compile the capture filter: {e}") from None
    try:
        return compile_filter(expr, linktype=linktype)
    except ImportError:
        raise LiveError("compiling the capture filter needs libpcap: apt-get install libpcap0.8") from None
    except Scapy_Exception as e:
        text = str(e)
        why = text[text.rfind("(") + 1 : -1] if text.endswith(")") and "(" in text else text
        raise LiveError(f"bad capture filter: {why}: {expr}") from None


def _attach(sock: socket.socket, program) -> None:
    from scapy.arch.common import free_filter
    from scapy.libs.structures import sock_fprog

    SO_ATTACH_FILTER = 26
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, sock_fprog(program.bf_len, program.bf_insns))
    free_filter(program)


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(SNAPLEN, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return


class PcapWriter:
    """Classic pcap, microseconds: what `read` gets back is bit for bit what `live` analysed."""

    def __init__(self, path: str, linktype: int):
        try:
            self.f = open(path, "wb")
        except OSError as e:
            raise LiveError(f"cannot write {path}: {e.strerror or e}") from None
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))
        self.header = struct.Struct("<IIII").pack

    def write(self, sec: int, usec: int, data: bytes, wirelen: int) -> None:
        self.f.write(self.header(sec, usec, len(data), wirelen))
        self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _finding_key(f) -> tuple:
    return (f.code, f.at, f.sa.ispi if f.sa else None, f.pair, f.frames[0] if f.frames else None)


class Session:
    """One live capture: feeds the core, keeps the counters both views show."""

    def __init__(self, iface: str, pipeline, info, sink, sock):
        self.iface, self.pipeline, self.an, self.info, self.sink, self.sock = iface, pipeline, pipeline.model, info, sink, sock
        self.cpu = 0.0  # CPU seconds the capture loop used
        self.frames = 0
        self.start = time.time()
        self.rate = 0.0  # frames per second over the last EVALUATE period
        self._rate_mark = (self.start, 0)
        self.found: list = []
        self._shown: dict[tuple, str] = {}  # finding key -> severity last shown
        self._pending: dict[tuple, float] = {}  # stall finding key -> when first seen
        self._waits: dict[int, tuple] = {}  # id(run) -> (retransmissions, threshold index) last shown
        self._esp_mark: dict[bytes, tuple[float, int]] = {}  # flow key -> (time, packets) at its last event
        self.an.listeners.append(self._event)

    def _event(self, event) -> None:
        if isinstance(event, MessageSeen):
            self.sink.message(event.sa, event.seen)

    def evaluate(self, now: float) -> None:
        """Once a second: rates, findings, waits, ESP flow updates."""
        t0, n0 = self._rate_mark
        if now > t0:
            self.rate = (self.frames - n0) / (now - t0)
        self._rate_mark = (now, self.frames)
        self.snapshot_info()
        self.found = self.pipeline.findings()
        current = set()
        for f in self.found:
            key = _finding_key(f)
            current.add(key)
            if f.code == "stall" and key not in self._shown:
                first = self._pending.setdefault(key, now)
                if now - first < STALL_GRACE:
                    continue
            state = f.severity  # shown again only when it gets worse or better, not per retransmission
            if self._shown.get(key) != state:
                self._shown[key] = state
                self.sink.finding(f)
        self._pending = {k: v for k, v in self._pending.items() if k in current}
        for sa in list(self.an.sas.values()):
            for w in sa.owed(now):
                if w.seconds < WAIT_SHOWN:
                    continue
                step = sum(1 for s in WAIT_STEPS if w.seconds >= s)
                mark = (w.retransmissions, step)
                if self._waits.get(id(w.run)) != mark:
                    self._waits[id(w.run)] = mark
                    self.sink.waiting(sa, w)
        for key, f in self.an.esp.flows.items():
            last = self._esp_mark.get(key)
            if last is None or (f.packets != last[1] and now - last[0] >= 1.0):
                rate = (f.packets - last[1]) / (now - last[0]) if last else 0.0
                self._esp_mark[key] = (now, f.packets)
                self.sink.esp(f, rate)

    def snapshot_info(self) -> None:
        self.info.packets = self.frames


# -- JSON lines -----------------------------------------------------------------------


class JsonSink:
    """One JSON object per line per event, for pipes."""

    def __init__(self, out):
        from ikeflow.render.common import Frames

        self.out = out
        self.frame = Frames(1)

    def emit(self, obj: dict) -> None:
        self.out.write(json.dumps(obj) + "\n")

    def start(self, session, expr: str) -> None:
        self.emit({"event": "start", "interface": session.iface, "linktype": session.info.linktypes[0],
                   "backend": session.sock.name, "filter": expr, "time": session.start})
        self.out.flush()

    def message(self, sa, seen) -> None:
        from ikeflow.render.common import message_json

        self.out.write('{"event":"message",' + message_json(sa, seen, self.frame, False)[1:] + "\n")

    def finding(self, f) -> None:
        from ikeflow.render.common import finding_json

        self.emit({"event": "finding", **finding_json(f, self.frame)})

    def waiting(self, sa, w) -> None:
        last = w.last
        self.emit({"event": "finding", "severity": "error" if w.stalled else "warning", "code": "waiting", "at": last.label, "causes": [],
                   "frames": [self.frame(m.ref) for m in w.sends], "summary": w.text, "hint": "",
                   "ispi": sa.ispi.hex(), "next": w.wanted, "seconds": round(w.seconds, 1),
                   "retransmissions": w.retransmissions, "live": True})

    def esp(self, f, rate: float) -> None:
        from ikeflow.render.common import flow_json

        self.emit({"event": "esp", **flow_json(f, self.frame), "rate": round(rate, 1)})

    def tick(self, session, now: float) -> None:
        self.out.flush()

    def stop(self) -> None:
        self.out.flush()


# -- the terminal view -------------------------------------------------------------------


class TerminalSink:
    """rich Live: one row per peer pair, recent events below."""

    EVENTS = 10

    def __init__(self, console):
        self.console = console
        self.events: deque = deque(maxlen=200)
        self.retrans: dict[tuple, int] = {}
        self.esp_rate: dict[tuple[bytes, bytes], float] = {}
        self._esp_mark: tuple[float, dict] | None = None
        self.live = None
        self.expr = ""

    def start(self, session, expr: str) -> None:
        from rich.live import Live

        self.expr = expr
        self.live = Live(self._render(session, time.time()), console=self.console, auto_refresh=False,
                         transient=True, redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def message(self, sa, seen) -> None:
        from rich.text import Text

        from ikeflow.render.common import ip

        key = self._key(sa.initiator[0], sa.responder[0])
        if seen.retransmission:
            self.retrans[key] = self.retrans.get(key, 0) + 1
        label = seen.label + (" (again)" if seen.retransmission else "") + (f" retry:{seen.retry}" if seen.retry else "")
        notes = " ".join(f"N({n})" for _, n in seen.msg.notifies)
        style = "yellow" if seen.retransmission else "red" if seen.msg.malformed else ""
        self.events.append(Text.assemble(
            (_clock(seen.time), "dim"), "  ", f"{ip(seen.src)}:{seen.sport} → {ip(seen.dst)}:{seen.dport}  ",
            (label, style or "bold"), f"  {notes}" if notes else "", (f"  frame {seen.ref}", "dim")))

    def finding(self, f) -> None:
        from rich.text import Text

        from ikeflow.render.read_terminal import STYLE

        self.events.append(Text.assemble((_clock(time.time()), "dim"), "  ", (f"{f.severity.upper():8}", STYLE[f.severity]),
                                         f"{f.code} [{f.at}]: {f.summary}"))

    def waiting(self, sa, w) -> None:
        from rich.text import Text

        from ikeflow.render.common import ip

        style = "bold red" if w.stalled else "yellow"
        self.events.append(Text.assemble((_clock(time.time()), "dim"), "  ", ("WAITING ", style),
                                         f"{ip(sa.initiator[0])} ⇄ {ip(sa.responder[0])} {sa.mode()}: {w.text}"))

    def esp(self, f, rate: float) -> None:
        pass  # the table shows ESP per direction with its rate

    def tick(self, session, now: float) -> None:
        if self.live is not None:
            self.live.update(self._render(session, now), refresh=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    @staticmethod
    def _key(a: bytes, b: bytes) -> tuple[bytes, bytes]:
        return (a, b) if a <= b else (b, a)

    def _render(self, session, now: float):
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from ikeflow.render.common import ip

        an = session.an
        esp: dict[tuple[bytes, bytes], int] = {}
        for f in an.esp.flows.values():
            esp[(f.src, f.dst)] = esp.get((f.src, f.dst), 0) + f.packets
        if self._esp_mark is None or now - self._esp_mark[0] >= EVALUATE:
            if self._esp_mark is not None:
                t0, old = self._esp_mark
                self.esp_rate = {k: (v - old.get(k, 0)) / (now - t0) for k, v in esp.items()}
            self._esp_mark = (now, esp)
        elapsed = now - session.start
        head = Text.assemble(
            ("ikeflow live ", "bold"), (session.iface, "bold"),
            f"  {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}  {session.frames} packets ({session.rate:.0f}/s): "
            f"{an.stats.ike} IKE, {sum(esp.values())} ESP",
            (f"  kernel dropped {session.sock.drops}", "bold red") if session.sock.drops else "  no kernel drops",
            ("  Ctrl-C ends with the report", "dim"))
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col, just, wrap, least, most in (
                ("peers a ⇄ b", "left", False, None, None), ("IKE SA", "left", False, None, None),
                ("state", "left", True, 20, None), ("last (ago)", "left", False, None, None),
                ("retr", "right", False, None, None), ("NAT", "left", True, None, 12),
                ("ESP a→b", "right", False, None, None), ("ESP b→a", "right", False, None, None)):
            t.add_column(col, justify=just, no_wrap=not wrap, overflow="fold" if wrap else "ellipsis",
                         min_width=least, max_width=most)
        keys = list(an.pairs)
        for (src, dst) in esp:
            k = self._key(src, dst)
            if k not in an.pairs and k not in keys:
                keys.append(k)
        rows = []
        for k in keys:
            pair = an.pairs.get(k)
            a, b = (pair.a, pair.b) if pair else k
            last_time = pair.first_time if pair else 0.0
            sa = pair.sas[-1] if pair and pair.sas else None
            sa_text, state, last, nat = "—", Text("ESP only" if not pair or not pair.sas else ""), "", ""
            if sa is not None:
                sa_text = f"v{sa.version} {sa.ispi.hex()[:8]}" + (f" +{len(pair.sas) - 1}" if len(pair.sas) > 1 else "")
                waits = sa.owed(now)
                if waits:
                    w = max(waits, key=lambda w: w.last.time)
                    style = "bold red" if w.stalled and w.seconds >= WAIT_SHOWN else "yellow"
                    state = Text(w.text, style=style)
                else:
                    state = Text(sa.state(), style="green" if sa.ike_sa_up() else "")
                m = max((x.messages[-1] for x in pair.sas if x.messages), key=lambda m: m.time)
                last_time = max(last_time, m.time)
                arrow = "→" if m.src == a else "←"
                last = f"{m.label}{' again' if m.retransmission else ''} {arrow} {_ago(now - m.time)}"
                behind = sa.behind_nat()
                who = [r for r in "IR" if behind[r]]
                nat = {0: "", 1: f"{who[0]} behind NAT", 2: "both behind NAT"}[len(who)]
                if sa.float_at:
                    nat += ("; " if nat else "") + f"float at {sa.float_at}"
            out, back = esp.get((a, b), 0), esp.get((b, a), 0)
            ro, rb = self.esp_rate.get((a, b), 0.0), self.esp_rate.get((b, a), 0.0)
            rows.append((last_time, (f"{ip(a)}\n⇄ {ip(b)}", sa_text, state, last, str(self.retrans.get(k, 0) or ""),
                                     nat or "none seen", f"{_n(out)} {_n(ro)}/s" if out else "0",
                                     f"{_n(back)} {_n(rb)}/s" if back else "0")))
        room = max(3, self.console.size.height - self.EVENTS - 8)
        rows.sort(key=lambda r: r[0], reverse=True)
        for _, cells in rows[:room]:
            t.add_row(*cells)
        parts = [head, t]
        if len(rows) > room:
            parts.append(Text(f"… {len(rows) - room} more peer pairs (the least recently active)", style="dim"))
        if not rows:
            parts.append(Text(f"no IKE or ESP yet (filter: {self.expr})", style="dim"))
        parts.append(Text("events", style="bold"))
        parts.extend(list(self.events)[-self.EVENTS:])
        return Group(*parts)


def _n(x: float) -> str:
    """A count or rate in at most 4 characters and a suffix: 812, 41k, 1.2M."""
    if x < 1000:
        return f"{x:.0f}"
    if x < 10_000:
        return f"{x / 1000:.1f}k"
    if x < 1_000_000:
        return f"{x / 1000:.0f}k"
    return f"{x / 1e6:.1f}M"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _clock(ts: float) -> str:
    """HH:MM:SS.mmm (local time), or the raw epoch seconds when no date can hold `ts`."""
    try:
        return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"
    except (OverflowError, OSError, ValueError):
        return f"{ts:.3f} s"


# -- the command ---------------------------------------------------------------------------


@click.command(help=LIVE_HELP)
@click.argument("interface")
@click.option("--filter", "extra", default=None, metavar="EXPR",
              help="Also require this pcap-filter expression, e.g. 'host 203.0.113.7'.")
@click.option("--write", "write", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Save the captured packets as pcap while analysing.")
@click.option("--count", default=None, type=click.IntRange(1), metavar="N", help="Stop after N packets.")
@click.option("--duration", default=None, type=click.FloatRange(0, min_open=True), metavar="S",
              help="Stop after S seconds.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (the default when stdout is not a terminal).")
@click.option("--ike-port", default=500, show_default=True, type=click.IntRange(1, 65535), help="UDP port of IKE.")
@click.option("--natt-port", default=4500, show_default=True, type=click.IntRange(1, 65535),
              help="UDP port of NAT-T (IKE and ESP in UDP).")
@click.option("--no-color", is_flag=True, help="No colours, even on a terminal.")
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default=None,
              help="How to capture: ring (Linux packet ring, the fast one) or scapy (libpcap, portable). "
                   "Default: ring where Linux has it.")
@limit_options
def live(interface, extra, write, count, duration, as_json, ike_port, natt_port, no_color, backend, limits) -> None:
    from ikeflow.cli import run_command

    run_command(run, interface, extra, write, count, duration, as_json, ike_port, natt_port, no_color, backend,
                limits, usage_errors=(LiveError,))


def run(interface: str, extra: str | None, write: str | None, count: int | None, duration: float | None,
        as_json: bool, ike_port: int, natt_port: int, no_color: bool, backend: str | None = None,
        limits: Limits = DEFAULT) -> int:
    from rich.console import Console

    from ikeflow.pipeline import Options, Pipeline
    from ikeflow.sources.capture import FileInfo

    expr = base_filter(ike_port, natt_port)
    if extra:
        from scapy.arch.common import free_filter

        try:
            free_filter(_compile(extra, lk.ETHERNET))
        except LiveError as e:
            raise LiveError(str(e).replace("bad capture filter", "bad --filter expression").rsplit(": ", 1)[0]
                            + f": {extra}") from None
        expr = f"({expr}) and ({extra})"
    sock = open_socket(backend, interface, expr)
    writer = None
    try:
        writer = PcapWriter(write, sock.linktype) if write else None
        json_mode = as_json or not sys.stdout.isatty()
        sink = JsonSink(sys.stdout) if json_mode else TerminalSink(Console(no_color=no_color, highlight=False))
        spool = None
        if json_mode:
            from ikeflow.render.read_json import MessageSpool

            spool = MessageSpool(1)
        pipeline = Pipeline(Options(ike_port, natt_port, limits), [spool.add] if spool else [])
        info = FileInfo(f"{interface} (live)", format="live", linktypes=[sock.linktype])
        pipeline.source(info)
        session = Session(interface, pipeline, info, sink, sock)

        stop = {"why": None}

        def on_signal(signum, _frame):
            if stop["why"] is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: give up on the report
            stop["why"] = signal.Signals(signum).name

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            sink.start(session, expr)
            deadline = session.start + duration if duration else None
            next_tick = next_eval = time.time()
            frame, linktype = pipeline.frame, sock.linktype
            cpu0 = time.process_time()
            first = last = None
            frames = 0

            def feed(batch, until=None) -> bool:
                """Analyse (and save) a batch; True when --count is reached or a frame is later than `until`."""
                nonlocal frames, first, last
                done = False
                for sec, usec, data, wirelen in batch:
                    ts = sec + usec * 1e-6
                    if until is not None and ts > until:
                        done = True
                        break
                    frames += 1
                    if first is None:
                        first = ts
                    last = ts
                    if writer:
                        writer.write(sec, usec, data, wirelen)
                    frame(frames, ts, linktype, data, wirelen)
                    if count and frames >= count:
                        stop["why"] = "count"
                        done = True
                        break
                session.frames = frames
                info.first_time, info.last_time = first, last
                return done

            def read(limit):
                try:
                    return sock.read(limit)
                except OSError as e:
                    if e.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
                        click.echo(f"ikeflow: warning: {interface}: {os.strerror(e.errno)}; capture ended", err=True)
                        stop["why"] = stop["why"] or "interface"
                        return None
                    raise

            while stop["why"] is None:
                now = time.time()
                wait = min(next_tick, deadline or next_tick) - now
                if wait > 0:
                    try:
                        ready, _, _ = select.select([sock], [], [], wait)
                    except InterruptedError:
                        ready = []
                else:
                    ready = [sock]
                if ready:
                    feed(read(BATCH) or [])
                now = time.time()
                if deadline and now >= deadline:
                    stop["why"] = "duration"
                if now >= next_eval:
                    sock.stats()
                    session.evaluate(now)
                    next_eval = now + EVALUATE
                if now >= next_tick or stop["why"]:
                    if writer:
                        writer.flush()
                    sink.tick(session, now)
                    next_tick = now + REFRESH
            if stop["why"] not in ("count", "interface"):
                # What arrived before the stop and still waits in the kernel (a ring block not yet handed
                # over, a backlog under load) belongs to the capture: take it, for up to DRAIN seconds.
                until, idle = (deadline if stop["why"] == "duration" else time.time()), 0
                give_up = time.time() + DRAIN
                while time.time() < give_up and idle < 3:
                    batch = read(BATCH)
                    if batch is None or feed(batch, until):
                        break
                    if not batch:
                        idle += 1
                        time.sleep(_Ring.RETIRE / 1000)
                    else:
                        idle = 0
            session.frames = frames
            sock.stats()
            session.cpu = time.process_time() - cpu0
        finally:
            sink.stop()
            for s, h in old.items():
                signal.signal(s, h)
    finally:
        sock.close()
        if writer:
            writer.close()

    elapsed = time.time() - session.start
    info.packets = frames
    info.first_time, info.last_time = first, last
    result = pipeline.conclude()
    found = result.findings
    drops = sock.drops
    note = (f"{frames} packets captured on {interface} in {elapsed:.1f} s ({frames / elapsed if elapsed else 0:.0f}/s); "
            + (f"the kernel dropped {drops} packets (the analysis misses them)" if drops else "no kernel drops"))
    if json_mode:
        for f in found:  # the findings that had not been shown yet
            key = _finding_key(f)
            if session._shown.get(key) != f.severity:
                sink.finding(f)
        from ikeflow.render.read_json import build, write as write_report

        sink.emit({"event": "capture", "interface": interface, "packets": frames, "kernel_drops": drops,
                   "seconds": round(elapsed, 3), "cpu_seconds": round(session.cpu, 3), "ended_by": stop["why"]})
        sys.stdout.write('{"event":"report","report":')
        write_report(sys.stdout, build(result.model, result.infos, found, result.verdicts), spool, end="}\n")
        sys.stdout.flush()
    else:
        from ikeflow.render.read_terminal import render

        render(Console(no_color=no_color, highlight=False), result.model, result.infos, found, result.verdicts,
               title=f"ikeflow live {interface}")
    click.echo(f"ikeflow: {note}", err=True)
    return result.exit_code
