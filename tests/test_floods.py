"""Floods: time linear in packets, memory bounded by the caps in `ikeflow.limits`.

Each flood is built as pcap bytes with struct (no shipped files): new IKE SAs
(IKE_SA_INIT with random SPIs), retransmissions of one MM3, INFORMATIONAL
exchanges on one long-lived IKE SA, distinct ESP SPIs, ESP to many peers.
Run as a script to write one for measuring at full size:
`python tests/test_floods.py sa-init 1000000 /tmp/f.pcap`.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import time
import tracemalloc

import pytest

A, B = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])
ETH = bytes(12) + b"\x08\x00"


def _udp(src: bytes, dst: bytes, ike: bytes, sport: int = 500, dport: int = 500) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(ike), 0, 0, 64, 17, 0, src, dst)
    return ETH + ip + struct.pack("!HHHH", sport, dport, 8 + len(ike), 0) + ike


def _esp(src: bytes, dst: bytes, spi: int, seq: int) -> bytes:
    body = struct.pack("!II", spi, seq) + bytes(64)
    return ETH + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 50, 0, src, dst) + body


def _ike(ispi: bytes, rspi: bytes, version: int, exchange: int, flags: int, mid: int, payloads: list) -> bytes:
    """An ISAKMP header and (type, body) payloads chained in order."""
    body = b""
    for i, (_, data) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        body += struct.pack("!BBH", nxt, 0, 4 + len(data)) + data
    first = payloads[0][0] if payloads else 0
    return ispi + rspi + struct.pack("!BBBBII", first, version, exchange, flags, mid, 28 + len(body)) + body


def _transform(last: bool, kind: int, tid: int, attrs: bytes = b"") -> bytes:
    return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), kind, 0, tid) + attrs


# SA (AES-CBC-128, HMAC-SHA1, PRF-SHA1, MODP 2048), KE (group 14), Nonce: a usual IKE_SA_INIT request
TRANSFORMS = (_transform(False, 1, 12, struct.pack("!HH", 0x800E, 128)) + _transform(False, 2, 2)
              + _transform(False, 3, 2) + _transform(True, 4, 14))
SA_INIT = [(33, struct.pack("!BBHBBBB", 0, 0, 8 + len(TRANSFORMS), 1, 1, 0, 4) + TRANSFORMS),
           (34, struct.pack("!HH", 14, 0) + b"\x5a" * 256), (40, b"\xa5" * 32)]


def sa_init(n: int):
    """n IKE_SA_INIT requests with random initiator SPIs from one peer: n new IKE SAs."""
    rnd = random.Random(1)
    for _ in range(n):
        yield _udp(A, B, _ike(rnd.randbytes(8), bytes(8), 0x20, 34, 0x08, 0, SA_INIT))


def mm3(n: int):
    """n copies of one Main Mode MM3 (KE, Nonce, two NAT-D)."""
    ike = _ike(b"\xaa" * 8, b"\xbb" * 8, 0x10, 2, 0, 0,
               [(4, b"\x11" * 256), (10, b"\x22" * 16), (20, b"\x33" * 20), (20, b"\x44" * 20)])
    frame = _udp(A, B, ike)
    for _ in range(n):
        yield frame


def informational(n: int):
    """An IKE SA brought up (IKE_SA_INIT, IKE_AUTH), then n INFORMATIONAL requests, each answered."""
    i, r = b"\x01" * 8, b"\x02" * 8
    yield _udp(A, B, _ike(i, bytes(8), 0x20, 34, 0x08, 0, [(40, bytes(32))]))
    yield _udp(B, A, _ike(i, r, 0x20, 34, 0x20, 0, [(40, bytes(32))]))
    yield _udp(A, B, _ike(i, r, 0x20, 35, 0x08, 1, [(46, bytes(300))]))
    yield _udp(B, A, _ike(i, r, 0x20, 35, 0x20, 1, [(46, bytes(300))]))
    for mid in range(2, n + 2):
        yield _udp(A, B, _ike(i, r, 0x20, 37, 0x08, mid, [(46, bytes(60))]))
        yield _udp(B, A, _ike(i, r, 0x20, 37, 0x20, mid, [(46, bytes(60))]))


def esp_spis(n: int):
    """n ESP packets with distinct random SPIs, one peer to another: n ESP SAs."""
    rnd = random.Random(2)
    for _ in range(n):
        yield _esp(A, B, rnd.getrandbits(32) | 1, 1)


def esp_peers(n: int):
    """One ESP packet to each of n destinations: n peer pairs, n ESP SAs."""
    for k in range(n):
        yield _esp(A, struct.pack("!I", 0x0A000000 + k), 0x1000 + k, 1)


def tunnels(n: int):
    """n packets of n // 6 tunnels to as many peers: IKE_SA_INIT, IKE_AUTH, ESP both ways."""
    for k in range(n // 6):
        peer, i, r = struct.pack("!I", 0x0A000000 + k), struct.pack("!Q", 2 * k + 1), struct.pack("!Q", 2 * k + 2)
        yield _udp(A, peer, _ike(i, bytes(8), 0x20, 34, 0x08, 0, SA_INIT))
        yield _udp(peer, A, _ike(i, r, 0x20, 34, 0x20, 0, SA_INIT))
        yield _udp(A, peer, _ike(i, r, 0x20, 35, 0x08, 1, [(46, bytes(300))]))
        yield _udp(peer, A, _ike(i, r, 0x20, 35, 0x20, 1, [(46, bytes(300))]))
        yield _esp(A, peer, 0x10000 + k, 1)
        yield _esp(peer, A, 0x20000 + k, 1)


FLOODS = {"sa-init": sa_init, "mm3": mm3, "informational": informational, "esp-spis": esp_spis,
          "esp-peers": esp_peers, "tunnels": tunnels}


def write_pcap(out, frames) -> None:
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for k, frame in enumerate(frames):
        out.write(struct.pack("<IIII", 1_700_000_000 + k // 1000, (k % 1000) * 1000, len(frame), len(frame)))
        out.write(frame)


def analyse(path: str, limits=None):
    """The read pipeline (analysis, findings, verdicts, JSON document) on one file."""
    from ikeflow.pipeline import Options, read_captures
    from ikeflow.render import read_json

    spool = read_json.MessageSpool(1)
    r = read_captures([path], Options(limits=limits) if limits else Options(), [spool.add])
    with open(os.devnull, "w") as out:
        read_json.write(out, read_json.build(r.model, r.infos, r.findings, r.verdicts), spool)
    return r.model, r.findings


def _timed(tmp_path, kind: str, n: int) -> float:
    path = tmp_path / f"{kind}-{n}.pcap"
    with open(path, "wb") as f:
        write_pcap(f, FLOODS[kind](n))
    start = time.perf_counter()
    analyse(str(path))
    return time.perf_counter() - start


@pytest.mark.parametrize("kind", list(FLOODS))
def test_time_linear(tmp_path, kind):
    """Four times the flood takes about four times as long (quadratic would be 16)."""
    small = min(_timed(tmp_path, kind, 5_000) for _ in range(2))
    big = _timed(tmp_path, kind, 20_000)
    assert big / small < 8, f"{kind}: 5k items {small:.2f} s, 20k items {big:.2f} s"


@pytest.mark.parametrize("kind", list(FLOODS))
def test_memory_capped(tmp_path, kind):
    """Past the caps, a flood adds nothing to what is kept; what was turned away is counted and reported."""
    from ikeflow.limits import Limits

    caps = Limits(peer_pairs=500, ike_sas=500, esp_flows=500)
    held = []
    for n in (4_000, 16_000):
        path = tmp_path / f"{kind}-{n}.pcap"
        with open(path, "wb") as f:
            write_pcap(f, FLOODS[kind](n))
        tracemalloc.start()
        an, found = analyse(str(path), caps)
        now, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        held.append(now)
        assert peak < 64 << 20, f"{kind}: peak {peak >> 20} MiB for {n} items"  # the reader's batches are 8 MiB
        assert len(an.sas) <= 500 and len(an.pairs) <= 500 and len(an.esp.flows) <= 500
        assert an.stats.packets == sum(vars(an.stats)[k] for k in
                                       ("ike", "esp", "ah", "keepalives", "icmp", "fragments", "malformed", "skipped"))
    assert held[1] < held[0] * 1.3, f"{kind}: {held[0] >> 10} KiB held at 4k items, {held[1] >> 10} KiB at 16k"
    if kind in ("sa-init", "esp-spis", "esp-peers"):
        overflow = [f for f in found if f.code == "overflow"]
        assert len(overflow) == 1 and overflow[0].severity == "warning" and overflow[0].at == "capture"
        assert "--max-" in overflow[0].hint and sum(an.stats.overflow.values()) >= 15_000


def test_overflow_counts_frames(tmp_path):
    """Frames past a cap are still counted as IKE/ESP; the cap names its option."""
    from ikeflow.limits import Limits

    path = tmp_path / "f.pcap"
    with open(path, "wb") as f:
        write_pcap(f, list(sa_init(30)) + list(esp_spis(20)))
    an, found = analyse(str(path), Limits(ike_sas=10, esp_flows=5))
    assert (an.stats.ike, an.stats.esp) == (30, 20)
    assert an.stats.overflow == {"ike_sas": 20, "esp_flows": 15}
    (f,) = [f for f in found if f.code == "overflow"]
    assert "--max-sas" in f.hint and "--max-esp-flows" in f.hint


def test_half_open_sas_and_one_packet_esp_sas_forget_the_oldest(tmp_path):
    """A flood of new SPIs fills the half-open caps; tunnels (answered SAs, ESP SAs in use) stay kept."""
    from ikeflow.limits import Limits

    path = tmp_path / "f.pcap"
    in_use = [_esp(B, A, 0xFEED, seq) for seq in (1, 2)]  # an ESP SA that goes on
    with open(path, "wb") as f:
        write_pcap(f, list(tunnels(60)) + in_use + list(sa_init(300)) + list(esp_spis(200)))
    an, found = analyse(str(path), Limits(half_open_sas=20, new_esp_flows=30))
    assert (an.stats.ike, an.stats.esp) == (40 + 300, 20 + 2 + 200)
    # the oldest one-packet ESP SAs go, the tunnels' single packets among them; the SA in use stays
    assert an.stats.overflow == {"half_open_sas": 300 - 20, "new_esp_flows": 20 + 200 - 30}
    assert len(an.sas) == 10 + 20 and sum(len(p.sas) for p in an.pairs.values()) == 30
    assert all(sa.ike_sa_up() for sa in list(an.sas.values())[:10])  # the tunnels, answered, are all kept
    assert [f.packets for f in an.esp.flows.values() if f.spi == 0xFEED] == [2]
    (f,) = [f for f in found if f.code == "overflow"]
    assert "--max-half-open" in f.hint and "--max-new-esp-flows" in f.hint


def test_rss_bounded(tmp_path):
    """The whole `ikeflow read --json` process stays small on a flood of new IKE SAs."""
    path = tmp_path / "f.pcap"
    with open(path, "wb") as f:
        write_pcap(f, sa_init(40_000))
    code = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-m', 'ikeflow', 'read', '--json', "
            f"{str(path)!r}], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    kib = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert kib < 150 * 1024, f"{kib >> 10} MiB for 40,000 IKE SAs"


if __name__ == "__main__":
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(out, "wb") as f:
        write_pcap(f, FLOODS[kind](n))
    print(out, os.path.getsize(out))
