"""Hostile captures: each of ../shared/repro (crafted by mutation and resource fuzzing) and each
crash saved by tests/fuzz/fuzz_read.py must be read without an internal error."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

REPRO = ROOT.parent / "shared" / "repro"
CRASHES = ROOT / "tests" / "fuzz" / "crashes"
TIMEOUT = 20


def _files(folder: Path, skip_suffixes: tuple) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix not in skip_suffixes) if folder.is_dir() else []


def _fuzz_read():
    spec = importlib.util.spec_from_file_location("fuzz_read", ROOT / "tests" / "fuzz" / "fuzz_read.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", _files(REPRO, (".md",)) or ["(none)"])
def test_repro_capture_is_read_without_internal_error(name):
    """Exit 0/1 (analysed) or 2 (unreadable, one line on stderr) within TIMEOUT seconds, no traceback."""
    if not REPRO.is_dir():
        pytest.skip(f"repro captures not found at {REPRO}")
    try:
        proc = subprocess.run([sys.executable, "-m", "ikeflow", "read", "--json", str(REPRO / name)],
                              capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ikeflow read --json {name}: still running after {TIMEOUT} s")
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode in (0, 1, 2), f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    if proc.returncode == 2:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("name", _files(CRASHES, (".txt",)))
def test_fuzz_crash_is_read_without_error(name):
    """The inputs tests/fuzz/fuzz_read.py saved (the .txt next to each says what it raised)."""
    fuzz = _fuzz_read()
    fuzz.read_pipeline(str(CRASHES / name), limits=fuzz.TINY if fuzz.TINY_SUFFIX in name else fuzz.DEFAULT)
