"""The compiled inline path (ikeflow/sources/inline.c) gives the JSON of the Python loop, byte for byte.

Every other test runs with the compiled path when it is built (and `test_capture` checks the inline
path against the decoder); these read the same captures both ways: generated ESP streams with what
real captures do to them (copies, reordering, cuts, clock steps, tags, IPv6, NAT-T, IKE and keepalives
on the way, damaged headers), in every record format, and the benchmark generator's gateway mixes on
one core and two."""

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

import ikeflow.sources.capture as capture
from ikeflow.cli import main

ROOT = Path(__file__).resolve().parents[1]


def need_compiled():
    if capture._compiled is None:
        pytest.skip("the compiled inline path is not built (a C compiler and python3-dev at install time;"
                    " or IKEFLOW_PURE_PYTHON=1 is set)")


def test_compiled_path_is_built():
    """CI builds it (IKEFLOW_REQUIRE_ALL turns this skip into a failure)."""
    need_compiled()
    assert capture._compiled.pcap and capture._compiled.pcapng


def _read(path, monkeypatch, compiled) -> tuple[int, str]:
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(capture, "_compiled", None)
        m.setattr(capture, "MAPPED_SPAN", 700)  # a batch every few frames
        m.setattr(capture, "HOLD", 3)
        done = CliRunner().invoke(main, ["read", "--json", str(path)])
    return done.exit_code, done.output


# --- frames, built with struct: (link-layer wrapper, IP packet) -------------------------------------------

def _ipv4(src: int, dst: int, proto: int, payload: bytes, vhl=0x45, frag=0) -> bytes:
    options = b"\x01" * ((vhl & 0xF) * 4 - 20)
    return struct.pack(">BBHHHBBHII", vhl, 0, 20 + len(options) + len(payload), 1, frag, 64, proto, 0, src,
                       dst) + options + payload


def _ipv6(dst_low: int, proto: int, payload: bytes) -> bytes:
    return (struct.pack(">IHBB", 0x60000000, len(payload), proto, 64) + bytes.fromhex("20010db8") + bytes(12)
            + bytes.fromhex("20010db80001") + dst_low.to_bytes(10, "big") + payload)


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


