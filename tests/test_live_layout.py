"""`ikeflow live`'s table at 60, 80, 120 and 200 columns, without root.

A capture is replayed through `LiveRun` (the loop `ikeflow live` runs) from a
stand-in capture socket, into the terminal view on a fixed-width rich Console;
the screen is then drawn as of one second after the last frame.  What must be
on it, whole, comes from tshark: the addresses, the ESP packets each way, the
IKE SPIs and the last IKE message's time (at 200 columns).
"""

import io
import os
import re
import subprocess
import time
from functools import lru_cache

import pytest
from rich.console import Console
from scapy.utils import RawPcapReader

from conftest import PCAPS, need_public, need_tshark
from ikeflow.live import EVALUATE, WAIT_SHOWN, LiveRun
from ikeflow.pipeline import Options
from ikeflow.render.live_terminal import WIDE, TerminalSink

WIDTHS = (60, 80, 120, 200)
# capture -> the short NAT text live must show (the lab's kernel-libipsec peers fake NAT-D on both sides and
# float at the first message after the opening exchange: lab-notes.md; the arkime peers send no NAT-D)
CAPTURES = {
    "lab/ikev2-nat-ok.outside.pcap": "I+R NAT, 4500@IKE_AUTH",
    "lab/ikev1-udp4500-blocked.inside.pcap": "I+R NAT, 4500@MM5",
    "lab/ikev1-esp-oneway.inside.pcap": "I+R NAT, 4500@MM5",
    "public:arkime/tests/pcap/IKEv2.pcap": "no NAT-D",
}


class Replay:
    """Stands in for live's capture socket: the frames of a file, then nothing."""

    name = "replay"
    drops = 0

    def __init__(self, path):
        reader = RawPcapReader(str(path))
        self.linktype = reader.linktype
        self.frames = [(m.sec, m.usec, data, m.wirelen) for data, m in reader]
        reader.close()
        self.next = 0
        self.null = open(os.devnull, "rb")  # always ready for select

    def read(self, limit):
        batch = self.frames[self.next:self.next + limit]
        self.next += len(batch)
        return batch

    def stats(self):
        pass

    def fileno(self):
        return self.null.fileno()

    def close(self):
        self.null.close()


def path_of(name):
    return need_public() / name.split(":", 1)[1] if name.startswith("public:") else PCAPS / name


def screen(path, width, height=50):
    """The live view of `path` at `width` columns, one second after its last frame."""
    sock = Replay(path)
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None, highlight=False)
    sink = TerminalSink(console, wait_shown=WAIT_SHOWN, rate_every=EVALUATE)
    run = LiveRun("eth0", "udp port 500", sock, sink, Options(), count=len(sock.frames))
    try:
        run.capture()
    finally:
        sock.close()
    run.started = run.first  # the clock in the header counts from the first frame, not from now
    out = Console(file=io.StringIO(), width=width, height=height, color_system=None, highlight=False)
    out.print(sink.view(run, run.last + 1))
    return out.file.getvalue()


@lru_cache(maxsize=None)
def oracle(path):
    """tshark's view: ESP packets per (src, dst), the IKE SPIs per SA, the last IKE message's time."""
    tshark = need_tshark()

    def fields(display, *names):
        r = subprocess.run([tshark, "-r", str(path), "-Y", display, "-T", "fields", "-E", "occurrence=f",
                            *sum((["-e", n] for n in names), [])], capture_output=True, text=True, check=True)
        return [line.split("\t") for line in r.stdout.splitlines()]

    esp = {}
    for s4, d4, s6, d6 in fields("esp", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst"):
        key = (s4 or s6, d4 or d6)
        esp[key] = esp.get(key, 0) + 1
    ike = fields("isakmp", "frame.time_epoch", "isakmp.ispi", "isakmp.rspi", "ip.src", "ip.dst", "ipv6.src",
                 "ipv6.dst")
    addresses = {a for row in ike for a in row[3:] if a} | {a for k in esp for a in k}
    return esp, ike, addresses


def table_part(text):
    """The lines between the header line and "events"."""
    lines = text.splitlines()
    return "\n".join(lines[1:lines.index("events")])


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", CAPTURES)
def test_every_value_whole_at_every_width(name, width):
    path = path_of(name)
    esp, ike, addresses = oracle(path)
    text = screen(path, width)
    table = table_part(text)
    words = set(table.split())
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines())
    for column in ("NAT", "ESP", "retr", "last"):  # every column (or, stacked, every field) is there
        assert column in words, (column, table)
    for address in addresses:  # never folded or cut
        assert address in words, (address, table)
    # the NAT text in words that are never broken (no text stacked a few characters a line)
    for word in CAPTURES[name].split():
        assert word in words, (word, table)
    # ESP each way: ↑ is from the address shown first in the row to the other
    (a, b) = sorted(addresses, key=lambda x: table.index(x))
    up, down = esp.get((a, b), 0), esp.get((b, a), 0)
    if width >= WIDE:
        assert re.search(rf"(?<![\d.]){up}(?![\d.])", table) and re.search(rf"(?<![\d.]){down}(?![\d.])", table)
    else:
        assert f"↑{up}" in words and f"↓{down}" in words, table


@pytest.mark.parametrize("name", CAPTURES)
def test_full_width_shows_spis_and_the_last_time(name):
    """At 200 columns: the IKE SPIs in full and the last message's local time; below WIDE no SPI at all
    (never a few hex digits of one)."""
    path = path_of(name)
    _, ike, _ = oracle(path)
    epoch, ispi, rspi = ike[-1][:3]
    wide = table_part(screen(path, 200))
    assert ispi in wide and rspi in wide, wide
    t = float(epoch)
    assert time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}" in wide
    for width in (80, 120):
        narrow = table_part(screen(path, width))
        assert ispi[:8] not in narrow and rspi[:8] not in narrow, narrow


def test_narrow_terminal_stacks_rows_instead_of_squeezing_columns():
    """IPv6 peers do not fit a 60-column table: each peer pair takes two lines with every field named."""
    path = path_of("public:arkime/tests/pcap/IKEv2.pcap")
    table = table_part(screen(path, 60))
    assert "peers a ⇄ b" not in table  # no table head: the stacked form
    assert re.search(r"2003:51:6012::2 ⇄\s+2003:51:6012::4", table), table
    assert "retr 1" in table and "NAT no NAT-D" in table
