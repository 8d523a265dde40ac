"""The reader's bulk path (sources.bulk, numpy) counts exactly what the per-record path counts.

Every capture we have is read twice in this process, once record by record and once with bulk
from the first frame and for chunks of any size, and the JSON documents must be equal byte for
byte: the lab's captures, the public corpus, and generated gateway mixes on every link type the
inline path knows (IPv6, QinQ, SLL2, pcapng).
"""

import io
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PCAPS, need_public
import ikeflow.sources.capture as capture
from ikeflow.pipeline import read_captures
from ikeflow.render import read_json

GEN = Path(__file__).parent / "bench" / "gen_capture.py"
NOT_CAPTURES = {".log", ".md", ".json", ".py", ".conf", ".secrets"}


def document(path: str) -> str:
    spool = read_json.MessageSpool(1)
    try:
        r = read_captures([path], listeners=[spool.add])
    except capture.CaptureError as e:
        return f"error: {e}"
    out = io.StringIO()
    read_json.write(out, read_json.build(r.model, r.infos, r.findings, r.verdicts), spool)
    return out.getvalue()


def both(monkeypatch, path: str, span: int = 2048) -> tuple[str, str]:
    """The document read record by record, and with bulk on every chunk of `span` bytes (by default a
    few records, so that bulk gets flows counted before; pcapng: twice that)."""
    monkeypatch.setattr(capture, "CHUNK", 2 * span)
    monkeypatch.setattr(capture, "BULK_SPAN", span)
    monkeypatch.setattr(capture, "BULK_AFTER", 1 << 60)
    one = document(path)
    monkeypatch.setattr(capture, "BULK_AFTER", 0)
    monkeypatch.setattr(capture, "BULK_ROWS", 1)
    return one, document(path)


def test_bulk_row_matches_the_reader():
    from ikeflow.sources import bulk

    assert bulk.ROW == capture.BULK_ROW


@pytest.mark.parametrize("options", [
    ["--ipv6", "0.1"],
    ["--ipv6", "0.2", "--link", "qinq"],
    ["--ipv6", "0.2", "--link", "vlan"],
    ["--ipv6", "0.2", "--link", "sll2"],
    ["--ipv6", "0.2", "--link", "sll"],
    ["--ipv6", "0.2", "--format", "pcapng"],
], ids=lambda o: "-".join(o[2:]) or "ether")
def test_generated_mixes(monkeypatch, tmp_path, options):
    path = tmp_path / "mix.cap"
    subprocess.run([sys.executable, str(GEN), str(path), "--packets", "20000", "--peers", "40", *options, "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    for span in (2048, 1 << 20):
        one, many = both(monkeypatch, str(path), span)
        assert '"esp_flows":[{' in one.replace(" ", "") and one == many


def test_own_captures(monkeypatch):
    files = sorted(p for p in PCAPS.rglob("*") if p.is_file() and p.suffix not in NOT_CAPTURES)
    assert len(files) > 50
    for p in files:
        one, many = both(monkeypatch, str(p))
        assert one == many, p


def test_public_corpus(monkeypatch):
    public = need_public()
    files = sorted(p for p in public.rglob("*") if p.is_file() and not p.name.startswith("MANIFEST."))
    for p in files:
        one, many = both(monkeypatch, str(p))
        assert one == many, p
