"""Results table on the embedded digits default: every method and its baseline over several seeds.

    python ci/results.py --jobs 2                                   # every variant, seeds 0 1 2
    python ci/results.py --methods ascl ascl-moco --jobs 2          # re-run some; merged into results.json
    python ci/results.py --plot-only                                # no training: table + figure from the JSON

Each run is ``cd <method> && bash sh/train.sh <seed flag> S [baseline flags]``, i.e. the embedded default of
that method's README with only the seed (and, for a baseline, the loss) changed. Its ``initial <metric>: v`` and
``final <metric>: v`` lines are parsed, and its wall time and CPU time (user + system of the whole process tree,
from ``os.wait4``) are recorded. Every run gets a fresh ``$CL_RUNS_DIR`` under ``--runs-dir`` (a new temporary
folder by default): the scripts use fixed run names and auto-resume, so a shared folder would make a later seed
resume the previous seed's finished checkpoint instead of training.

Written to ``--out`` (default ``docs/results``): ``results.json`` (rewritten after every run and merged with the
existing file, so one method can be re-run alone), ``results.md`` (mean ± sample std over seeds) and
``results.png`` (one panel per metric, each method beside its baseline: every seed, mean ± std, the untrained
network; below, the per-seed paired differences method − baseline with their mean ± std; needs the optional
``plot`` extra, ``pip install -e '.[plot]'``, and is skipped with a message without it, an error with
``--plot-only``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # works from a plain checkout too, not only after `pip install -e .`
    sys.path.append(str(ROOT))

from ci.smoke import smoke_env  # noqa: E402
from common.checkpoint import code_version  # noqa: E402
from common.utils import UserError, run_main  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "results"
RESULTS_JSON, RESULTS_MD, RESULTS_PNG = "results.json", "results.md", "results.png"
# the number must be the whole rest of the line: MCL also prints "initial evaluation: net0 ... ensemble ..."
METRIC_LINE = re.compile(r"^(initial|final) ([^:]+): ([-+]?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Variant:
    name: str              # what --methods takes
    method: str            # folder whose sh/train.sh is run
    label: str             # row / bar label
    seed_flag: str
    flags: tuple = ()      # appended after the seed: what turns the method's default into the baseline
    baseline: bool = False


# Every baseline is the method's own train.sh with the flags below and nothing else changed (network, data,
# augmentation, schedule, evaluation).
VARIANTS = (
    Variant("cacr", "cacr", "CACR", "--seed"),
    Variant("cacr-simclr", "cacr", "SimCLR (CACR setup)", "--seed", ("--loss", "simclr"), True),
    Variant("ascl", "ascl", "ASCL", "--seed"),
    Variant("ascl-moco", "ascl", "MoCo (ASCL setup)", "--seed", ("--type", "normal"), True),
    Variant("paco", "paco", "PaCo", "--seed"),
    Variant("paco-ce", "paco", "CE (PaCo setup)", "--seed", ("--loss", "ce"), True),
    # PaCo's own loss with the contrastive terms off (alpha = gamma = 0) is cross-entropy on the logits plus the log
    # class prior (Balanced Softmax): separates what the prior buys on long-tailed data from what contrast buys
    Variant("paco-balanced-ce", "paco", "Balanced CE (PaCo setup)", "--seed", ("--alpha", "0", "--gamma", "0"), True),
    Variant("mcl", "mcl", "MCL(x2)", "--manual_seed"),
    Variant("mcl-ce", "mcl", "CE x2 (MCL setup)", "--manual_seed",
            ("--alpha", "0", "--gamma", "0", "--beta", "0", "--lam", "0"), True),
    Variant("attentionce", "attentionce", "AttentioNCE", "--seed"),
    Variant("attentionce-simclr", "attentionce", "SimCLR (AttentioNCE setup)", "--seed", ("--loss", "simclr"), True),
)
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}
# process-group ids of the runs in progress: their own sessions do not receive the terminal's Ctrl-C
_RUNNING: set = set()


# ------------------------------------------------------------------------------------------------- parsing

def parse_metrics(stdout: str) -> dict:
    """``{metric: {"initial": v, "final": v}}`` from a run's output (the last value wins if a line repeats)."""
    metrics: dict = {}
    for line in stdout.splitlines():
        match = METRIC_LINE.match(line.strip())
        if match:
            stage, metric, value = match.groups()
            metrics.setdefault(metric.strip(), {})[stage] = float(value)
    return metrics


