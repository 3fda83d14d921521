"""Distributed: 2 gloo processes reproduce the equivalent 1-process computation; the originals' launch flags
(mp.spawn) and torchrun run end to end on CPU."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from common.distributed import find_free_port
from paco.tests.helpers import PACO_DIR, run, run_dir

pytestmark = pytest.mark.distributed

REPO = PACO_DIR.parent
DIGITS = ["--dataset", "digits", "--imb-factor", "0.1", "--feat_dim", "64", "--epochs", "1", "-b", "16",
          "--moco-k", "64", "--moco-dim", "16", "--alpha", "0.01", "--moco-t", "0.05", "-j", "0", "--seed", "0"]


def test_two_processes_equal_one_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "paco.tests.dist_check", str(tmp_path / "dist.pt")], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr[-3000:]


def test_multiprocessing_distributed_launch_flags(tmp_path):
    # the originals' launch line, on CPU: 2 spawned gloo processes
    proc = run(["LT/paco_cifar.py", *DIGITS, "--multiprocessing-distributed", "--world-size", "1", "--rank", "0",
                "--dist-url", f"tcp://127.0.0.1:{find_free_port()}", "--dist-backend", "gloo", "--nproc-per-node", "2",
                "--mark", "mp"], tmp_path)
    assert "final top-1:" in proc.stdout
    state = torch.load(run_dir(tmp_path, "digits", "mp") / "moco_ckpt.pth.tar", weights_only=False)
    assert state["epoch"] == 1 and state["args"]["world_size"] == 2
    # one "initial" line: only rank 0 reports (quirk 18)
    assert proc.stdout.count("initial top-1:") == 1


def test_torchrun(tmp_path):
    proc = run(["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(find_free_port()),
                "LT/paco_cifar.py", *DIGITS, "--mark", "torchrun"], tmp_path, timeout=240)
    assert "final top-1:" in proc.stdout
    state = torch.load(run_dir(tmp_path, "digits", "torchrun") / "moco_ckpt.pth.tar", weights_only=False)
    assert state["args"]["world_size"] == 2
