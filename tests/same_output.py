"""Same output before and after a refactor: every `ikeflow` output on every capture we have, byte for byte.

The cases (each one: stdout, stderr and exit code):
  read-json / read-text   `ikeflow read --json FILE` and `read --no-color FILE` for every file under
                          pcaps/ (but *.log, *.md, *.json, *.py) and under SHARED/pcaps/public (but
                          MANIFEST.*), captures or not: error messages and exit codes count too;
  compare-json / -text    `ikeflow compare` of NAME.inside.pcap with NAME.outside.pcap in pcaps/lab, and of
                          consecutive pairs of the sorted public captures (at most 60 pairs);
  live                    the `live` command's body replaying each pcaps/lab/*.pcap through a fake socket
                          (see `_live_module`).  Only its deterministic output is kept: the "message" JSON
                          lines and the final "report" line (start, finding, esp and capture lines carry
                          wall-clock times or depend on timing), and stderr with the elapsed time and rate
                          of the closing "N packets captured" line masked.

Each subprocess runs the ikeflow of the tree this file is in (cwd and PYTHONPATH = that tree), with
COLUMNS=100, LC_ALL=C.UTF-8, TZ=UTC, no NO_COLOR/FORCE_COLOR/IKEFLOW_* and a 120 s timeout.

Before a refactor, from a worktree of the old commit (with this file copied in):
    git worktree add /tmp/ikeflow-base OLD && cp tests/same_output.py /tmp/ikeflow-base/tests/
    python3 /tmp/ikeflow-base/tests/same_output.py save /tmp/same-output-baseline
After it, in the new tree:
    python3 tests/same_output.py check /tmp/same-output-baseline
which prints every difference and exits 1 if there is one.  Options: --jobs N, --only SUBSTRING,
--shared PATH (default: the tree's ../shared, else /work/shared).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import hashlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path


def _live_module():
    """Where the `live` command's body is: (module, name of its run function).

    run(interface, extra, write, count, duration, as_json, ike_port, natt_port, no_color) must look up
    `open_socket(backend, interface, expr)` in that module's globals: the replay replaces it there.
    Before the refactor of issue 8 and after it, that is ikeflow.live (which now imports open_socket
    from ikeflow.sources.live, the capture backends).
    This is the only place that knows where live lives; update it when the code moves."""
    return importlib.import_module("ikeflow.live"), "run"


ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
NOT_CAPTURES = {".log", ".md", ".json", ".py", ".conf", ".secrets"}  # skipped under pcaps/ (the lab's logs, configs)
CAPTURES = (".pcap", ".pcapng", ".cap", ".gz")  # the public files that are paired for compare
MAX_PUBLIC_PAIRS = 60
ENV = {k: v for k, v in os.environ.items()
       if k not in ("NO_COLOR", "FORCE_COLOR") and not k.startswith("IKEFLOW_")}
ENV.update(COLUMNS="100", LC_ALL="C.UTF-8", TZ="UTC", PYTHONPATH=str(ROOT))


def cases(shared: Path) -> dict[str, list[str]]:
    """Case name -> arguments of `python3`.  Files under the tree are given relative to it, so that
    a worktree elsewhere sees the same names; public files by their absolute path."""
    public = shared / "pcaps" / "public"
    own = sorted(p for p in (ROOT / "pcaps").rglob("*") if p.is_file() and p.suffix not in NOT_CAPTURES)
    pub = sorted(p for p in public.rglob("*") if p.is_file() and not p.name.startswith("MANIFEST."))
    label = {**{p: str(p.relative_to(ROOT)) for p in own}, **{p: "public/" + str(p.relative_to(public)) for p in pub}}
    arg = {**{p: str(p.relative_to(ROOT)) for p in own}, **{p: str(p) for p in pub}}

    out: dict[str, list[str]] = {}
    for p in own + pub:
        out[f"read-json {label[p]}"] = ["-m", "ikeflow", "read", "--json", arg[p]]
        out[f"read-text {label[p]}"] = ["-m", "ikeflow", "read", "--no-color", arg[p]]
    lab = ROOT / "pcaps" / "lab"
    pairs = [(i, i.with_name(i.name.replace(".inside.pcap", ".outside.pcap"))) for i in sorted(lab.glob("*.inside.pcap"))]
    pairs = [(a, b) for a, b in pairs if b.is_file()]
    captures = [p for p in pub if p.name.endswith(CAPTURES)]
    pairs += list(zip(captures[0::2], captures[1::2]))[:MAX_PUBLIC_PAIRS]
    for a, b in pairs:
        out[f"compare-json {label[a]} {label[b]}"] = ["-m", "ikeflow", "compare", "--json", arg[a], arg[b]]
        out[f"compare-text {label[a]} {label[b]}"] = ["-m", "ikeflow", "compare", "--no-color", arg[a], arg[b]]
    for p in sorted(lab.glob("*.pcap")):
        if _frames(p)[1]:
            out[f"live {label[p]}"] = [str(Path(__file__).resolve()), "_live", arg[p]]
    return out


def _frames(path) -> tuple[int, list[tuple[int, int, bytes, int]]]:
    """Link type and frames (seconds, microseconds, data, wire length) of a classic pcap file."""
    from scapy.utils import RawPcapReader

    with RawPcapReader(str(path)) as reader:
        return reader.linktype, [(m.sec, m.usec, data, m.wirelen) for data, m in reader]


def run_case(argv: list[str]) -> tuple[bytes, bytes, bytes]:
    """stdout, stderr and exit code (as text) of `python3 ARGV` in the tree."""
    try:
        p = subprocess.run([sys.executable, *argv], cwd=ROOT, env=ENV, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return b"", b"", f"timeout after {TIMEOUT} s\n".encode()
    return p.stdout, p.stderr, f"{p.returncode}\n".encode()


def filename(name: str) -> str:
    """The case name made safe for a file name: short enough, unique."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", name)
    return safe if len(safe) <= 200 else safe[:180] + "-" + hashlib.sha1(name.encode()).hexdigest()[:16]


