"""Damaged input: gzip cut short, corrupt or followed by other data, pcapng blocks that lie about
their lengths, timestamps past any date, and a report that cannot be written.  Every whole record
before the damage is analysed (exit 0/1, a warning naming the byte offset) or the input is
unreadable (exit 2, one line); never an internal error (exit 3).

Whole records are counted with the small independent parsers below, not with the reader.
"""

import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from test_capture import _block, esp, eth, ike, pcap, pcapng, run

from conftest import ROOT
from ikeflow.sources.capture import CaptureError, _Gunzip
from ikeflow.render.common import clock as _clock

REPRO = ROOT.parent / "shared" / "repro"


def need_repro(name: str) -> Path:
    """A file of ../shared/repro, or skip."""
    path = REPRO / name
    if not path.is_file():
        pytest.skip(f"repro capture not found at {path}")
    return path


def ikeflow(*args, stdin=None, stdout=subprocess.PIPE):
    return subprocess.run([sys.executable, "-m", "ikeflow", *args], input=stdin, stdout=stdout,
                          stderr=subprocess.PIPE, timeout=60)


def read_json(path, *, stdin=None):
    r = ikeflow("read", "--json", str(path), stdin=stdin)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)["capture"]["files"][0], r.stderr.decode()


def pcap_records(data: bytes) -> int:
    """Whole records of a little-endian microsecond pcap."""
    off, n = 24, 0
    while off + 16 <= len(data):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
        if off > len(data):
            break
        n += 1
    return n


def pcapng_packets(data: bytes) -> int:
    """Whole enhanced packet blocks of a little-endian pcapng, up to the first impossible block."""
    off, n = 0, 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if blen < 12 or blen % 4 or off + blen > len(data) or btype == 6 and blen < 32:
            break
        n += btype == 6
        off += blen
    return n


def gunzip_prefix(data: bytes) -> bytes:
    """What zlib makes of a (cut) single gzip member."""
    return zlib.decompressobj(31).decompress(data)


BLOB = pcap([(1700000000 + i, eth(esp(i + 1) if i % 3 else ike())) for i in range(40)])


# -- the repro files -----------------------------------------------------------------------

def test_repro_gzip_cut_short_keeps_the_whole_records():
    path = need_repro("gzip-cut-last-10-bytes.pcap.gz")
    info, err = read_json(path)
    expected = pcap_records(gunzip_prefix(path.read_bytes()))
    assert expected == 21 and info["packets"] == expected
    assert f"gzip data cut short at compressed byte {path.stat().st_size}" in err
    assert info["truncated_at"] is not None and f"decompressed byte {info['truncated_at']}" in err


def test_repro_gzip_trailing_newline_is_a_warning():
    path = need_repro("gzip-trailing-garbage.pcap.gz")
    info, err = read_json(path)
    data = path.read_bytes()
    assert info["packets"] == pcap_records(gzip.decompress(data[:-1])) == 22
    assert f"data after the end of the gzip stream at compressed byte {len(data) - 1} ignored" in err
    assert info["truncated_at"] is None


@pytest.mark.parametrize("name", ["gzip-corrupt-deflate.pcap.gz", "gzip-magic-then-pcap.pcap"])
def test_repro_gzip_that_yields_nothing_is_unreadable(name):
    path = need_repro(name)
    r = ikeflow("read", "--json", str(path))
    lines = r.stderr.decode().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and not r.stdout
    assert str(path) in lines[0] and "corrupt gzip data at compressed byte" in lines[0]


@pytest.mark.parametrize("name", ["pcapng-short-epb-at-end.pcapng", "pcapng-short-opb-at-end.pcapng"])
def test_repro_pcapng_short_last_block_is_a_truncation(name):
    path = need_repro(name)
    info, err = read_json(path)
    assert info["packets"] == 0 and info["truncated_at"] == 48
    assert "corrupt pcapng block at byte 48 (length 16)" in err


@pytest.mark.parametrize("args", [["compare"], ["compare", "--json"]])
def test_repro_timestamp_beyond_time_t_compare(args):
    path = str(need_repro("pcapng-timestamp-beyond-time_t.pcapng"))
    r = ikeflow(*args, path, path)
    assert r.returncode in (0, 1), r.stderr


