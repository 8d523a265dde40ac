#!/usr/bin/env python3
"""Benchmark `ikeflow read --json` against the tshark equivalent on large captures.

    python tests/bench/bench_read.py [--packets 1000000] [--captures gateway,mixed,...] [--file F ...]
                                     [--runs 3] [--sizes [1000000,3000000,5000000]]

Without --file it writes synthetic gateway captures with gen_capture.py into
/tmp/bench (--out-dir; reused while the generator and the size are unchanged;
--tmp writes them to a temporary folder instead), one per --captures name:

    gateway        24 IPv4 peers, Ethernet, pcap (the benchmark of issue 2)
    mixed          200 peers, 10 % of them IPv6, Ethernet, pcap (issue 14's gateway mix)
    mixed-pcapng   the same as pcapng
    mixed-qinq     the same behind QinQ tags (802.1ad around 802.1Q)
    mixed-sll2     the same as a `tcpdump -i any` capture (Linux cooked v2)

Then, on each file and alternating, it runs as whole processes

    ikeflow read --json F > /dev/null
    tshark -r F -Y 'isakmp or esp' -T fields -e frame.number -e ip.src -e ip.dst -e udp.srcport
           -e udp.dstport -e isakmp.ispi -e isakmp.rspi -e isakmp.exchangetype -e esp.spi
           -e esp.sequence > /dev/null

and prints per file and tool the median wall time, packets/s and peak RSS of
the process tree (the largest sum of the resident sets of the process and its
children, sampled every 10 ms, and never below GNU /usr/bin/time's %M, else
wait4()'s; apt-get install time), the ratio tshark_time / ikeflow_time and
whether the targets hold (ratio >= 15, ikeflow peak RSS <= 100 MiB).
--sizes also runs ikeflow on the mixed capture at other sizes to show whether
its RSS grows with the file.  Finally one more (untimed) ikeflow run's JSON on
each file is compared with what the generator planted (packet counts, ESP SPIs,
lost and duplicated packets): printed, not asserted.

Before the runs and after them it times a fixed Python loop (the CPU probe): a machine that kept its
speed gives the same figure twice, and the figure sets runs from different days side by side.

This is a measurement, not a test: it never fails on a missed target
(exit 0), only on a tool that could not run (exit 1).
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen_capture  # noqa: E402

TARGET_RATIO = 15.0
TARGET_RSS_MIB = 100.0
CAPTURES = {  # --captures name -> gen_capture options
    "gateway": [],
    "mixed": ["--peers", "200", "--ipv6", "0.1"],
    "mixed-pcapng": ["--peers", "200", "--ipv6", "0.1", "--format", "pcapng"],
    "mixed-qinq": ["--peers", "200", "--ipv6", "0.1", "--link", "qinq"],
    "mixed-sll2": ["--peers", "200", "--ipv6", "0.1", "--link", "sll2"],
}
TSHARK_ARGS = ["-Y", "isakmp or esp", "-T", "fields", "-e", "frame.number", "-e", "ip.src", "-e", "ip.dst",
               "-e", "udp.srcport", "-e", "udp.dstport", "-e", "isakmp.ispi", "-e", "isakmp.rspi",
               "-e", "isakmp.exchangetype", "-e", "esp.spi", "-e", "esp.sequence"]


def generator_id() -> str:
    return hashlib.sha256((HERE / "gen_capture.py").read_bytes()).hexdigest()[:16]


def ensure_capture(folder: Path, name: str, packets: int, seed: int) -> tuple[Path, dict]:
    """The synthetic capture `name` (CAPTURES) of this size and seed, written unless an up-to-date one is there."""
    folder.mkdir(parents=True, exist_ok=True)
    options = CAPTURES[name]
    fmt = "pcapng" if "pcapng" in options else "pcap"
    path = folder / f"{name}-{packets}-s{seed}.{fmt}"
    manifest_path = path.with_name(path.name + ".manifest.json")
    gid = generator_id()
    if path.is_file() and manifest_path.is_file():
        try:
            m = json.loads(manifest_path.read_text())
            if m.get("generator") == gid and m.get("bytes") == path.stat().st_size:
                print(f"reusing {path} ({m['bytes'] / 2**20:.0f} MiB, {packets} packets)")
                return path, m
        except (ValueError, OSError):
            pass
    print(f"generating {path} ({packets} packets) ...", flush=True)
    t = time.perf_counter()
    # In a child process: this process must stay small, or its high-water RSS would show up in the
    # children's ru_maxrss when wait4() is the RSS source (the RSS before exec counts on Linux).
    subprocess.run([sys.executable, str(HERE / "gen_capture.py"), str(path), "--packets", str(packets),
                    "--seed", str(seed), *options, "--manifest", str(manifest_path), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    m = json.loads(manifest_path.read_text())
    m["generator"] = gid
    manifest_path.write_text(json.dumps(m, indent=1))
    print(gen_capture.describe(m).split("\n  planted:")[0])
    print(f"  generated in {time.perf_counter() - t:.1f} s")
    return path, m


def warm(path: Path) -> None:
    """Read the file once so that every timed run finds it in the page cache."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def ikeflow_cmd(override: str | None) -> list[str]:
    """The ikeflow of this tree (`python -m ikeflow` with the tree first on PYTHONPATH: an installed console
    script may run another tree), unless --ikeflow says otherwise."""
    if override:
        return shlex.split(override)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parents[1]), os.environ.get("PYTHONPATH")]))
    # its bytecode written first, as an installed package has it: with PYTHONDONTWRITEBYTECODE set (as on the
    # project's build machine) each run would compile every module edited since, 0.1-0.3 s a run
    compileall.compile_dir(str(HERE.parents[1] / "ikeflow"), quiet=1)
    return [sys.executable, "-m", "ikeflow"]


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(top: int) -> int:
    """Bytes resident in the processes below `top` (not `top` itself: the `time` process), now."""
    pids, total = [top], 0
    for pid in pids:
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    pids += map(int, fh.read().split())
            if pid != top:
                with open(f"/proc/{pid}/statm") as fh:
                    total += int(fh.read().split()[1]) * PAGE
        except (OSError, ValueError):  # gone meanwhile
            pass
    return total


