"""Shared by the PaCo tests: run an entry point / sh script as a subprocess (through ``ci.smoke``) on tiny
generated data, with runs written under the test's temporary directory."""
from __future__ import annotations

from pathlib import Path

from ci.smoke import run_python, run_script

PACO_DIR = Path(__file__).resolve().parents[1]

# tiny sizes every smoke run appends (they override the scripts' flags, which come first)
TINY = ["--image-size", "32", "-b", "4", "--moco-k", "16", "--moco-dim", "16", "--epochs", "1", "-j", "0",
        "--seed", "0", "--no-multiprocessing-distributed"]


def run(cmd, tmp_path, env=None, timeout=240, expect_failure=False):
    """``cmd`` = ``['bash', 'sh/x.sh', *flags]`` or ``['LT/paco_cifar.py', *flags]``, run in ``paco/``."""
    env = {"PYTHONUNBUFFERED": "1", **(env or {})}
    if cmd[0] == "bash":
        return run_script("paco", cmd[1], *cmd[2:], env=env, runs_dir=tmp_path, timeout=timeout,
                          expect_failure=expect_failure)
    return run_python("paco", cmd[0], *cmd[1:], env=env, runs_dir=tmp_path, timeout=timeout,
                      expect_failure=expect_failure)


def run_dir(tmp_path, mark, full=False):
    """The run folder of ``--mark mark`` (CL_RUNS_DIR/paco/<mark>; Full-ImageNet's /checkpoint below it, as the
    original's run dir)."""
    d = Path(tmp_path) / "paco" / mark
    return d / "checkpoint" if full else d