def test_repro_timestamp_beyond_time_t_terminal_report():
    r = ikeflow("read", str(need_repro("pcapng-timestamp-beyond-time_t.pcapng")))
    assert r.returncode in (0, 1), r.stderr


@pytest.mark.parametrize("t", [1.8446744073709552e19, -1e300, float("inf"), float("nan"), 1700000000.25])
def test_clock_any_float(t):
    assert _clock(t)


# -- gzip, hand-built ----------------------------------------------------------------------

def test_gzip_cut_at_every_offset_keeps_every_whole_record(tmp_path):
    gz = gzip.compress(BLOB)
    for n in range(2, len(gz)):
        if len(gunzip_prefix(gz[:n])) < 4:  # not even the magic number: unreadable
            with pytest.raises(CaptureError, match=f"could be decompressed: gzip data cut short at compressed byte {n}"):
                run(tmp_path, [gz[:n]], name="c.pcap.gz")
            continue
        _, infos = run(tmp_path, [gz[:n]], name="c.pcap.gz")
        assert infos[0].packets == pcap_records(gunzip_prefix(gz[:n])), n
        assert f"gzip data cut short at compressed byte {n}" in infos[0].warning


@pytest.mark.parametrize("step", [1, 7, _Gunzip.STEP])
def test_gzip_members_are_all_read(tmp_path, monkeypatch, step):
    monkeypatch.setattr(_Gunzip, "STEP", step)  # also with a member's magic split across two steps
    half = len(BLOB) // 2 + 3  # inside a record
    an, infos = run(tmp_path, [gzip.compress(BLOB[:half]) + gzip.compress(BLOB[half:]) + gzip.compress(b"")],
                    name="c.pcap.gz")
    assert infos[0].packets == 40 and infos[0].warning is None and an.stats.packets == 40


def test_gzip_trailing_garbage_is_a_warning(tmp_path):
    gz = gzip.compress(BLOB)
    _, infos = run(tmp_path, [gz + b"\0\0garbage"], name="c.pcap.gz")
    assert infos[0].packets == 40 and infos[0].truncated_at is None
    assert infos[0].warning.startswith(f"data after the end of the gzip stream at compressed byte {len(gz)} ignored")


def test_gzip_corrupt_in_the_middle_keeps_what_came_before(tmp_path):
    half = len(BLOB) // 2 + 3
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    good = z.compress(BLOB[:half]) + z.flush(zlib.Z_FULL_FLUSH)  # the next block starts on a byte
    gz = good + b"\x07" + bytes(200)  # final block of the reserved type 3
    _, infos = run(tmp_path, [gz], name="c.pcap.gz")
    assert infos[0].packets == pcap_records(BLOB[:half]) > 0
    assert infos[0].warning.startswith(f"corrupt gzip data at compressed byte {len(good)} (invalid block type)")
    assert infos[0].truncated_at == 24 + sum(16 + len(eth(esp(i + 1) if i % 3 else ike()))
                                             for i in range(infos[0].packets))


def test_gzip_pcapng_cut_short(tmp_path):
    blob = pcapng([(0, 1700000000 + i, eth(esp(i + 1))) for i in range(10)])
    gz = gzip.compress(blob)[:-30]
    _, infos = run(tmp_path, [gz], name="c.pcapng.gz")
    assert infos[0].format == "pcapng" and infos[0].packets == pcapng_packets(gunzip_prefix(gz))
    assert "gzip data cut short" in infos[0].warning


def test_gzip_on_stdin_cut_short():
    gz = gzip.compress(BLOB)[:-40]
    info, err = read_json("-", stdin=gz)
    assert info["packets"] == pcap_records(gunzip_prefix(gz)) and "gzip data cut short" in err


def test_gzip_magic_then_junk_is_one_line(tmp_path):
    p = tmp_path / "x.pcap"
    p.write_bytes(b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 50)
    r = ikeflow("read", str(p))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and str(p).encode() in r.stderr


# -- pcapng, hand-built --------------------------------------------------------------------

PCAPNG = pcapng([(0, 1700000000 + i, eth(esp(i + 1) if i % 3 else ike())) for i in range(12)])


def test_pcapng_cut_at_every_offset(tmp_path):
    for n in range(4, len(PCAPNG)):
        _, infos = run(tmp_path, [PCAPNG[:n]], name="c.pcapng")
        assert infos[0].packets == pcapng_packets(PCAPNG[:n]), n


