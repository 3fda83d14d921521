"""Runs killed by SIGKILL resume from their last complete checkpoint and end bit-identical to an uninterrupted run.

For each method's main training entry point (flags based on its ``tests/test_resume.py``, one CPU thread,
3 epochs of 2-3 steps) the test runs

* the uninterrupted reference, and
* a chain of the same command: (1) killed inside the 2nd checkpoint write (``CL_FAULT_INJECT=kill_in_save=2``,
  i.e. while epoch 2's checkpoint is half written), (2) rerun: auto-resumes from epoch 1 (the complete
  checkpoint; the ``.tmp`` left by the kill is ignored) and is killed mid-epoch 3 (``kill_after_steps``: one
  step after the end of epoch 2), (3) rerun: auto-resumes from epoch 2 and finishes.

After each kill (return code -9) every checkpoint under its real name loads and holds the last completed
epoch; the final parameters, buffers (queues, BN statistics) and optimizer state equal the reference's
exactly (``torch.equal``: same CPU kernels, same data order and RNG states, nothing left to tolerance).
The hooks themselves are ``common.faults``.

The data are tiny CIFAR-100 files in the real format at 16 px rather than the embedded digits: digits is fixed
at 32 px in PaCo (which has no per-epoch step limit) and loading it imports scikit-learn, about a second in
each of the 20 training processes of this file.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ci import warm
from ci.smoke import ROOT, smoke_env
from common.checkpoint import load_checkpoint
from common.faults import FAULT_ENV, parse_fault_spec
from common.utils import UserError
from ci.entry_points import EPOCHS, METHODS, Method

KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def cifar100_root(tmp_path_factory) -> str:
    from common.data.fake import write_cifar100
    return write_cifar100(tmp_path_factory.mktemp("cifar100"), n_train=200, n_test=64)


def _run(method: Method, runs: Path, data: str, name: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = smoke_env(runs, {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    flags = [flag.format(data=data) for flag in method.flags]
    cmd = [sys.executable, method.entry, *flags, "--epochs", str(EPOCHS), method.name_flag, name]
    proc = warm.run(cmd, ROOT / method.folder, env, 300)
    expected = KILLED if fault else 0
    assert proc.returncode == expected, (f"{method.folder} {fault or 'uninterrupted'}: exit {proc.returncode}, "
                                         f"expected {expected}\n" + "\n".join((proc.stdout + proc.stderr)
                                                                              .splitlines()[-30:]))
    return proc


def _assert_checkpoints_complete(method: Method, run_dir: Path, completed: int, leftover_tmp: bool) -> None:
    """Every checkpoint under its real name loads; the resume checkpoint holds ``completed`` epochs."""
    names = [p for p in run_dir.iterdir() if not p.name.startswith(".") and ".pth" in p.name]
    assert names, f"no checkpoint in {run_dir}"
    for path in names:
        load_checkpoint(str(path))        # a UserError here = a half-written file under the real name
    state = load_checkpoint(str(run_dir / method.checkpoint))
    assert method.completed_epochs(state) == completed
    tmps = [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert bool(tmps) == leftover_tmp, tmps


def _assert_same_tensors(a, b, where: str) -> None:
    if torch.is_tensor(a):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("method_name", list(METHODS))
def test_killed_runs_resume_to_identical_parameters(method_name, tmp_path, cifar100_root):
    method = METHODS[method_name]

    def run(name, fault=None):
        return _run(method, tmp_path, cifar100_root, name, fault)

    run("straight")
    chain = method.run_dir(tmp_path, "killed")
    run("killed", fault="kill_in_save=2")                 # dies while writing epoch 2's checkpoint
    _assert_checkpoints_complete(method, chain, completed=1, leftover_tmp=True)

    proc = run("killed", fault=f"kill_after_steps={method.steps_per_epoch + 1}")   # dies 1 step into epoch 3
    assert re.search(method.resumed_line.format(epoch=1), proc.stdout), proc.stdout[-2000:]
    # the rerun removed the first kill's temp file when it took the folder (common.engine), this kill leaves none
    _assert_checkpoints_complete(method, chain, completed=2, leftover_tmp=False)

    proc = run("killed")
    assert re.search(method.resumed_line.format(epoch=2), proc.stdout), proc.stdout[-2000:]

    straight = load_checkpoint(str(method.run_dir(tmp_path, "straight") / method.checkpoint))
    resumed = load_checkpoint(str(chain / method.checkpoint))
    assert method.completed_epochs(straight) == method.completed_epochs(resumed) == EPOCHS
    for part in method.params:
        _assert_same_tensors(straight[part], resumed[part], part)
    # what a checkpoint must record to make that possible (and to tell which code and flags wrote it); "scaler" is
    # the AMP loss scale of float16 on CUDA (an empty state here: bfloat16 on CPU needs none)
    for state in (straight, resumed):
        assert {"args", "code_version", "rng_state", "scaler"} <= state.keys()
        assert state["args"]["epochs"] == EPOCHS and state["code_version"]
        assert {"python", "numpy", "torch"} <= state["rng_state"].keys()


def test_fault_spec_parsing():
    assert parse_fault_spec("") == {}
    assert parse_fault_spec(" kill_after_steps=3, kill_in_save=2 ") == {"kill_after_steps": 3, "kill_in_save": 2}
    for bad in ("kill_after=3", "kill_in_save", "kill_in_save=0", "kill_in_save=two"):
        with pytest.raises(UserError, match=FAULT_ENV):
            parse_fault_spec(bad)


def test_kill_after_steps_counts_optimizer_steps(tmp_path):
    """The process dies right after its n-th optimizer step, whichever loop makes it."""
    script = ("import torch, common.checkpoint\n"
              "weight = torch.nn.Parameter(torch.zeros(1))\n"
              "optimizer = torch.optim.SGD([weight], lr=1.0)\n"
              "for step in range(1, 6):\n"
              "    optimizer.step()\n"
              "    print(step, flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", script], env=smoke_env(tmp_path, {FAULT_ENV: "kill_after_steps=3"}),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == KILLED, proc.stderr
    assert proc.stdout.split() == ["1", "2"]


@pytest.mark.parametrize("short_eval,expected", [("", "1 1 4 4"), ("1", "1 1 1 1")])
def test_short_run_cuts_training_loaders_and_short_eval_also_the_in_order_ones(short_eval, expected):
    code = ("import common.faults, torch\n"
            "from torch.utils.data import DataLoader\n"
            "data = torch.arange(8.0)\n"
            "train, evaluation = DataLoader(data, 2, shuffle=True), DataLoader(data, 2)\n"
            "print(len(train), len(list(train)), len(evaluation), len(list(evaluation)))\n")
    env = {"CL_SHORT_RUN": "1", "CL_SHORT_EVAL": short_eval, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == expected
