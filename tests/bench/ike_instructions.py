#!/usr/bin/env python3
"""Instructions per IKE message of the model and of the JSON `messages` array, counted by valgrind's
callgrind: a figure that does not move with the machine's load, unlike a time.

    python tests/bench/ike_instructions.py [--capture mixed] [--packets 1000000] [--tree DIR]

The frames of a benchmark capture (bench_read.ensure_capture) that hold an IKE message are saved once; then three runs of this script under callgrind replay them:
without the model (start-up and loading), through the model (`Analyzer.records`), and through the model
with the JSON message spool as a listener.  The differences, divided by the number of IKE messages, are
the figures.  `--tree` counts another checkout (its `ikeflow` first on the path), so that two commits
compare on the same records.  valgrind must be installed (Debian's `valgrind`); about two minutes.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("load", "model", "json")


def replay(records_file: str, mode: str) -> None:
    """Run under callgrind: load the records, then (mode) nothing more, the model, or the model and the JSON."""
    from ikeflow.model.analysis import Analyzer
    from ikeflow.render.read_json import MessageSpool

    with open(records_file, "rb") as f:
        batches = pickle.load(f)
    if mode == "load":
        return
    model = Analyzer(500, 4500)
    spool = MessageSpool(1) if mode == "json" else None
    if spool is not None:
        model.listeners.append(spool.add)
    for batch in batches:
        model.records(batch)
    if spool is not None:
        with open(os.devnull, "w") as out:
            spool.copy_to(out)


def save_records(capture: Path, out: str) -> int:
    """The records of `capture` that hold an IKE message (the reader's own ESP counting leaves the rest
    out) pickled into `out`, in batches as the reader gave them; how many."""
    from ikeflow.decode import packet as pk
    from ikeflow.model.analysis import Analyzer
    from ikeflow.sources.capture import read_files

    batches = [[r for r in batch if pk.decode(r.linktype, r.data).kind == pk.IKE]
               for batch in read_files([str(capture)], Analyzer(500, 4500).esp, [])]
    with open(out, "wb") as f:
        pickle.dump(batches, f, pickle.HIGHEST_PROTOCOL)
    return sum(map(len, batches))


def instructions(tree: Path, records_file: str, mode: str) -> int:
    """Instructions callgrind counted for one replay in `mode`, the ikeflow of `tree` first on the path."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                           str(Path(__file__).resolve()), "--replay", records_file, mode],
                          env=env, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capture", default="mixed", help="benchmark capture (bench_read.py's names; default mixed)")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/bench"), help="where the capture is generated")
    ap.add_argument("--tree", type=Path, default=HERE.parent.parent, help="the checkout to count (default this one)")
    ap.add_argument("--replay", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.replay:
        replay(*a.replay)
        return 0
    sys.path.insert(0, str(HERE))
    import bench_read

    capture, _ = bench_read.ensure_capture(a.out_dir, a.capture, a.packets, a.seed)
    with tempfile.NamedTemporaryFile(suffix=".pickle") as tmp:
        ike = save_records(capture, tmp.name)
        counts = {mode: instructions(a.tree.resolve(), tmp.name, mode) for mode in MODES}
    model, json = counts["model"] - counts["load"], counts["json"] - counts["model"]
    print(f"{capture.name}: {ike} IKE messages; tree {a.tree.resolve()}")
    print(f"instructions per IKE message: model {model // ike:,}  JSON messages {json // ike:,}  "
          f"both {(model + json) // ike:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
