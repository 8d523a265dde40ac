"""The terminal report as an admin reads it: no value cut at any width or without a terminal, a headline per
peer pair in the words of its IKE version, narrowing, dates with their zone, `read --filter`."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from conftest import PCAPS, need_public
from ikeflow.pipeline import read_captures
from ikeflow.render import read_terminal
from ikeflow.render.common import PLAIN, headline, ip, stamp
from ikeflow.render.layout import grid, wrap
from ikeflow.render.read_json import build

LAB = sorted((PCAPS / "lab").glob("*.pcap"))
WIDTHS = (60, 80, 120, 200, None)


def ikeflow(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ikeflow", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def render(result, width, **kw) -> str:
    out = io.StringIO()
    read_terminal.render(Console(file=out, color_system=None, soft_wrap=True), result.model, result.infos,
                         result.findings, result.verdicts, width=width, **kw)
    return out.getvalue()


def whole_values(result) -> set[str]:
    """The SPIs, addresses, file names and chosen proposal strings of the JSON document."""
    doc = build(result.model, result.infos, result.findings, result.verdicts)
    values = {f["name"] for f in doc["capture"]["files"]}
    for p in doc["peers"]:
        values |= {p["a"], p["b"]}
    for sa in doc["ike_sas"]:
        values |= {sa["ispi"], sa["rspi"]}
        for p in (sa["proposal"] or {}).get("chosen") or []:
            values |= {p[k] for k in ("ike", "swanctl") if p.get(k)}
    for f in [*doc["esp_flows"], *doc["ah_flows"]]:
        values |= {f["spi"], f["src"], f["dst"]}
    return values - {""}


def check_layout(result, text: str, width) -> None:
    assert "…" not in text
    for line in text.splitlines():
        if width is not None and cell_len(line) > width:
            assert " " not in line.strip(), f"line of {cell_len(line)} > {width} columns: {line!r}"
    missing = {v for v in whole_values(result) if v not in text}
    assert not missing, f"cut or missing at width {width}: {sorted(missing)[:5]}"


@pytest.mark.parametrize("path", LAB, ids=lambda p: p.name)
def test_lab_captures_are_never_cut(path):
    result = read_captures([str(path)])
    for width in WIDTHS:
        check_layout(result, render(result, width), width)


def test_public_captures_are_never_cut():
    root = need_public()
    manifest = {c["path"]: c for c in json.loads((root / "MANIFEST.json").read_text())["captures"]}
    for entry in manifest.values():  # the whole corpus: about 20 s
        path = root / entry["path"]
        result = read_captures([str(path)])
        for width in WIDTHS:
            check_layout(result, render(result, width), width)
        # tshark's SPIs (the corpus manifest) appear whole too, where ikeflow reads IKE (AuthIP it skips)
        text = render(result, 80)
        for spi in entry["ike_initiator_spis"][:20] if result.model.sas else ():
            assert spi.replace(":", "") in text, (path.name, spi)


def test_without_a_terminal_lines_are_as_long_as_their_content():
    r = ikeflow("read", str(PCAPS / "lab" / "ikev2-ok.inside.pcap"))
    longest = max(map(len, r.stdout.splitlines()))
    assert longest > 80 and "…" not in r.stdout and "\x1b[" not in r.stdout
    r = ikeflow("read", "--width", "60", str(PCAPS / "lab" / "ikev2-ok.inside.pcap"))
    assert all(len(line) <= 60 or " " not in line.strip() for line in r.stdout.splitlines())


def test_wrap_never_cuts_a_word():
    spi = "3064f0c39e5b75213064f0c39e5b7521"
    lines = [t.plain for t in wrap(f"IKE SA {spi} between 192.0.2.10 and 203.0.113.20", 20, 2)]
    assert lines == ["IKE SA", f"  {spi}", "  between 192.0.2.10", "  and 203.0.113.20"]
    assert [t.plain for t in grid(["a", "b"], [["1", "x y"]], 80)] == ["a  b", "1  x y"]
    assert [t.plain for t in grid(["SPI", "state"], [[spi, "phase 1 incomplete"]], 30)] == \
        ["SPI:", f"  {spi}", "  state: phase 1 incomplete"]


# The lab scenarios' ground truth (pcaps/lab/SCENARIOS.md: what was misconfigured), as the headline says it.
HEADLINES = {
    "ikev1-main-psk-mismatch": "phase 1 fails at MM5 — PSK mismatch likely",
    "ikev1-aggr-psk-mismatch": "phase 1 fails at AM2 — PSK mismatch likely",
    "ikev1-p2-proposal-mismatch": "Quick Mode fails at QM1 — proposal mismatch likely",
    "ikev1-pfs-mismatch": "Quick Mode fails at QM1 — PFS mismatch likely",
    "ikev2-psk-mismatch": "IKE_AUTH fails — PSK mismatch likely",
    "ikev2-dh-group-mismatch": "IKE_SA_INIT fails",
    "ikev2-child-proposal-mismatch": "child SA fails in IKE_AUTH — proposal mismatch likely",
    "ikev2-pfs-mismatch": "child SA fails in CREATE_CHILD_SA — PFS mismatch likely",
}


@pytest.mark.parametrize("name", sorted(HEADLINES))
def test_headline_in_the_words_of_the_ike_version(name):
    r = ikeflow("read", "-q", str(PCAPS / "lab" / f"{name}.inside.pcap"))
    first = [line for line in r.stdout.splitlines() if "⇄" in line][0]
    assert HEADLINES[name] in first, first
    assert "Main Mode:" not in first and (name.startswith("ikev1") or "phase 1" not in first)
    assert r.returncode == 1


def test_every_cause_has_plain_words():
    from ikeflow.diagnose.causes import CAUSES

    assert set(CAUSES) <= set(PLAIN)


def test_headline_without_error_is_the_verdict():
    assert headline(None, "tunnel up: IKE SA up, ESP both ways", None) == "tunnel up: IKE SA up, ESP both ways"


NDPI = "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap"


def test_many_peers_summary_and_merged_findings():
    path = need_public() / NDPI
    r = ikeflow("read", "--width", "80", str(path))
    lines = r.stdout.splitlines()
    table = lines.index(next(line for line in lines if line.startswith("peer pair")))
    assert table < 8  # the summary of all peer pairs comes first
    findings = r.stdout[r.stdout.index("\nFindings\n"):]
    heads = [line for line in findings.splitlines() if re.match(r"(ERROR|WARNING|INFO) ", line)]
    info = [line for line in heads if line.startswith("INFO")]
    doc = json.loads(ikeflow("read", "--json", str(path)).stdout)
    assert len(info) == len(set(info)) < sum(f["severity"] == "info" for f in doc["findings"])  # alike: once
    assert any(re.search(r"\d+ times, \d+ IKE SAs", line) for line in info)
    # every finding about a peer pair names it
    about_pairs = [f for f in doc["findings"] if f["pair"] or f["ispi"]]
    assert about_pairs and sum("⇄" in h for h in heads) >= len({(f["code"], f["summary"]) for f in about_pairs
                                                                if f["severity"] != "info"})


def test_peer_and_severity_narrow_the_report_and_the_json():
    path = need_public() / NDPI
    peer = "109.237.187.193"
    doc = json.loads(ikeflow("read", "--json", "--peer", peer, str(path)).stdout)
    assert doc["peers"] and all(peer in (p["a"], p["b"]) for p in doc["peers"])
    assert all(peer in (m["src"], m["dst"]) for m in doc["messages"])
    assert all(peer in (f["src"], f["dst"]) for f in doc["esp_flows"])
    assert all(peer in f["pair"] for f in doc["findings"] if f["pair"])
    whole = json.loads(ikeflow("read", "--json", str(path)).stdout)
    assert doc["stats"] == whole["stats"] and len(doc["messages"]) < len(whole["messages"])
    warn = json.loads(ikeflow("read", "--json", "--severity", "warning", str(path)).stdout)
    assert {f["severity"] for f in warn["findings"]} <= {"error", "warning"}
    assert {f["severity"] for f in whole["findings"]} > {f["severity"] for f in warn["findings"]}
    text = ikeflow("read", "--peer", "198.51.100.0/24", str(path)).stdout
    assert "⇄" not in text and "No peer pair in this capture matches --peer 198.51.100.0/24." in text
    bad = ikeflow("read", "--peer", "not-an-address", str(path))
    assert bad.returncode == 2 and "--peer not-an-address" in bad.stderr and "Traceback" not in bad.stderr


def test_peer_narrows_compare():
    a = str(PCAPS / "lab" / "ikev1-udp4500-blocked.inside.pcap")
    b = a.replace("inside", "outside")
    whole = json.loads(ikeflow("compare", "--json", a, b).stdout)
    assert any(f["severity"] == "error" for f in whole["findings"])
    other = ikeflow("compare", "--json", "--peer", "198.51.100.9", a, b)
    assert other.returncode == 0 and json.loads(other.stdout)["findings"] == []
    mine = ikeflow("compare", "--json", "--peer", "192.0.2.2", a, b)
    assert mine.returncode == 1 and json.loads(mine.stdout)["findings"] == whole["findings"]
    text = ikeflow("compare", "--peer", "198.51.100.9", a, b).stdout
    assert "narrowed to --peer 198.51.100.9" in text and "No conversation matches --peer 198.51.100.9." in text


def test_quiet_shows_headlines_and_findings_only():
    r = ikeflow("read", "-q", str(PCAPS / "lab" / "ikev1-main-psk-mismatch.inside.pcap"))
    assert "phase 1 fails at MM5" in r.stdout and "Findings" in r.stdout
    assert "──MM1" not in r.stdout and "IKE SA (SPIi)" not in r.stdout


def test_times_have_a_date_and_a_zone():
    assert stamp(1700000000.25, utc=True) == "2023-11-14 22:13:20.250 UTC"
    path = str(PCAPS / "lab" / "ikev2-ok.inside.pcap")
    utc = ikeflow("read", "--utc", path).stdout
    berlin = ikeflow("read", path, env={"TZ": "Europe/Berlin"}).stdout
    assert re.search(r"capture from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} to .* UTC", utc)
    assert re.search(r"capture from \d{4}-\d\d-\d\d .* CET \(UTC\+01:00\)|CEST \(UTC\+02:00\)", berlin)
    assert re.search(r"started (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d\.\d{3}", utc)
    assert "──IKE_SA_INIT" in utc and re.search(r"^\s+0\.000\s+1\s", utc, re.M)  # relative in the ladder
    cmp = ikeflow("compare", "--utc", path, path.replace("inside", "outside")).stdout
    assert re.search(r"captures from \d{4}-\d\d-\d\d .* UTC", cmp)


def test_version_on_every_subcommand():
    for cmd in ("read", "live", "compare"):
        r = ikeflow(cmd, "--version")
        assert r.returncode == 0 and r.stdout.startswith("ikeflow, version"), cmd


def test_no_color_prints_no_escape_codes():
    r = subprocess.run(["script", "-qc", f"{sys.executable} -m ikeflow read --no-color "
                        f"{PCAPS / 'lab' / 'ikev2-ok.inside.pcap'}", "/dev/null"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1]) if shutil.which("script") else None
    if r is None:
        pytest.skip("script(1) is not installed (bsdutils): no pseudo-terminal to test with")
    assert "tunnel up" in r.stdout and "\x1b[" not in r.stdout


# -- read --filter: libpcap's own matcher, checked against tcpdump -r -------------------------------------

def need_tcpdump() -> str:
    path = shutil.which("tcpdump")
    if not path:
        pytest.skip("tcpdump is not installed (apt-get install tcpdump)")
    return path


@pytest.mark.parametrize("expr", ["udp port 500", "src host 192.0.2.2", "udp port 4500 and greater 200", "esp",
                                  "not host 203.0.113.2"])
def test_filter_matches_what_tcpdump_prints(expr):
    from scapy.utils import RawPcapReader

    from ikeflow.sources.bpf import FrameFilter

    tcpdump = need_tcpdump()
    for name in ("ikev1-main-nat-ok.inside.pcap", "ikev2-nat-ok.outside.pcap", "ikev1-esp-oneway.inside.pcap"):
        path = PCAPS / "lab" / name
        keep = FrameFilter(expr)
        reader = RawPcapReader(str(path))
        kept = sum(keep(reader.linktype, data) for data, _ in reader)
        reader.close()
        out = subprocess.run([tcpdump, "-nr", str(path), expr], capture_output=True, text=True).stdout
        assert kept == len(out.splitlines()), (name, expr)


def test_bad_filter_names_libpcap_reason():
    from ikeflow.sources.bpf import FilterError, FrameFilter, compile_filter

    with pytest.raises(FilterError, match="syntax error"):
        compile_filter("host and", 1)
    with pytest.raises(FilterError, match="99999"):
        FrameFilter("udp port 99999")


def test_keys_decrypt_and_a_bad_key_source_is_a_usage_error():
    capture = PCAPS / "lab" / "ikev2-ok.inside.pcap"
    bad = ikeflow("read", "--keys", "/nonexistent/keys", str(capture))
    assert bad.returncode == 2 and "--keys: /nonexistent/keys" in bad.stderr and "Traceback" not in bad.stderr
    keys = PCAPS / "lab" / "ikev2-ok.init.keys.log"  # charon's own log of the keys (pcaps/lab/record.py)
    if not keys.is_file():
        pytest.skip(f"{keys.name} not recorded yet")
    doc = json.loads(ikeflow("read", "--json", "--keys", str(keys), str(capture)).stdout)
    auth = [m for m in doc["messages"] if m["exchange"] == "IKE_AUTH"]
    assert auth and all(m["decrypted"] for m in auth)


def test_mermaid_and_html_outputs(tmp_path):
    capture = str(PCAPS / "lab" / "ikev1-main-psk-mismatch.inside.pcap")
    sas = json.loads(ikeflow("read", "--json", capture).stdout)["ike_sas"]
    r = ikeflow("read", "--mermaid", "-", capture)
    assert r.returncode == 1 and r.stdout.count("```mermaid") == len(sas) and "Findings" not in r.stdout
    both = ikeflow("read", "--mermaid", "-", "--json", capture)
    assert both.returncode == 2 and "--mermaid" in both.stderr
    page, md = tmp_path / "r.html", tmp_path / "r.md"
    r = ikeflow("read", "-q", "--html", str(page), "--mermaid", str(md), capture)
    assert r.returncode == 1 and "phase 1 fails at MM5" in r.stdout
    assert "<svg" in page.read_text() and "sequenceDiagram" in md.read_text()
    r = ikeflow("compare", "--html", str(page), capture, capture.replace("inside", "outside"))
    assert r.returncode in (0, 1) and "<svg" in page.read_text()
    r = ikeflow("read", "--html", str(tmp_path / "no" / "r.html"), capture)
    assert r.returncode == 2 and r.stderr.startswith("ikeflow: cannot write") and "Traceback" not in r.stderr


def render_compare(cmp, width) -> str:
    from ikeflow.render import compare_terminal

    out = io.StringIO()
    compare_terminal.render(Console(file=out, color_system=None, soft_wrap=True), cmp, width=width)
    return out.getvalue()


@pytest.mark.parametrize("inside", sorted((PCAPS / "lab").glob("*.inside.pcap")), ids=lambda p: p.name)
def test_lab_comparisons_are_never_cut(inside):
    from ikeflow.compare import Comparison

    outside = inside.with_name(inside.name.replace(".inside.", ".outside."))
    if not outside.is_file():
        pytest.skip(f"{outside.name} not recorded")
    cmp = Comparison([str(inside), str(outside)]).run()
    found = cmp.findings()
    values = {str(inside), str(outside)} | {ip(a) for seg in cmp.segments for conv in seg.convs
                                             for keys in conv.pairs.values() for k in keys for a in k}
    for width in (60, 80, None):
        text = render_compare(cmp, width)
        assert "…" not in text
        for line in text.splitlines():
            assert width is None or cell_len(line) <= width or " " not in line.strip(), line
        assert all(v in text for v in values), width


def test_read_filter_counts_what_it_drops():
    """read --filter keeps what tcpdump keeps with the same expression; the rest is counted as skipped."""
    path = need_public() / NDPI
    doc = json.loads(ikeflow("read", "--json", "--filter", "host 109.237.187.193", str(path)).stdout)
    kept = subprocess.run(["tcpdump", "-nr", str(path), "host 109.237.187.193"], capture_output=True, text=True).stdout
    assert doc["skipped"]["not kept by --filter"] == doc["stats"]["packets"] - len(kept.splitlines())
    assert [(p["a"], p["b"]) for p in doc["peers"]] == [("192.168.2.100", "109.237.187.193")]


def test_read_filter_bad_expression_is_a_usage_error():
    r = ikeflow("read", "--filter", "udp port 99999", str(PCAPS / "lab/ikev2-ok.outside.pcap"))
    assert r.returncode == 2 and "99999" in r.stderr and "Traceback" not in r.stderr


def test_keys_on_compare_decrypt_at_both_points():
    """compare --keys: each point's IKE_AUTH is decrypted with the daemons' level-4 logs (the lab's keys)."""
    lab = PCAPS / "lab"
    name = "ikev2-psk-mismatch"
    keys = [a for side in ("init", "resp") for a in ("--keys", str(lab / f"{name}.{side}.keys.log"))]
    plain = ikeflow("compare", "--json", str(lab / f"{name}.inside.pcap"), str(lab / f"{name}.outside.pcap"))
    r = ikeflow("compare", *keys, "--json", str(lab / f"{name}.inside.pcap"), str(lab / f"{name}.outside.pcap"))
    assert r.returncode == plain.returncode and json.loads(r.stdout)["kind"] == "compare"
    bad = ikeflow("compare", "--keys", "/nonexistent/keys", str(lab / f"{name}.inside.pcap"),
                  str(lab / f"{name}.outside.pcap"))
    assert bad.returncode == 2 and "--keys" in bad.stderr and "Traceback" not in bad.stderr
