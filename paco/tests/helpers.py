"""Shared by the PaCo tests: run an entry point / sh script as a subprocess on tiny generated data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACO_DIR = Path(__file__).resolve().parents[1]

# tiny sizes every smoke run appends (they override the scripts' flags, which come first)
TINY = ["--image-size", "32", "-b", "4", "--moco-k", "16", "--moco-dim", "16", "--epochs", "1", "-j", "0",
        "--seed", "0", "--no-multiprocessing-distributed"]


def run(cmd, tmp_path, env=None, timeout=240, check=True):
    full_env = dict(os.environ, CL_RUNS_DIR=str(tmp_path), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    if cmd[0].endswith(".py"):
        cmd = [sys.executable, *cmd]
    proc = subprocess.run(cmd, cwd=PACO_DIR, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def run_dir(tmp_path, dataset, mark, full=False):
    d = Path(tmp_path) / "runs" / "paco" / dataset / mark
    return d / "checkpoint" if full else d
