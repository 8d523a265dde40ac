"""The HTML report (render/html.py, render/svg.py), checked in a real browser: headless Chromium
(Debian's `chromium`) opens the file, and the DOM it built is compared with what tshark reads in
the capture (one ladder per IKE SA, one arrow per IKE message with its frame, the stall marked,
the SA's start time); the page references nothing outside itself and capture text stays text."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import PCAPS, need_public, need_tshark
from ikeflow.compare.comparison import Comparison
from ikeflow.pipeline import read_captures
from ikeflow.render.html import MAX_ROWS, compare_html, read_html, write_compare_html, write_read_html

LAB = PCAPS / "lab"
LINKS = {"src", "href", "xlink:href", "srcset", "action", "data", "poster"}  # attributes that load or link
EXTERNAL_TAGS = {"script", "link", "img", "iframe", "object", "embed", "image", "use", "audio", "video", "source"}


def need_chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def chromium(page: Path, *args: str) -> str:
    """Run headless Chromium on a file with a fresh profile; its standard output."""
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run([need_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                              "--no-first-run", "--disable-background-networking", "--disable-component-update",
                              "--disable-sync", f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


class Dom(HTMLParser):
    """The elements of a page: (tag, attributes, classes, the enclosing svg's aria-label), and its text."""

    def __init__(self, text: str):
        super().__init__()
        self.elements, self.text, self.css, self._svg, self._tag = [], [], "", None, ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._tag = tag
        if tag == "svg":
            self._svg = a.get("aria-label")
        self.elements.append((tag, a, set((a.get("class") or "").split()), self._svg))

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None

    def handle_data(self, data):
        if self._tag == "style":
            self.css += data
        else:
            self.text.append(data)

    def find(self, tag: str, cls: str = "") -> list:
        return [e for e in self.elements if e[0] == tag and (not cls or cls in e[2])]

    def external(self) -> list:
        """Everything that would load something: tags that fetch, src/href not to this page, CSS url()/@import."""
        out = [e for e in self.elements if e[0] in EXTERNAL_TAGS]
        out += [(e[0], k, v) for e in self.elements for k, v in e[1].items()
                if k in LINKS and not (v or "").startswith("#")]
        return out + [w for w in ("url(", "@import") if w in self.css.lower()]


def tshark_ike(path: Path) -> dict[str, list[tuple[int, str, str]]]:
    """Per initiator SPI: (frame, epoch time as tshark prints it, source address) of each IKE message."""
    out = subprocess.run([need_tshark(), "-n", "-r", str(path), "-Y", "isakmp and not icmp", "-T", "fields",
                          "-e", "isakmp.ispi", "-e", "frame.number", "-e", "frame.time_epoch", "-e", "ip.src"],
                         capture_output=True, text=True, check=True).stdout
    sas = defaultdict(list)
    for row in out.splitlines():
        ispi, frame, t, src = row.split("\t")
        sas[ispi.replace("0x", "")].append((int(frame), t, src))
    return sas


@pytest.mark.parametrize("name, stalled", [("ikev1-main-psk-mismatch.outside", True), ("ikev2-nat-ok.outside", False)])
def test_read_report_in_chromium(tmp_path, name, stalled):
    """Every IKE SA has its ladder; its arrows are tshark's IKE frames in order; the stall is the
    initiator's last message; the SA start is tshark's first frame time."""
    path = LAB / f"{name}.pcap"
    wire = tshark_ike(path)
    page = tmp_path / "report.html"
    write_read_html(read_captures([str(path)]), page, utc=True)
    dom = Dom(chromium(page, "--dump-dom"))
    ladders = dom.find("svg", "ladder")
    assert sorted(e[1]["aria-label"].split()[-1] for e in ladders) == sorted(wire)
    stall = dom.find("g", "stall")
    for ispi, frames in wire.items():
        arrows = [e for e in dom.find("g", "msg") if e[3].endswith(ispi)]
        assert [int(e[1]["data-frame"]) for e in arrows] == [f for f, _, _ in frames]
        seconds, fraction = frames[0][1].split(".")
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(seconds))) + f".{fraction[:3]} UTC"
        assert f"Started {start}" in "".join(dom.text)
        if stalled:
            initiator = frames[0][2]
            assert [int(e[1]["data-frame"]) for e in stall] == [max(f for f, _, s in frames if s == initiator)]
    assert len(dom.find("rect", "stall-band")) == len(stall) == (1 if stalled else 0)
    assert not dom.external() and "http" not in page.read_text()  # not even an xmlns
    shot = tmp_path / "shot.png"
    chromium(page, f"--screenshot={shot}", "--window-size=1000,1400")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_compare_report_in_chromium(tmp_path):
    """The two points side by side: each answer sent at the outside point and never seen inside is
    drawn lost, as many as tshark counts."""
    name = "ikev2-replies-dropped"
    inside, outside = LAB / f"{name}.inside.pcap", LAB / f"{name}.outside.pcap"
    at_in, at_out = tshark_ike(inside), tshark_ike(outside)
    (ispi, frames), = at_out.items()
    responder = next(s for _, _, s in frames if s != frames[0][2])
    lost = sum(s == responder for _, _, s in frames) - sum(s == responder for _, _, s in at_in.get(ispi, []))
    page = tmp_path / "compare.html"
    write_compare_html(Comparison([str(inside), str(outside)]).run(), page)
    dom = Dom(chromium(page, "--dump-dom"))
    assert len(dom.find("svg", "ladder")) == 1 and lost > 0
    assert len(dom.find("g", "lost")) == lost
    drawn = [e[1]["data-frame"] for e in dom.find("g", "msg") if "lost" not in e[2]]
    assert sorted(int(f.split(":")[1]) for f in drawn if f.startswith("#2:")) == [f for f, _, _ in frames]
    assert not dom.external()