LINKS = {  # linktype -> wrapper of an IP packet (version from its first byte)
    1: lambda ip: bytes(12) + (b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00") + ip,
    -1: lambda ip: bytes(12) + b"\x81\x00\x00\x0a" + (b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00") + ip,
    -2: lambda ip: bytes(12) + b"\x88\xa8\x00\x14\x81\x00\x00\x0a" + (b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00") + ip,
    113: lambda ip: struct.pack(">HHH8sH", 4, 1, 6, bytes(8), 0x86DD if ip[0] >> 4 == 6 else 0x0800) + ip,
    276: lambda ip: struct.pack(">HHIHBB8s", 0x86DD if ip[0] >> 4 == 6 else 0x0800, 0, 2, 1, 0, 6, bytes(8)) + ip,
    101: lambda ip: ip,
    228: lambda ip: ip,
}


@st.composite
def streams(draw):
    """(linktype, [(time, frame bytes, captured length)]): a few ESP flows, interleaved, and damage."""
    link = draw(st.sampled_from(sorted(LINKS)))
    flows = []
    for n in range(draw(st.integers(1, 4))):
        v6 = draw(st.booleans()) and link != 228
        natt = draw(st.booleans())
        flows.append([0x1000 + n if draw(st.integers(0, 9)) else 0, v6, natt, draw(st.integers(0, 3)) * 0x100,
                      draw(st.integers(1, 3))])
    frames, t = [], 1000.0
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from(["esp"] * 12 + ["copy", "ike", "keepalive", "ike4500", "frag", "options",
                                                    "short", "back"]))
        f = draw(st.sampled_from(flows))
        spi, v6, natt, _, dst = f
        step = draw(st.sampled_from([1] * 8 + [0, 2, -1, -3, 300]))
        f[3] = seq = max(0, f[3] + step)  # (the flow's last sequence number)
        body = struct.pack(">II", spi, seq) + bytes(draw(st.integers(0, 40)))
        if kind == "ike":
            body = bytes(8) + bytes(8) + b"\x21\x20\x22\x08" + bytes(8)
        elif kind == "keepalive":
            body = b"\xff"
        elif kind == "ike4500":  # IKE on the NAT-T port without the non-ESP marker
            body = bytes(4) + bytes(16) + b"\x21\x20\x22\x08" + bytes(4) + struct.pack(">I", 32)
        if natt or kind in ("ike", "keepalive", "ike4500"):
            sport = 500 if kind == "ike" else 4500
            payload, proto = _udp(sport, draw(st.sampled_from([4500, 62001, 500])), body), 17
        else:
            payload, proto = body, 50
        if v6:
            ip = _ipv6(dst, proto, payload)
        else:
            vhl = 0x46 if kind == "options" else 0x45
            ip = _ipv4(0xC0000201, 0xCB007100 + dst, proto, payload, vhl, 0x2000 if kind == "frag" else 0)
        frame = LINKS[link](ip)
        if kind == "short":  # a datagram shorter than its IP header says
            frame = frame[: len(frame) - len(ip) + draw(st.integers(0, len(ip)))]
        t += draw(st.sampled_from([0.001, 0.001, 0.0, 0.5]))
        if kind == "back":
            t -= 2.0
        if kind == "copy" and frames:
            frames.append(frames[-1])
            continue
        cut = len(frame) - draw(st.sampled_from([0] * 6 + [1, 20]))
        frames.append((t, frame, max(0, cut)))
    return (1 if link < 0 else link), frames


def _pcap(link, frames, endian, nano) -> bytes:
    out = [struct.pack(endian + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 262144, link)]
    for t, frame, cut in frames:
        sec = int(t)
        frac = round((t - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(endian + "IIII", sec, frac, cut, len(frame)) + frame[:cut])
    return b"".join(out)


def _block(btype, body, endian):
    body += b"\0" * (-len(body) % 4)
    return struct.pack(endian + "II", btype, len(body) + 12) + body + struct.pack(endian + "I", len(body) + 12)


def _pcapng(link, frames, endian) -> bytes:
    out = [_block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian),
           _block(1, struct.pack(endian + "HHI", link, 0, 0), endian)]
    for t, frame, cut in frames:
        ts = round(t * 1e6)
        out.append(_block(6, struct.pack(endian + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, cut, len(frame))
                          + frame[:cut], endian))
    return b"".join(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(streams(), st.sampled_from(["pcap<", "pcap>", "pcap<ns", "pcapng<", "pcapng>"]))
def test_compiled_and_python_loops_give_the_same_json(tmp_path, monkeypatch, stream, fmt):
    need_compiled()
    link, frames = stream
    endian = "<" if "<" in fmt else ">"
    blob = _pcapng(link, frames, endian) if fmt.startswith("pcapng") else _pcap(link, frames, endian, "ns" in fmt)
    path = tmp_path / "c.cap"
    path.write_bytes(blob)
    assert _read(path, monkeypatch, True) == _read(path, monkeypatch, False)


def test_own_captures_same_json(tmp_path, monkeypatch):
    """Every capture the project recorded, both ways."""
    need_compiled()
    paths = sorted((ROOT / "pcaps").rglob("*.pcap*"))
    assert paths
    for path in paths:
        assert _read(path, monkeypatch, True) == _read(path, monkeypatch, False), path


@pytest.mark.parametrize("link,fmt", [("ether", "pcap"), ("qinq", "pcap"), ("sll2", "pcap"), ("vlan", "pcapng"),
                                      ("ether", "pcapng")])
def test_gateway_mix_same_json_on_one_and_two_cores(tmp_path, link, fmt):
    """The benchmark generator's gateway mix (IPv6 peers, NAT-T, IKEv1 and IKEv2), both ways, on one core
    and on two (the helper process is started with the same IKEFLOW_PURE_PYTHON)."""
    need_compiled()
    path = tmp_path / f"mix.{fmt}"
    gen = [sys.executable, str(ROOT / "tests" / "bench" / "gen_capture.py"), str(path), "--packets", "20000",
           "--peers", "40", "--ipv6", "0.2", "--link", link, "--format", fmt, "--quiet"]
    subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
    out = set()
    for pure in ("0", "1"):
        for minimum in ("0", str(1 << 60)):
            env = dict(os.environ, IKEFLOW_PURE_PYTHON=pure, IKEFLOW_PARALLEL_MIN=minimum, PYTHONPATH=str(ROOT))
            done = subprocess.run([sys.executable, "-m", "ikeflow", "read", "--json", str(path)], env=env,
                                  capture_output=True, check=False)
            assert done.stdout.startswith(b"{"), done.stderr
            out.add((done.returncode, done.stdout))
    assert len(out) == 1
