"""Live capture: the frames of one network interface (or `any`), through a kernel BPF filter.

Two backends behind one interface (`CaptureSocket`), chosen by `open_socket`
(`BACKENDS`, `--backend ring|scapy`): on Linux the kernel hands frames over
through a TPACKET_V3 ring (`PacketSocket`: PACKET_RX_RING, shared memory, no
system call per packet; IKEFLOW_LIVE_RING=0 falls back to one recvmsg per
packet); elsewhere (macOS, BSD), or with `--backend scapy`, libpcap through
Scapy (`PcapSocket`).  Both take the filter of `capture_filter` (IKE, NAT-T,
ESP, IP fragments, ICMP errors, ANDed with --filter; compiled by libpcap),
never block, and count the frames the kernel dropped.  `PcapWriter` saves
what was captured for --write.  The run that feeds these frames to the
pipeline is `ikeflow.live`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import sys
import time
from typing import Protocol

from ikeflow.decode import linktypes as lk

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
RETIRE_MS = 20  # the ring hands a block over when full or after this many ms: a lone frame waits at most that


class CaptureSocket(Protocol):
    """What every backend offers the run: `PacketSocket`, `PcapSocket`."""

    name: str  # the backend, as --backend names it
    linktype: int  # of every frame `read` returns (decode.linktypes)
    drops: int  # frames the kernel dropped, as of the last `stats`

    def fileno(self) -> int:
        """For select: readable when frames wait."""

    def read(self, limit: int) -> list[tuple[int, int, bytes, int]]:
        """Up to about `limit` waiting frames as (seconds, microseconds, data, wire length), without blocking."""

    def stats(self) -> None:
        """Update `drops` from the kernel's counters."""

    def close(self) -> None:
        """Release the socket (and the ring)."""


class LiveError(Exception):
    """The capture cannot start: one line for the user, exit 2."""


def base_filter(ike_port: int, natt_port: int) -> str:
    """IKE, NAT-T and ESP, plus what the core needs to see around them:
    non-first IP fragments (no UDP header) and ICMP errors (they quote IKE)."""
    return (f"udp port {ike_port} or udp port {natt_port} or ip proto 50 or ip6 proto 50"
            " or (ip[6:2] & 0x1fff != 0) or (ip6 and ip6[6] == 44)"
            " or icmp[icmptype] == icmp-unreach or icmp[icmptype] == icmp-timxceed"
            " or (icmp6 and (ip6[40] == 1 or ip6[40] == 2 or ip6[40] == 3))")


def capture_filter(ike_port: int, natt_port: int, extra: str | None = None) -> str:
    """`base_filter`, ANDed with the --filter expression `extra` (compiled here first: a typo is one line)."""
    expr = base_filter(ike_port, natt_port)
    if not extra:
        return expr
    from scapy.arch.common import free_filter

    free_filter(_compile(extra, lk.ETHERNET, "--filter expression"))
    return f"({expr}) and ({extra})"


# -- the packet ring (Linux) -----------------------------------------------------------


class PacketSocket:
    """AF_PACKET socket on one interface (or `any`) with a kernel BPF filter."""

    name = "ring"

    def __init__(self, iface: str, expr: str):
        self.iface = iface
        self.drops = 0
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
            self.drops = 0
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
        """Add the kernel's drop counter since the last call (PACKET_STATISTICS resets it)."""
        try:
            _, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))  # packets, drops
        except OSError:
            return
        self.drops += drops

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
        self.sock.close()


class _Ring:
    """PACKET_RX_RING, TPACKET_V3: the kernel fills blocks of frames in shared memory, no system call per
    packet.  A block is handed over when full or after RETIRE_MS, so a lone IKE message waits at most that."""

    BLOCK, BLOCKS, FRAME = 1 << 20, 64, 1 << 11
    PACKET_VERSION, TPACKET_V3, PACKET_RX_RING = 10, 2, 5

    def __init__(self, sock: socket.socket):
        import mmap

        sock.setsockopt(SOL_PACKET, self.PACKET_VERSION, self.TPACKET_V3)
        req = struct.pack("7I", self.BLOCK, self.BLOCKS, self.FRAME, self.BLOCK // self.FRAME * self.BLOCKS,
                          RETIRE_MS, 0, 0)
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


# -- libpcap through Scapy (portable) ---------------------------------------------------


class PcapSocket:
    """libpcap through Scapy (`conf.L2listen` with `conf.use_pcap`): the portable backend, for macOS
    and the BSDs or where AF_PACKET is not available.  Same interface as `PacketSocket`."""

    name = "scapy"

    def __init__(self, iface: str, expr: str):
        from scapy.config import conf
        from scapy.error import Scapy_Exception

        self.iface, self.drops = iface, 0
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
            self.drops = st.ps_drop + st.ps_ifdrop

    def close(self) -> None:
        self.sock.close()


# -- choosing a backend, the filter, the --write file --------------------------------------


BACKENDS = {b.name: b for b in (PacketSocket, PcapSocket)}


def open_socket(backend: str | None, iface: str, expr: str) -> CaptureSocket:
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
            ifreq = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("256s", iface.encode()))
            flags = struct.unpack_from("H", ifreq, 16)[0]
        except OSError:
            raise LiveError(f"no such interface: {iface} (see ip link)") from None
    if not flags & IFF_UP:
        raise LiveError(f"interface {iface} is down: bring it up with  ip link set {iface} up")
    try:
        with open(f"/sys/class/net/{iface}/type") as f:
            return int(f.read())
    except (OSError, ValueError):
        return -1


def _compile(expr: str, linktype: int, what: str = "capture filter"):
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
        raise LiveError(f"bad {what}: {why}: {expr}") from None


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

