"""`ikeflow live` on a real link: two network namespaces joined by a veth pair.

`ikeflow live` captures on one end while the other end replays a recorded
strongSwan negotiation (pcaps/lab, documentation addresses only) with its
original timing.  The live result must equal `ikeflow read` of the `--write`
file and carry the same messages and labels as `ikeflow read` of the
recording.  The namespaces and links are named ikft-*, carry no addresses
(frames are sent at layer 2 onto the private link only) and are deleted
afterwards.  Tests that need root skip elsewhere (and fail under
IKEFLOW_REQUIRE_ALL=1).
"""

import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_KE, ISAKMP_payload_SA

from conftest import PCAPS, need_root

LAB = PCAPS / "lab"

# Replays a pcap onto a link with its timing: MACs rewritten to the veth pair's,
# refuses any IPv4 address outside the documentation ranges.
REPLAY = r"""
import ipaddress, socket, sys, time
from scapy.utils import RawPcapReader
iface, path, src_mac, dst_mac = sys.argv[1:5]
limit = int(sys.argv[5]) if len(sys.argv) > 5 else None
nets = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("203.0.113.0/24")]
frames = []
for data, meta in RawPcapReader(path):
    if data[12:14] == b"\x08\x00":
        for raw in (data[26:30], data[30:34]):
            assert any(ipaddress.ip_address(raw) in n for n in nets), ipaddress.ip_address(raw)
    frames.append((meta.sec + meta.usec / 1e6, bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + data[12:]))
frames = frames[:limit]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
t0, w0 = frames[0][0], time.time()
for ts, frame in frames:
    delay = w0 + (ts - t0) - time.time()
    if delay > 0:
        time.sleep(delay)
    s.send(frame)
print(len(frames))
"""

# Sends N ESP-in-UDP packets (one SPI, sequence 1..N) as fast as it can.
BLAST = r"""
import socket, struct, sys, time
iface, src_mac, dst_mac, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
first = int(sys.argv[5]) if len(sys.argv) > 5 else 1
mac = lambda m: bytes.fromhex(m.replace(":", ""))
def csum(h):
    s = sum(struct.unpack("!10H", h))
    s = (s & 0xFFFF) + (s >> 16); s = (s & 0xFFFF) + (s >> 16)
    return struct.pack("!H", ~s & 0xFFFF)
payload_len = 8 + 8 + 64
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0, 64, 17, 0,
                 bytes([192, 0, 2, 2]), bytes([203, 0, 113, 2]))
ip = ip[:10] + csum(ip) + ip[12:]
head = mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + struct.pack("!HHHH", 4500, 4500, payload_len, 0) + b"\x12\x34\x56\x78"
tail = b"\0" * 64
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
send, pack = s.send, struct.Struct("!I").pack
t = time.time()
for seq in range(first, first + n):
    send(head + pack(seq) + tail)
print(n, time.time() - t)
"""