def command_line(variant: Variant, seed: int) -> list:
    return ["bash", "sh/train.sh", variant.seed_flag, str(seed), *variant.flags]


# ------------------------------------------------------------------------------------------------- running

def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended on its own meanwhile
        pass


def run_one(variant: Variant, seed: int, runs_root: Path, threads: int, timeout: float,
            method_root: Path = ROOT) -> dict:
    """Run one (variant, seed) to completion and return its record (``error`` is None on success)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{variant.name}_seed{seed}_", dir=runs_root))
    cmd = command_line(variant, seed)
    env = smoke_env(run_dir, {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with open(run_dir / "stdout.log", "w") as out, open(run_dir / "stderr.log", "w") as err:
        # own session: a timeout kills the whole tree (bash, python, data-loader workers)
        proc = subprocess.Popen(cmd, cwd=method_root / variant.method, env=env, stdout=out, stderr=err,
                                start_new_session=True)
        _RUNNING.add(proc.pid)
        timed_out = threading.Event()
        timer = threading.Timer(timeout, lambda: (timed_out.set(), _kill_group(proc.pid)))
        timer.start()
        try:
            # wait4, not Popen.wait: it returns this child's own resource usage, which includes the processes it
            # waited for; RUSAGE_CHILDREN deltas would mix runs that overlap under --jobs > 1
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            _RUNNING.discard(proc.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    stdout = (run_dir / "stdout.log").read_text(errors="replace")
    metrics = parse_metrics(stdout)
    error = None
    if proc.returncode != 0:
        tail = (run_dir / "stderr.log").read_text(errors="replace").strip().splitlines()[-5:]
        error = f"exit code {proc.returncode}" + (" (killed after --timeout)" if timed_out.is_set() else "") + \
            (": " + " | ".join(tail) if tail else "")
    elif not any("final" in stages for stages in metrics.values()):
        error = "no 'final <metric>: <value>' line in the output"
    return {
        "variant": variant.name, "method": variant.method, "label": variant.label, "seed": seed,
        "baseline": variant.baseline, "flags": list(variant.flags),
        "command": f"cd {variant.method} && {' '.join(cmd)}",
        "metrics": metrics, "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "threads": threads,
        "load_average_at_start": round(load_before, 2), "returncode": proc.returncode, "error": error,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run_dir": str(run_dir),
        "code_version": code_version(),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }


def run_key(variant: str, seed: int) -> str:
    return f"{variant}/seed{seed}"


def load_results(path: Path) -> dict:
    if not path.is_file():
        return {"runs": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); move it away to start a new results file") from e
    if not isinstance(data.get("runs"), dict):
        raise UserError(f"{path} has no 'runs' object; is it a ci/results.py file? Move it away to start anew")
    return data


def merge_run(path: Path, record: dict, lock: threading.Lock) -> dict:
    """Add one record to the JSON on disk (re-read first, so other variants' runs are kept) and rewrite it."""
    with lock:
        data = load_results(path)
        data["runs"][run_key(record["variant"], record["seed"])] = record
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return data


# --------------------------------------------------------------------------------------------- aggregation

def _mean_std(values: list):
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _variant_order(name: str) -> int:
    names = [v.name for v in VARIANTS]
    return names.index(name) if name in names else len(names)


def aggregate(runs: dict) -> list:
    """One row per (variant, metric) over the successful runs: seeds, initial / final mean and sample std,
    mean wall and CPU time. Failed runs are counted in ``failed`` and left out of the numbers."""
    groups: dict = {}
    failed: dict = {}
    for record in runs.values():
        if record.get("error"):
            failed[record["variant"]] = failed.get(record["variant"], 0) + 1
            continue
        for metric, stages in record["metrics"].items():
            if "final" in stages:
                groups.setdefault((record["variant"], metric), []).append(record)
    rows = []
    for (variant, metric), records in sorted(groups.items(), key=lambda kv: (_variant_order(kv[0][0]), *kv[0])):
        records = sorted(records, key=lambda r: r["seed"])
        initial = [r["metrics"][metric]["initial"] for r in records if "initial" in r["metrics"][metric]]
        final = [r["metrics"][metric]["final"] for r in records]
        first = records[0]
        rows.append({
            "variant": variant, "method": first["method"], "label": first["label"], "baseline": first["baseline"],
            "metric": metric, "seeds": [r["seed"] for r in records], "flags": first["flags"],
            "initial_mean": _mean_std(initial)[0], "initial_std": _mean_std(initial)[1],
            "final_mean": _mean_std(final)[0], "final_std": _mean_std(final)[1], "final_values": final,
            "wall_s_mean": statistics.fmean(r["wall_s"] for r in records),
            "cpu_s_mean": statistics.fmean(r["cpu_s"] for r in records),
            "failed": failed.get(variant, 0),
        })
    return rows


def _pm(mean, std) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def markdown_table(rows: list) -> str:
    lines = ["| method | run | metric | seeds | initial | final (mean ± std) | wall time | CPU time |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        run = f"baseline: `{' '.join(row['flags'])}`" if row["baseline"] else "default"
        final = _pm(row["final_mean"], row["final_std"])
        seeds = ",".join(map(str, row["seeds"])) + (f" ({row['failed']} failed)" if row["failed"] else "")
        lines.append(f"| {row['label']} | {run} | {row['metric']} | {seeds} | "
                     f"{_pm(row['initial_mean'], row['initial_std'])} | "
                     f"{f'**{final}**' if not row['baseline'] else final} | "
                     f"{_duration(row['wall_s_mean'])} | {_duration(row['cpu_s_mean'])} |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, rows: list, runs: dict) -> None:
    threads = sorted({r["threads"] for r in runs.values()})
    loads = [r["load_average_at_start"] for r in runs.values()]
    header = (
        "# Results on the embedded digits default (sanity check)\n\n"
        "Written by `python ci/results.py` from `results.json`. Each row: `cd <method> && bash sh/train.sh "
        "<seed flag> S [baseline flags]` for the listed seeds S; initial = the untrained network, final = after "
        "training; mean ± sample standard deviation over the seeds; wall and CPU time (user + system of the "
        "whole process tree) are means per run. "
        f"{os.cpu_count()}-core machine, {', '.join(map(str, threads))} thread(s) per run, load average at the start "
        f"of the runs {min(loads, default=0):.1f}–{max(loads, default=0):.1f}: a load above the core count means "
        "other jobs shared the machine, which inflates the wall time but not the CPU time.\n\n")
    diffs = paired_differences(rows)
    differences = ("\n## Method − baseline, paired by seed\n\n"
                   "A seed gives the method and its baseline the same untrained network (the same initial scores), so "
                   "the differences are paired by seed; mean ± sample standard deviation of those differences. "
                   "A mean within one standard deviation of zero is within the seed-to-seed noise.\n\n"
                   + differences_table(diffs)) if diffs else ""
    path.write_text(header + markdown_table(rows) + differences)


METRIC_PANELS = (("knn top-1", "k-NN top-1"), ("linear top-1", "linear probe top-1"),
                 ("top-1", "supervised top-1"))
METHOD_COLOUR, BASELINE_COLOURS, UNTRAINED_COLOUR = "#1f77b4", ("#7f7f7f", "#ff7f0e"), "#d62728"
# difference view: a mean beyond one std of the paired differences is a gain (green) or a loss (purple)
GAIN_COLOUR, LOSS_COLOUR, NOISE_COLOUR = "#2ca02c", "#9467bd", "#7f7f7f"


def paired_differences(rows: list) -> list:
    """Method − baseline for every baseline row, paired by seed (a seed gives both runs the same untrained
    network, see their equal initial scores): one entry per (method folder, metric, baseline) with the common
    seeds, the per-seed differences, their mean and sample std."""
    methods = {(row["method"], row["metric"]): row for row in rows if not row["baseline"]}
    out = []
    for base in rows:
        method = methods.get((base["method"], base["metric"]))
        if not base["baseline"] or method is None:
            continue
        ours = dict(zip(method["seeds"], method["final_values"]))
        theirs = dict(zip(base["seeds"], base["final_values"]))
        seeds = sorted(set(ours) & set(theirs))
        if not seeds:
            continue
        diffs = [ours[s] - theirs[s] for s in seeds]
        mean, std = _mean_std(diffs)
        out.append({"method": method["label"], "baseline": base["label"], "metric": base["metric"],
                    "seeds": seeds, "differences": diffs, "mean": mean, "std": std})
    return out


def differences_table(diffs: list) -> str:
    lines = ["| method | − baseline | metric | seeds | per-seed differences | mean ± std |",
             "|---|---|---|---|---|---|"]
    for d in diffs:
        per_seed = ", ".join(f"{v:+.2f}" for v in d["differences"])
        mean = f"{d['mean']:+.2f}" + (f" ± {d['std']:.2f}" if d["std"] is not None else "")
        lines.append(f"| {d['method']} | {d['baseline']} | {d['metric']} | {','.join(map(str, d['seeds']))} | "
                     f"{per_seed} | {mean} |")
    return "\n".join(lines) + "\n"


def _short(label: str) -> str:
    return label.replace(" (", "\n(")  # "SimCLR (CACR setup)" on two lines under its tick


def write_plot(path: Path, rows: list) -> bool:
    """Two views of the final metric; False if matplotlib is missing.

    Top: one panel per metric (k-NN, linear probe, supervised top-1), each method beside its own baseline(s):
    every seed as a dot, mean ± sample std as a diamond with an error bar, the untrained network (initial) as a
    red dash. Bottom: method − baseline per seed (paired by seed) with their mean ± sample std, and zero marked,
    so a gain within the seed-to-seed spread is seen as one.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"{path.name} skipped: matplotlib is not installed (pip install -e '.[plot]')")
        return False
    known = [m for m, _ in METRIC_PANELS]
    panels = [(m, title) for m, title in METRIC_PANELS if any(r["metric"] == m for r in rows)]
    panels += [(m, m) for m in dict.fromkeys(r["metric"] for r in rows) if m not in known]
    panel_rows = {m: [r for r in rows if r["metric"] == m] for m, _ in panels}
    diffs = paired_differences(rows)

    widths = [max(2, len(panel_rows[m])) + 0.5 * len({r["method"] for r in panel_rows[m]}) for m, _ in panels]
    fig = plt.figure(figsize=(max(9.0, 0.75 * sum(widths) + 2), 8.0 + 0.25 * max(0, len(diffs) - 6)))
    grid = fig.add_gridspec(2, len(panels), width_ratios=widths, height_ratios=[3, 2.2 + 0.15 * len(diffs)],
                            hspace=0.55, wspace=0.25)
    for col, (metric, title) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        x, ticks, labels, groups = 0.0, [], [], {}
        for row in panel_rows[metric]:
            groups.setdefault(row["method"], []).append(row)
        for members in groups.values():
            members = sorted(members, key=lambda r: r["baseline"])  # the method first, then its baselines
            start = x
            for k, row in enumerate(members):
                colour = BASELINE_COLOURS[(k - 1) % len(BASELINE_COLOURS)] if row["baseline"] else METHOD_COLOUR
                values = row["final_values"]
                jitter = [x + 0.08 * (i - (len(values) - 1) / 2) for i in range(len(values))]
                ax.scatter(jitter, values, s=12, color=colour, alpha=0.55, zorder=3, linewidths=0)
                ax.errorbar([x], [row["final_mean"]], yerr=[row["final_std"] or 0.0], fmt="D", color=colour,
                            markersize=6, capsize=5, elinewidth=1.5, zorder=4)
                ax.annotate(f"{row['final_mean']:.1f}", (x + 0.16, row["final_mean"]), fontsize=7, va="center")
                ticks.append(x)
                labels.append(_short(row["label"]))
                x += 1.0
            initial = [r["initial_mean"] for r in members if r["initial_mean"] is not None]
            if initial:  # the same untrained network for the method and its baselines (same seeds)
                ax.hlines(statistics.fmean(initial), start - 0.35, x - 0.65, colors=UNTRAINED_COLOUR,
                          linestyles="--", linewidth=1.5, zorder=2)
            x += 0.5
        ax.set_xticks(ticks, labels, fontsize=7, rotation=30, ha="right")
        ax.set_xlim(-0.6, x - 0.9)
        ax.margins(y=0.08)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        if col == 0:
            ax.set_ylabel("test accuracy on digits (%)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    handles = [
        plt.Line2D([], [], marker="D", color=METHOD_COLOUR, linestyle="", label="method: mean ± std over seeds"),
        plt.Line2D([], [], marker="D", color=BASELINE_COLOURS[0], linestyle="",
                   label="its baseline (a second one in orange)"),
        plt.Line2D([], [], marker="o", color="#555555", alpha=0.55, linestyle="", markersize=4, label="one seed"),
        plt.Line2D([], [], color=UNTRAINED_COLOUR, linestyle="--", label="untrained network (initial)"),
    ]
    fig.suptitle("digits sanity check: final test accuracy per method and its baseline", fontsize=10, y=0.995)
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.965))

    ax = fig.add_subplot(grid[1, :])
    if diffs:
        ys = list(range(len(diffs)))[::-1]
        for y, d in zip(ys, diffs):
            spread = d["std"] or 0.0
            within = abs(d["mean"]) <= spread
            colour = NOISE_COLOUR if within else GAIN_COLOUR if d["mean"] > 0 else LOSS_COLOUR
            ax.scatter(d["differences"], [y] * len(d["differences"]), s=18, color=colour, alpha=0.6, zorder=3,
                       linewidths=0)
            ax.errorbar([d["mean"]], [y], xerr=[spread], fmt="D", color=colour, markersize=6, capsize=5, zorder=4)
            ax.annotate(f"{d['mean']:+.2f} ± {spread:.2f}" + ("  (within noise)" if within else ""),
                        (max(d["differences"] + [d["mean"] + spread]), y), xytext=(8, 0),
                        textcoords="offset points", fontsize=7, va="center")
        ax.set_yticks(ys, [f"{d['method']} − {d['baseline']}  [{d['metric']}]" for d in diffs], fontsize=7)
        ax.axvline(0.0, color="black", linewidth=1, zorder=1)
        lo = min(min(d["differences"] + [d["mean"] - (d["std"] or 0)]) for d in diffs)
        hi = max(max(d["differences"] + [d["mean"] + (d["std"] or 0)]) for d in diffs)
        pad = 0.1 * (hi - lo or 1.0)
        ax.set_xlim(min(lo, 0.0) - pad, max(hi, 0.0) + 2.5 * pad)  # room on the right for the mean ± std labels
        ax.margins(y=0.12)
    ax.set_xlabel("method − baseline, final test accuracy (points), paired by seed: dots = the seeds, "
                  "diamond = mean ± sample std of the paired differences", fontsize=8)
    ax.set_title("method − baseline, paired by seed (grey: |mean| ≤ one std, within the seed-to-seed noise; "
                 "green / purple: a gain / loss beyond it)", fontsize=9)
    ax.grid(axis="x", alpha=0.3, zorder=0)
    ax.tick_params(axis="x", labelsize=7)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def write_report(out: Path, data: dict, require_plot: bool = False) -> list:
    """results.md and results.png from the runs in ``data``; with ``require_plot`` a missing matplotlib is a
    UserError (after the table is written) instead of a message."""
    rows = aggregate(data["runs"])
    write_markdown(out / RESULTS_MD, rows, data["runs"])
    plotted = bool(rows) and write_plot(out / RESULTS_PNG, rows)
    if plotted:
        print(f"wrote {out / RESULTS_PNG}")
    print(f"wrote {out / RESULTS_MD}\n")
    print(markdown_table(rows))
    if require_plot and not plotted:
        raise UserError(f"{out / RESULTS_PNG} not drawn: matplotlib is not installed; pip install -e '.[plot]'")
    return rows


# ------------------------------------------------------------------------------------------------------ main

def parse_args(argv=None):
    names = ", ".join(f"{v.name}" + (f" ({v.method} sh/train.sh {' '.join(v.flags)})" if v.flags else "")
                      for v in VARIANTS)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=f"variants: {names}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["all"], metavar="VARIANT",
                   help="variants to run (see below), or 'all'")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP_NUM_THREADS of each run (default: CPU cores // --jobs, at least 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of results.json / .md / .png")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="where each run's CL_RUNS_DIR and logs go (default: a new temporary folder)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is killed")
    p.add_argument("--report-only", "--plot-only", dest="report_only", action="store_true",
                   help="no training: only rebuild results.md (table) and results.png (figure) from results.json")
    args = p.parse_args(argv)
    if args.methods == ["all"]:
        args.methods = [v.name for v in VARIANTS]
    unknown = [m for m in args.methods if m not in VARIANT_BY_NAME]
    if unknown:
        raise UserError(f"unknown variant(s) {', '.join(unknown)} in --methods; choose from "
                        f"{', '.join(VARIANT_BY_NAME)} or 'all'")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / RESULTS_JSON
    data = load_results(json_path)  # fails early on a corrupt file, before hours of training
    if args.report_only:
        if not data["runs"]:
            raise UserError(f"{json_path} has no runs to report; run ci/results.py without --plot-only first, "
                            f"or pass --out to the folder holding results.json")
        write_report(args.out, data, require_plot=True)
        return 0
    runs_root = args.runs_dir or Path(tempfile.mkdtemp(prefix="cl_results_"))
    runs_root.mkdir(parents=True, exist_ok=True)
    jobs = [(VARIANT_BY_NAME[name], seed) for name in args.methods for seed in args.seeds]
    print(f"{len(jobs)} runs, {args.jobs} at a time, OMP_NUM_THREADS={args.threads}; run folders and logs "
          f"under {runs_root}", flush=True)
    lock = threading.Lock()
    done = [0]

    def work(job):
        variant, seed = job
        record = run_one(variant, seed, runs_root, args.threads, args.timeout)
        merge_run(json_path, record, lock)
        with lock:
            done[0] += 1
            summary = "; ".join(f"{m} {s.get('initial', math.nan):.2f} -> {s['final']:.2f}"
                                for m, s in record["metrics"].items() if "final" in s)
            print(f"[{done[0]}/{len(jobs)}] {variant.name} seed {seed}: "
                  f"{record['error'] and 'FAILED: ' + record['error'] or summary}, wall {record['wall_s']:.0f} s, "
                  f"CPU {record['cpu_s']:.0f} s (log {record['run_dir']}/stdout.log)", flush=True)
        return record

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(work, job) for job in jobs]
        try:
            records = [future.result() for future in futures]
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            for pid in list(_RUNNING):
                _kill_group(pid)
            raise
    write_report(args.out, load_results(json_path))
    failures = [r for r in records if r["error"]]
    if failures:
        print(f"{len(failures)} of {len(records)} runs failed: "
              + ", ".join(run_key(r["variant"], r["seed"]) for r in failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_main(lambda: sys.exit(main()))
