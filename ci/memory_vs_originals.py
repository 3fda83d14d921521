#!/usr/bin/env python
"""Peak memory of each loss case of the shared side-by-side benchmark, the authors' code next to this project's.

    python ci/memory_vs_originals.py [--only SUBSTRING[,SUBSTRING]] [--calls 3] [--bench PATH] [--json FILE]

Run from the project root, like the benchmark itself (``../shared/bench/compare_originals.py``, which builds every
case: the same inputs and module state for both sides). This script only measures: for each P1 case and each side
it starts a fresh Python process that loads that benchmark, builds the case, warms the runtime, resets the Linux
peak RSS (``VmHWM``) to the current RSS (``/proc/self/clear_refs``) and runs ``--calls`` forward + backward calls of
one side. ``peak MiB`` = peak RSS growth over those calls: the intermediates, autograd buffers and gradients a call
needs above its inputs and state (queues, memory banks, weights), which both sides hold alike. A fresh process per
side, so that no heap grown by the other side hides an allocation. CPU, one thread.

The originals' code is loaded by the benchmark harness, which lives outside this repository; nothing of it is
imported here (``--bench`` points at the harness).
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_BENCH = Path("..") / "shared" / "bench" / "compare_originals.py"


def _load_harness(path: Path):
    spec = importlib.util.spec_from_file_location("compare_originals_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(bench: Path, case: str, side: str, calls: int) -> dict:
    """One side of one case in this (fresh) process: peak RSS growth over ``calls`` calls, in bytes."""
    harness = _load_harness(bench)
    from ci.bench import _warm_runtime, peak_memory_growth
    import torch

    _warm_runtime()
    builders = {name: build for name, _, _, build, _ in harness.P1_CASES}
    original, project = builders[case]()
    fn = original if side == "original" else project
    del original, project
    gc.collect()
    peak, how = peak_memory_growth(fn, torch.device("cpu"), calls)
    return {"case": case, "side": side, "peak_bytes": peak, "how": how}


def _fresh(bench: Path, case: str, side: str, calls: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--bench", str(bench), "--child", case, side,
           "--calls", str(calls)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path.cwd())] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{case} {side}: exited {proc.returncode}: {tail}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH, help="the shared side-by-side benchmark")
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--calls", type=int, default=3, help="forward + backward calls per side (the first included)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.bench.is_file():
        print(f"error: no benchmark at {args.bench}; run from the project root or pass --bench PATH", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps(_child(args.bench, args.child[0], args.child[1], args.calls)), flush=True)
        return 0
    names = [name for name, *_ in _load_harness(args.bench).P1_CASES]
    wanted = [s for s in args.only.split(",") if s]
    names = [n for n in names if not wanted or any(s in n for s in wanted)]
    if not names:
        print(f"error: no case matches --only {args.only!r}", file=sys.stderr)
        return 2
    rows = []
    print(f"{'case':24s} {'original MiB':>13s} {'project MiB':>12s}", flush=True)
    for name in names:
        original = _fresh(args.bench, name, "original", args.calls)
        project = _fresh(args.bench, name, "project", args.calls)
        rows.append({"case": name, "original_mib": original["peak_bytes"] / 2**20,
                     "project_mib": project["peak_bytes"] / 2**20, "how": project["how"]})
        print(f"{name:24s} {rows[-1]['original_mib']:13.1f} {rows[-1]['project_mib']:12.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