def test_pcapng_block_lengths_that_lie(tmp_path):
    first_epb = PCAPNG.index(struct.pack("<I", 6))
    for blen in (0, 8, 13, 16, 28, 1 << 30, 0xFFFFFFFC):
        b = bytearray(PCAPNG)
        b[first_epb + 4 : first_epb + 8] = struct.pack("<I", blen)
        _, infos = run(tmp_path, [bytes(b)], name="c.pcapng")
        assert infos[0].packets == 0 and infos[0].truncated_at == first_epb, blen


def test_pcapng_captured_length_beyond_the_block(tmp_path):
    second_epb = PCAPNG.index(struct.pack("<I", 6), PCAPNG.index(struct.pack("<I", 6)) + 32)
    b = bytearray(PCAPNG)
    b[second_epb + 20 : second_epb + 24] = struct.pack("<I", 5000)
    _, infos = run(tmp_path, [bytes(b)], name="c.pcapng")
    assert infos[0].packets == 1 and infos[0].truncated_at == second_epb
    assert infos[0].warning == f"corrupt pcapng block at byte {second_epb} (captured length 5000 > block)"


def test_pcapng_option_past_the_block_end(tmp_path):
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 14, 8) + b"\0\0\0\0")  # if_tsoffset cut
    epb = _block(6, struct.pack("<IIIII", 0, 0, 1, 4, 4) + b"abcd")
    _, infos = run(tmp_path, [shb + idb + epb], name="c.pcapng")
    assert infos[0].packets == 1 and infos[0].warning is None


def test_pcapng_packet_on_an_undescribed_interface_is_warned_and_counted(tmp_path):
    blob = pcapng([(0, 1700000000, eth(ike())), (3, 1700000001, eth(ike())), (0, 1700000002, eth(ike())),
                   (7, 1700000003, eth(ike()))], interfaces=[(1, None)] * 8)
    shb_idb_len = blob.index(struct.pack("<I", 6))
    one_idb = blob[:shb_idb_len - 7 * 20]  # the section header and only the first interface
    an, infos = run(tmp_path, [one_idb + blob[shb_idb_len:]], name="c.pcapng")
    assert infos[0].packets == an.stats.packets == 4 and an.stats.skipped == 2 and an.stats.ike == 2
    assert infos[0].warning == ("2 packets (the first is frame 2) on an interface the file does not describe, "
                                "counted as skipped")


# -- the report cannot be written ----------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", [["read", "--json"], ["read"], ["compare"], ["compare", "--json"]])
def test_write_error_on_stdout_is_one_line_exit_2(tmp_path, args):
    p = tmp_path / "c.pcap"
    p.write_bytes(BLOB)
    files = [str(p)] * (2 if args[0] == "compare" else 1)
    with open("/dev/full", "w") as full:
        r = ikeflow(*args, *files, stdout=full)
    assert r.returncode == 2
    assert r.stderr.decode() == "ikeflow: cannot write the report: No space left on device\n"


def test_write_error_while_the_messages_are_copied_is_a_write_error():
    """read --json copies its spooled messages to stdout's binary layer: a write error there (a disk that fills
    up just then) is a write error too (one line, exit 2: cli._Stdout), not an internal error."""
    import io

    from ikeflow import cli
    from ikeflow.render.read_json import MessageSpool

    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(28, "No space left on device")

    spool = MessageSpool(1)
    spool.file.write("x" * (1 << 16))  # more than a write buffer: it reaches the disk at once
    out = cli._Stdout(io.TextIOWrapper(io.BufferedWriter(Full()), encoding="utf-8"))
    with pytest.raises(cli._WriteError):
        spool.copy_to(out)


def test_messages_are_copied_as_text_where_stdout_does_not_write_ascii_as_is():
    """The byte copy of the spooled messages is for encodings that write ASCII as ASCII; UTF-16 gets text."""
    import io

    from ikeflow.render.read_json import MessageSpool

    spool = MessageSpool(1)
    spool.file.write('{"frame":1}')
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-16")
    out.write("[")
    spool.copy_to(out)
    out.write("]")
    out.flush()
    assert out.buffer.getvalue().decode("utf-16") == '[{"frame":1}]'