def ikeflow(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ikeflow", *args], capture_output=True, **kw)


def read_json(path):
    r = ikeflow("read", "--json", str(path))
    return r.returncode, json.loads(r.stdout)


def without_names(doc):
    doc = json.loads(json.dumps(doc))
    for f in doc["capture"]["files"]:
        f.pop("name")
        f.pop("format")  # "live" vs "pcap"
    return doc


def message_keys(doc):
    return [(m["frame"], m["src"], m["dst"], m["sport"], m["dport"], m["ispi"], m["exchange"], m["label"],
             m["retransmission"], m["natt"]) for m in doc["messages"]]


class Link:
    """Two namespaces ikft-<tag>-c (capture) and ikft-<tag>-s (sender), a veth pair between them."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.ns_cap, self.ns_send = f"ikft-{tag}-c", f"ikft-{tag}-s"
        self.cap_if, self.send_if = f"ikft-{tag}c", f"ikft-{tag}s"
        self.procs: list[subprocess.Popen] = []
        for ns in (self.ns_cap, self.ns_send):
            self.ip("netns", "add", ns)
        self.ip("link", "add", self.cap_if, "netns", self.ns_cap, "type", "veth", "peer", "name", self.send_if,
                "netns", self.ns_send)
        for ns, dev in ((self.ns_cap, self.cap_if), (self.ns_send, self.send_if)):
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"],
                           capture_output=True)
            self.ip("-n", ns, "link", "set", dev, "up")
        self.cap_mac = self.mac(self.ns_cap, self.cap_if)
        self.send_mac = self.mac(self.ns_send, self.send_if)

    @staticmethod
    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    @staticmethod
    def mac(ns, dev):
        out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", dev], check=True, capture_output=True).stdout
        return json.loads(out)[0]["address"]

    def live(self, *args, stdout=subprocess.PIPE, iface=None):
        """Start `ikeflow live` on the capture end (or on `iface`, e.g. any, in its namespace)."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns_cap, sys.executable, "-m", "ikeflow", "live", *args,
                              iface or self.cap_if], stdout=stdout, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def replay(self, pcap, limit=None):
        args = [str(pcap), self.send_mac, self.cap_mac] + ([str(limit)] if limit else [])
        r = subprocess.run(["ip", "netns", "exec", self.ns_send, sys.executable, "-c", REPLAY, self.send_if, *args],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        return int(r.stdout)

    def blast(self, n):
        r = subprocess.run(["ip", "netns", "exec", self.ns_send, sys.executable, "-c", BLAST, self.send_if,
                            self.send_mac, self.cap_mac, str(n)], capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        sent, seconds = r.stdout.split()
        return int(sent), float(seconds)

    def close(self):
        for p in self.procs:  # only the processes this test started, by PID
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in (self.ns_cap, self.ns_send):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def link():
    need_root()
    if not shutil.which("ip"):
        pytest.skip("iproute2 (ip) is not installed")
    link = Link()
    try:
        yield link
    finally:
        link.close()


def wait_started(p, timeout=30):
    """The first JSON line of a live process: its start event."""
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    assert ready, "ikeflow live did not start"
    line = p.stdout.readline()
    assert line, p.stderr.read().decode()
    event = json.loads(line)
    assert event["event"] == "start"
    return event


def events_of(out: bytes):
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("backend", ["ring", "scapy"])
@pytest.mark.parametrize("scenario", ["ikev1-main-ok.outside", "ikev2-responder-down.outside",
                                      "ikev1-fragments-dropped.inside"])
def test_live_equals_read_of_the_write_file_and_of_the_recording(link, tmp_path, scenario, backend):
    """Both capture backends: the Linux packet ring and libpcap through Scapy (the one macOS/BSD use)."""
    recording = LAB / f"{scenario}.pcap"
    written = tmp_path / "live.pcap"
    p = link.live("--json", "--write", str(written), "--duration", "5", "--backend", backend)
    start = wait_started(p)
    assert start["linktype"] == 1 and start["interface"] == link.cap_if and start["backend"] == backend
    sent = link.replay(recording)
    out, err = p.communicate(timeout=30)
    events = events_of(out)
    assert [e["event"] for e in events][-2:] == ["capture", "report"], err.decode()
    report = events[-1]["report"]
    capture = events[-2]
    assert capture["packets"] == sent and capture["kernel_drops"] == 0

    # 1. the live report is `ikeflow read` of the --write file, exit code included
    code, doc = read_json(written)
    assert p.returncode == code
    assert without_names(report) == without_names(doc)
    # 2. the same messages and labels as reading the recording itself
    rec_code, rec = read_json(recording)
    assert code == rec_code
    assert message_keys(report) == message_keys(rec)
    assert report["stats"] == rec["stats"]
    assert [(f["severity"], f["code"], f["at"], f["frames"]) for f in report["findings"]] == \
        [(f["severity"], f["code"], f["at"], f["frames"]) for f in rec["findings"]]
    # 3. the streamed message events are the report's messages
    assert [{k: v for k, v in e.items() if k != "event"} for e in events if e["event"] == "message"] == report["messages"]
    assert b"Traceback" not in err


@pytest.mark.parametrize("backend,ring", [("ring", "1"), ("ring", "0"), ("scapy", "1")])
def test_any_interface_is_linux_cooked_like_tcpdump_i_any(link, tmp_path, monkeypatch, backend, ring):
    """`any`: Linux cooked (SLL) frames, from the TPACKET_V3 ring, plain recvmsg and libpcap alike."""
    monkeypatch.setenv("IKEFLOW_LIVE_RING", ring)
    recording = LAB / "ikev2-nat-cookie.outside.pcap"
    written = tmp_path / "any.pcap"
    p = link.live("--json", "--write", str(written), "--duration", "5", "--backend", backend, iface="any")
    assert wait_started(p)["linktype"] == 113
    sent = link.replay(recording)
    out, err = p.communicate(timeout=30)
    events = events_of(out)
    report = events[-1]["report"]
    assert events[-2]["packets"] == sent and report["capture"]["files"][0]["linktypes"] == [113]
    code, doc = read_json(written)
    assert p.returncode == code and without_names(report) == without_names(doc)
    assert message_keys(report) == message_keys(read_json(recording)[1])


def test_sigint_mid_negotiation_ends_with_the_report(link, tmp_path):
    """MM1..MM5 and one MM5 retransmission, then Ctrl-C while the initiator still waits for MM6."""
    written = tmp_path / "live.pcap"
    p = link.live("--json", "--write", str(written))
    wait_started(p)
    sent = link.replay(LAB / "ikev1-udp4500-blocked.inside.pcap", limit=6)
    time.sleep(2.5)  # let a "waiting for MM6" event come out
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    events = events_of(out)
    assert events[-1]["event"] == "report" and events[-2]["ended_by"] == "SIGINT"
    report = events[-1]["report"]
    assert [m["label"] for m in report["messages"]] == ["MM1", "MM2", "MM3", "MM4", "MM5", "MM5"]
    waits = [e for e in events if e["event"] == "finding" and e["code"] == "waiting"]
    assert waits and waits[-1]["next"] == "MM6" and waits[-1]["retransmissions"] == 1
    assert "waiting for MM6 for" in waits[-1]["summary"] and "(1 retransmission)" in waits[-1]["summary"]
    stall = [e for e in events if e["event"] == "finding" and e["code"] == "stall"]
    assert stall and stall[0]["at"] == "MM5"
    code, doc = read_json(written)  # the --write file is a valid capture of exactly what was analysed
    assert doc["stats"]["packets"] == sent
    assert p.returncode == code == 1  # MM5 sent twice, no MM6: an error finding, like `read`
    assert without_names(report) == without_names(doc)


def test_terminal_view_and_final_report_on_a_tty(link, tmp_path):
    """On a terminal: the live table (with the wait as it unfolds), then Ctrl-C and read's report."""
    master, slave = pty.openpty()
    fcntl_winsize(slave, 40, 140)
    p = link.live("--write", str(tmp_path / "t.pcap"), stdout=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def pump():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.time() + 30
    while b"ikeflow live" not in b"".join(chunks) and time.time() < deadline:
        time.sleep(0.1)
    link.replay(LAB / "ikev1-udp4500-blocked.inside.pcap", limit=6)
    time.sleep(2.5)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    reader.join(timeout=5)
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert "waiting for MM6" in screen and "1 retransmission" in screen
    assert "192.0.2.2 ⇄ 203.0.113.2" in screen
    assert "Findings" in screen and "phase 1 fails at MM5" in screen  # the final report, as read prints it
    assert p.returncode == 1


def fcntl_winsize(fd, rows, cols):
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_count_ends_the_capture(link, tmp_path):
    written = tmp_path / "c.pcap"
    p = link.live("--json", "--write", str(written), "--count", "4", "--duration", "20")
    wait_started(p)
    link.replay(LAB / "ikev1-main-ok.outside.pcap")
    out, _ = p.communicate(timeout=30)
    events = events_of(out)
    assert events[-2]["ended_by"] == "count" and events[-2]["packets"] == 4
    code, doc = read_json(written)
    assert [m["label"] for m in doc["messages"]] == ["MM1", "MM2", "MM3", "MM4"]
    assert without_names(events[-1]["report"]) == without_names(doc) and p.returncode == code


def test_esp_at_speed_is_counted_and_drops_are_reported(link, tmp_path):
    """A burst of ESP-in-UDP: every packet is either counted or reported as dropped by the kernel."""
    p = link.live("--json", "--duration", "8")
    wait_started(p)
    n = 100_000
    sent, seconds = link.blast(n)
    out, err = p.communicate(timeout=60)
    events = events_of(out)
    capture, report = events[-2], events[-1]["report"]
    (flow,) = report["esp_flows"]
    assert flow["spi"] == "12345678" and flow["encap"] == "udp"
    assert flow["packets"] == capture["packets"]
    assert flow["packets"] + capture["kernel_drops"] == sent, (flow, capture)
    updates = [e for e in events if e["event"] == "esp"]
    assert 1 <= len(updates) <= 10  # at most one update a second per flow
    print(f"sent {sent} in {seconds:.2f} s ({sent / seconds:.0f}/s); live counted {flow['packets']}, "
          f"kernel dropped {capture['kernel_drops']}")


def test_interface_down_is_one_line_exit_2(link):
    link.ip("-n", link.ns_cap, "link", "set", link.cap_if, "down")
    r = subprocess.run(["ip", "netns", "exec", link.ns_cap, sys.executable, "-m", "ikeflow", "live", link.cap_if],
                       capture_output=True, timeout=30)
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.decode().strip().splitlines() == [
        f"ikeflow: interface {link.cap_if} is down: bring it up with  ip link set {link.cap_if} up"]


# -- no root needed ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ring", "scapy"])
def test_missing_interface_is_one_line_exit_2(backend):
    r = ikeflow("live", "nosuchif0", "--backend", backend, timeout=30)
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.decode().strip().splitlines() == ["ikeflow: no such interface: nosuchif0 (see ip link)"]


@pytest.mark.parametrize("backend", ["ring", "scapy"])
def test_not_permitted_says_sudo_or_cap_net_raw(backend):
    cmd = [sys.executable, "-m", "ikeflow", "live", "lo", "--backend", backend]
    if os.geteuid() == 0:  # root: take CAP_NET_RAW away
        if not shutil.which("setpriv"):
            pytest.skip("setpriv (util-linux) is not installed")
        cmd = ["setpriv", "--bounding-set=-net_raw", *cmd]
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    assert r.returncode == 2 and r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "not permitted to capture on lo" in lines[0]
    assert "sudo" in lines[0] and "CAP_NET_RAW" in lines[0]


def test_bad_filter_is_one_line_exit_2():
    r = ikeflow("live", "lo", "--filter", "host (", timeout=30)
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ikeflow: bad --filter expression") and "host (" in lines[0]


def test_waiting_text_from_the_sa_state():
    """The "waiting for ..." line is computed from the SA's runs: next step, since when, retransmissions."""
    from ikeflow.model.analysis import Analyzer
    from ikeflow.sources.capture import Record

    an = Analyzer()
    mm = [IP(src="192.0.2.1", dst="203.0.113.1") / UDP(sport=500, dport=500) / ISAKMP(
        init_cookie=b"\x01" * 8, resp_cookie=b"\x02" * 8 if i else b"\0" * 8, exch_type=2) / pl
        for i, pl in enumerate([ISAKMP_payload_SA(), ISAKMP_payload_SA(), ISAKMP_payload_KE()])]
    mm[1][IP].src, mm[1][IP].dst = "203.0.113.1", "192.0.2.1"
    frames = [(mm[0], 100.0), (mm[1], 100.1), (mm[2], 100.2), (mm[2], 101.2), (mm[2], 103.2)]
    for n, (pkt, ts) in enumerate(frames, 1):
        an.record(Record(n, ts, 101, bytes(pkt), len(pkt)))
    (sa,) = an.sas.values()
    (w,) = sa.owed(112.2)
    assert w.text == "waiting for MM4 for 12 s (2 retransmissions)"
    assert w.next == "MM4" and w.stalled
    assert [m.ref for m in w.sends] == [3, 4, 5]