STREAMS = ("out", "err", "rc")


def compute(todo: dict[str, list[str]], jobs: int):
    """(name, (stdout, stderr, rc)) for every case, in order, running `jobs` at a time."""
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for n, (name, result) in enumerate(zip(todo, pool.map(run_case, todo.values())), 1):
            if n % 50 == 0 or n == len(todo):
                print(f"{n}/{len(todo)} cases", file=sys.stderr, flush=True)
            yield name, result


def _lines(data: bytes) -> list[str]:
    """Lines to show in a diff: JSON lines pretty-printed (a report is one long line), others as they are."""
    text = data.decode(errors="replace")
    try:
        return [s for line in text.splitlines() for s in json.dumps(json.loads(line), indent=1).splitlines()]
    except ValueError:
        return text.splitlines()


def show_diff(old: bytes, new: bytes, what: str, context: int = 20) -> None:
    diff = list(difflib.unified_diff(_lines(old), _lines(new), f"baseline {what}", f"now {what}", n=2, lineterm=""))
    for line in diff[:context]:
        print("    " + line[:200])
    if len(diff) > context:
        print(f"    ... ({len(diff) - context} more diff lines)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("save", "check"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--only", default="", metavar="SUBSTRING", help="only the cases whose name contains it")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = ap.parse_args()
    shared = (args.shared if args.shared.exists() else Path("/work/shared")).resolve()
    todo = {name: argv for name, argv in cases(shared).items() if args.only in name}
    files = {name: filename(name) for name in todo}
    assert len(set(files.values())) == len(files), "two cases with the same file name"

    if args.mode == "save":
        args.dir.mkdir(parents=True, exist_ok=True)
        for name, result in compute(todo, args.jobs):
            for stream, data in zip(STREAMS, result):
                (args.dir / f"{files[name]}.{stream}").write_bytes(data)
        print(f"{len(todo)} cases saved in {args.dir}")
        return 0

    same = differ = 0
    known = {p.stem for p in args.dir.glob("*.rc")}
    for name, result in compute(todo, args.jobs):
        if files[name] not in known:
            print(f"NEW {name}: not in the baseline")
            differ += 1
            continue
        saved = [(args.dir / f"{files[name]}.{s}").read_bytes() for s in STREAMS]
        bad = [(s, old, new) for s, old, new in zip(STREAMS, saved, result) if old != new]
        for stream, old, new in bad:
            print(f"DIFF {name} ({files[name]}.{stream}):")
            show_diff(old, new, stream)
        same += not bad
        differ += bool(bad)
    gone = [] if args.only else sorted(known - set(files.values()))
    for stem in gone:
        print(f"GONE {stem}: in the baseline, not computed now")
    print(f"{same} outputs identical, {differ} differ" + (f", {len(gone)} gone" if gone else ""))
    return 1 if differ or gone else 0


class _Replay:
    """Stands in for the capture socket of `live`: hands out the frames of a file, then nothing."""

    name = "replay"
    drops = 0

    def __init__(self, linktype: int, frames: list):
        self.linktype, self.frames, self.next = linktype, frames, 0
        self.null = open(os.devnull, "rb")  # always ready for select

    def read(self, limit: int) -> list:
        batch = self.frames[self.next : self.next + limit]
        self.next += len(batch)
        return batch

    def stats(self) -> None:
        pass

    def fileno(self) -> int:
        return self.null.fileno()

    def close(self) -> None:
        self.null.close()


def live(path: str) -> int:
    """`live` replaying `path` (count = its frames, JSON lines); prints its deterministic output."""
    module, run_name = _live_module()
    linktype, frames = _frames(path)
    module.open_socket = lambda backend, interface, expr: _Replay(linktype, frames)
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err = io.StringIO(), io.StringIO()
    try:
        code = getattr(module, run_name)(interface="replay", extra=None, write=None, count=len(frames), duration=None,
                                         as_json=True, ike_port=500, natt_port=4500, no_color=True)
    except Exception as e:  # the type and message only: a traceback names the files of the tree
        out.write(f"exception {type(e).__name__}: {e}\n")
        code = 3
    finally:
        sys.stdout, sys.stderr = real_out, real_err
    for line in out.getvalue().splitlines(keepends=True):
        if line.startswith(('{"event":"message",', '{"event":"report",', "exception ")):
            sys.stdout.write(line)
    # "N packets captured on replay in 0.1 s (840/s); ...": the time and the rate are the clock's.
    sys.stderr.write(re.sub(r"(packets captured on \S+) in \S+ s \(\d+/s\)", r"\1 in <time>", err.getvalue()))
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["_live"]:
        sys.exit(live(sys.argv[2]))
    sys.exit(main())