class TreeSampler(threading.Thread):
    """The largest tree_rss(pid) seen, every 10 ms, until stop()."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, tree_rss(self.pid))

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def run(cmd: list[str], stdout=subprocess.DEVNULL) -> tuple[float, float, int, str]:
    """Run one command as a whole process: (wall seconds, peak RSS MiB of its process tree, exit code,
    stderr tail).

    The tree's RSS is sampled (TreeSampler); it is never less than GNU time's %M, the peak of the
    largest single process (its child is forked from the small `time` process, so nothing of this
    Python process is counted), else wait4()'s.
    """
    with tempfile.NamedTemporaryFile("w+", suffix=".time") as tfile, tempfile.TemporaryFile() as err:
        full = [GNU_TIME, "-o", tfile.name, "-f", "%x %M"] + cmd if GNU_TIME else cmd
        t = time.perf_counter()
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err)
        sampler = TreeSampler(proc.pid if GNU_TIME else os.getpid())
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        tree = sampler.stop()
        code = os.waitstatus_to_exitcode(status)
        rss_kib = usage.ru_maxrss  # KiB on Linux
        if GNU_TIME:
            fields = tfile.read().split()
            if len(fields) >= 2 and fields[-1].isdigit():
                code, rss_kib = int(fields[-2]), int(fields[-1])
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace")
    return wall, max(rss_kib * 1024, tree) / 2**20, code, tail


def ok_exit(tool: str, code: int, err: str) -> bool:
    """ikeflow exits 1 when it has error findings; Python exits 1 too on an uncaught exception."""
    return (code in (0, 1) and "Traceback (most recent call last)" not in err) if tool == "ikeflow" else code == 0


def compare(packets: int, runs: int, cmds: dict[str, list[str]]) -> dict[str, dict]:
    results = {name: {"walls": [], "rss": []} for name in cmds}
    names = list(cmds)
    for r in range(runs):
        order = names if r % 2 == 0 else names[::-1]  # alternate who goes first
        for name in order:
            wall, rss, code, err = run(cmds[name])
            if not ok_exit(name, code, err):
                print(f"{name} failed (exit {code}):\n{err}", file=sys.stderr)
                sys.exit(1)
            results[name]["walls"].append(wall)
            results[name]["rss"].append(rss)
            print(f"  run {r + 1}/{runs} {name:8} {wall:8.2f} s  {rss:7.1f} MiB", flush=True)
    for res in results.values():
        res["median"] = statistics.median(res["walls"])
        res["pps"] = packets / res["median"]
        res["peak_rss"] = max(res["rss"])
    return results


def report(rows: list[tuple[str, int, dict[str, dict]]]) -> None:
    """One line per file and tool, then the targets."""
    print()
    print(f"{'capture':28} {'tool':8} {'median s':>9} {'packets/s':>11} {'tree RSS MiB':>13} {'tshark/ikeflow':>15}"
          "   runs (s)")
    for label, _, results in rows:
        ike = results["ikeflow"]
        for name, res in results.items():
            walls = " ".join(f"{w:.2f}" for w in res["walls"])
            ratio = f"{results['tshark']['median'] / ike['median']:15.2f}" if name == "ikeflow" and "tshark" in results \
                else " " * 15
            print(f"{label[:28]:28} {name:8} {res['median']:9.2f} {res['pps']:11,.0f} {res['peak_rss']:13.1f} {ratio}"
                  f"   {walls}")
    print()
    for label, _, results in rows:
        ike = results["ikeflow"]
        verdicts = []
        if "tshark" in results:
            ratio = results["tshark"]["median"] / ike["median"]
            verdicts.append(f"ratio {ratio:.2f} (>= {TARGET_RATIO:g}: {'MET' if ratio >= TARGET_RATIO else 'NOT MET'})")
        verdicts.append(f"ikeflow tree RSS {ike['peak_rss']:.1f} MiB (<= {TARGET_RSS_MIB:g}: "
                        f"{'MET' if ike['peak_rss'] <= TARGET_RSS_MIB else 'NOT MET'})")
        print(f"{label}: " + "; ".join(verdicts))


def sizes_sweep(sizes: list[int], folder: Path, name: str, seed: int, runs: int, cmd: list[str]) -> None:
    rows = []
    for n in sizes:
        path, _ = ensure_capture(folder, name, n, seed)
        warm(path)
        walls, rss = [], []
        for _ in range(runs):
            wall, peak, code, err = run(cmd + ["read", "--json", str(path)])
            if not ok_exit("ikeflow", code, err):
                print(f"ikeflow failed (exit {code}):\n{err}", file=sys.stderr)
                sys.exit(1)
            walls.append(wall)
            rss.append(peak)
        rows.append((n, path.stat().st_size / 2**20, statistics.median(walls), max(rss)))
    print()
    print(f"ikeflow tree RSS by capture size ({name})")
    print(f"{'packets':>9} {'file MiB':>9} {'median s':>9} {'packets/s':>11} {'tree RSS MiB':>13}")
    for n, mib, wall, peak in rows:
        print(f"{n:9} {mib:9.0f} {wall:9.2f} {n / wall:11,.0f} {peak:13.1f}")
    if len(rows) > 1:
        (n0, _, _, r0), (n1, _, _, r1) = rows[0], rows[-1]
        print(f"RSS change from {n0} to {n1} packets: {r1 - r0:+.1f} MiB ({(r1 - r0) / r0 * 100:+.0f} %) "
              f"for {n1 / n0:.1f}x the packets; at most {TARGET_RSS_MIB:g} MiB at every size: "
              f"{'yes' if all(r[3] <= TARGET_RSS_MIB for r in rows) else 'NO'}")


def sanity(path: Path, manifest: dict | None, cmd: list[str]) -> None:
    """One untimed run whose JSON is checked against what the generator wrote."""
    print()
    if not manifest:
        print("sanity check skipped: no generator manifest for this file (give --file FILE with FILE.manifest.json)")
        return
    with tempfile.TemporaryFile() as out:
        _, _, code, err = run(cmd + ["read", "--json", str(path)], stdout=out)
        out.seek(0)
        try:
            doc = json.load(out)
        except ValueError as e:
            print(f"sanity check: ikeflow's output is not JSON ({e}); exit {code}\n{err}")
            return
    c = manifest["counts"]
    st = doc.get("stats", {})
    flows = {f["spi"]: f for f in doc.get("esp_flows", [])}
    planted = {f["spi"]: f for f in manifest["esp_flows"]}
    lost_doc = sum(f.get("lost", 0) for f in flows.values())
    dup_doc = sum(f.get("duplicates", 0) for f in flows.values())
    spi_lost_ok = all(flows.get(s, {}).get("lost") == f["lost"] for s, f in planted.items())
    spi_pk_ok = all(flows.get(s, {}).get("packets") == f["packets"] for s, f in planted.items())
    checks = [
        ("packets", doc.get("capture", {}).get("packets"), manifest["packets"]),
        ("ESP packets", st.get("esp"), c["esp"]),
        ("IKE messages", st.get("ike"), c["ike"]),
        ("NAT-T keepalives", st.get("keepalives"), c["keepalive"]),
        ("other (skipped)", st.get("skipped"), c["other"]),
        ("malformed", st.get("malformed"), 0),
        ("ESP flows (SPIs)", len(flows), len(planted)),
        ("IKE SAs", len(doc.get("ike_sas", [])), len(manifest["ike_sas"])),
        ("ESP lost (sum)", lost_doc, manifest["planted"]["lost"]),
        ("ESP duplicates (sum)", dup_doc, len(manifest["planted"]["duplicates"])),
        ("per-SPI packets equal", spi_pk_ok, True),
        ("per-SPI lost equal", spi_lost_ok, True),
    ]
    print(f"sanity check of ikeflow's JSON against the generator (exit code {code}; not asserted):")
    bad = 0
    for name, got, want in checks:
        same = got == want
        bad += not same
        print(f"  {'ok      ' if same else 'MISMATCH'} {name:24} ikeflow {got!s:>9}   generator {want!s:>9}")
    findings = doc.get("findings", [])
    codes: dict[str, int] = {}
    for f in findings:
        codes[f["code"]] = codes.get(f["code"], 0) + 1
    print(f"  findings: {', '.join(f'{k} x{v}' for k, v in sorted(codes.items())) or 'none'}")
    print(f"  sanity: {'all match' if not bad else f'{bad} mismatch(es)'}")


PROBE = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(10_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def cpu_probe(times: int = 3) -> float:
    """Seconds a fixed pure-Python loop (10M additions) takes in a child, the best of `times`: the machine's
    speed at that moment.  Taken before and after the runs, it says whether the machine held its speed, and
    it sets runs from different days side by side."""
    return min(float(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="size of the generated captures (default 1000000)")
    ap.add_argument("--captures", default="gateway,mixed,mixed-pcapng,mixed-qinq,mixed-sll2",
                    help=f"generated captures to run, of {', '.join(CAPTURES)} (default all)")
    ap.add_argument("--file", type=Path, action="append", default=[],
                    help="benchmark this capture instead of generated ones (repeatable; its FILE.manifest.json, "
                    "if there, enables the sanity check)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool (default 3; medians are reported)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sizes", nargs="?", const="1000000,3000000,5000000", metavar="N,N",
                    help="also show ikeflow's RSS on the mixed capture at these sizes (default 1M, 3M, 5M packets)")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/bench"), help="where generated captures go")
    ap.add_argument("--tmp", action="store_true", help="generate into a temporary folder, removed afterwards")
    ap.add_argument("--ikeflow", help="ikeflow command to run (default: the ikeflow console script)")
    ap.add_argument("--tshark", default=shutil.which("tshark"), help="tshark binary (default: from PATH)")
    ap.add_argument("--no-tshark", action="store_true", help="time ikeflow only")
    ap.add_argument("--no-check", action="store_true", help="skip the sanity check against the generator")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.captures.split(",") if n.strip()]
    unknown = [n for n in names if n not in CAPTURES]
    if unknown:
        ap.error(f"unknown capture {', '.join(unknown)}; known: {', '.join(CAPTURES)}")

    tmp = tempfile.TemporaryDirectory(prefix="ikeflow-bench-") if a.tmp else None
    folder = Path(tmp.name) if tmp else a.out_dir
    files: list[tuple[str, Path, dict | None]] = []
    for path in a.file:
        mpath = path.with_name(path.name + ".manifest.json")
        files.append((path.name, path, json.loads(mpath.read_text()) if mpath.is_file() else None))
    if not a.file:
        for name in names:
            path, manifest = ensure_capture(folder, name, a.packets, a.seed)
            files.append((name, path, manifest))

    ike = ikeflow_cmd(a.ikeflow)
    tshark = None if a.no_tshark else a.tshark
    if not a.no_tshark and not tshark:
        print("tshark not found (apt-get install tshark): timing ikeflow only")
    print()
    before = cpu_probe()
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"python {sys.version.split()[0]}; CPU probe {before:.3f} s (a Python loop of 10M additions, best of 3)")
    if tshark:
        version = subprocess.run([tshark, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        print(f"tshark: {version}")
    rows = []
    for label, path, manifest in files:
        cmds = {"ikeflow": ike + ["read", "--json", str(path)]}
        if tshark:
            cmds["tshark"] = [tshark, "-r", str(path)] + TSHARK_ARGS
        warm(path)
        if manifest:
            packets = manifest["packets"]
        else:  # a foreign file: count its frames once (untimed)
            out = subprocess.run(ike + ["read", "--json", str(path)], capture_output=True, text=True)
            packets = json.loads(out.stdout)["capture"]["packets"]
        print(f"\ncapture {label}: {path} ({path.stat().st_size / 2**20:.0f} MiB, {packets} packets)")
        for name, cmd in cmds.items():
            print(f"{name:8} $ {shlex.join(cmd)} > /dev/null")
        rows.append((label, packets, compare(packets, a.runs, cmds)))
    report(rows)

    if a.sizes:
        sizes = sorted({int(x) for x in a.sizes.split(",") if x.strip()})
        sizes_sweep(sizes, folder, "mixed", a.seed, a.runs, ike)
    if not a.no_check:
        for label, path, manifest in files:
            print(f"\n{label}:")
            sanity(path, manifest, ike)
    after = cpu_probe()
    change = after / before - 1
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; CPU probe {after:.3f} s "
          f"({change:+.0%} against the start" + ("" if abs(change) <= 0.1 else
                                                 ": the machine's speed changed, compare these figures with care") + ")")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
