"""Shared test fixtures.

Tests that need the public corpus (../shared/pcaps/public), tshark or root
skip with a reason; with IKEFLOW_REQUIRE_ALL=1 (set by .ci/run) every skip
is turned into a failure, so CI cannot pass by skipping.
"""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
PUBLIC = ROOT.parent / "shared" / "pcaps" / "public"
REQUIRE_ALL = os.environ.get("IKEFLOW_REQUIRE_ALL") == "1"


def need_public() -> Path:
    """The public capture corpus, or skip."""
    if not (PUBLIC / "MANIFEST.json").is_file():
        pytest.skip(f"public capture corpus not found at {PUBLIC}")
    return PUBLIC


def need_tshark() -> str:
    """Path of tshark, or skip."""
    path = shutil.which("tshark")
    if not path:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    return path


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


@pytest.fixture(autouse=True, scope="session")
def _no_neighbor_lookups():
    """Scapy fills in the destination of an `Ether()` left without one by asking the network (ARP, or an
    IPv6 neighbor solicitation with a 1 s timeout): tests build frames, they never ask (broadcast instead)."""
    from scapy.config import conf

    if conf.neighbor is not None:
        conf.neighbor.resolvers.clear()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but IKEFLOW_REQUIRE_ALL=1 forbids skips: {reason}"