def test_many_sas_in_chromium(tmp_path):
    """The nDPI capture: one ladder per IKE SA (70), one arrow per message, an ESP chart per pair."""
    path = need_public() / "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap"
    result = read_captures([str(path)])
    page = tmp_path / "many.html"
    write_read_html(result, page)
    dom = Dom(chromium(page, "--dump-dom"))
    sas = [sa for p in result.model.pairs.values() for sa in p.sas]
    assert len(dom.find("svg", "ladder")) == len(sas) > 60
    assert len(dom.find("g", "msg")) == sum(min(len(sa.messages), MAX_ROWS) for sa in sas)
    assert len(dom.find("g", "bar")) == len(result.model.esp.flows)
    assert len(dom.find("tr")) - 1 >= len(result.model.pairs)  # the headline table
    assert not dom.external()


def test_capture_text_is_escaped():
    """IDs, vendor IDs, labels and file names from a hostile capture stay text (no browser needed)."""
    result = read_captures([str(LAB / "ikev1-main-psk-mismatch.outside.pcap")])
    sa = next(iter(result.model.sas.values()))
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&\x00\x1b'
    sa.messages[0].label = evil
    sa.vendors["I"] = {evil}
    result.infos[0].name = evil
    result.verdicts[next(iter(result.verdicts))] = evil
    page = read_html(result)
    dom = Dom(page)
    assert not dom.find("script") and not dom.find("img") and not dom.external()
    text = "".join(dom.text)
    assert text.count("<script>alert(1)</script>") >= 4 and "\\x00\\x1b" in text and "\x00" not in page


def test_compare_of_unrelated_captures_says_so():
    """Two captures that cannot be compared: a page that says so, no ladder."""
    page = compare_html(Comparison([str(LAB / "ikev2-ok.outside.pcap"), str(LAB / "ikev1-main-ok.outside.pcap")]).run())
    dom = Dom(page)
    assert "Not compared" in "".join(dom.text) and not dom.find("svg", "ladder")
