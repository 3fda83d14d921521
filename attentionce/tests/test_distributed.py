"""2 gloo processes (mp.spawn flags, and torchrun) end with the same parameters as 1 process with the same
global batch.

BatchNorm is kept in eval mode (``--freeze_bn``) here: with batch statistics, each process normalises its
own half of every view batch (as each GPU of the original's DataParallel did), which is a different
function of the batch than one process normalising all of it, so equality is only defined without them.
Everything else is exercised: the sampler split, per-(epoch, image) seeded augmentations, the anchors
gathered with gradient across processes, DDP's gradient average and Adam.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ci.smoke import ROOT, run_python, smoke_env
from common.distributed import find_free_port
from attentionce.tests.helpers import TINY, load_state, run_dir

pytestmark = pytest.mark.distributed
FLAGS = ["--dataset_name", "digits", "--batch_size", "8", "--epochs", "1", "--steps_per_epoch", "3",
         "--freeze_bn", "--d_neg", "0.5", "--device", "cpu", *TINY]


def assert_close_params(a, b):
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_two_processes_equal_one(tmp_path):
    run_python("attentionce", "image/main.py", *FLAGS, "--name", "single", runs_dir=tmp_path)
    run_python("attentionce", "image/main.py", *FLAGS, "--name", "spawn", "--multiprocessing-distributed",
               "--world-size", "1", "--rank", "0", "--dist-url", f"tcp://127.0.0.1:{find_free_port()}",
               "--dist-backend", "gloo", "--nproc-per-node", "2", runs_dir=tmp_path)
    env = smoke_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "image/main.py", *FLAGS, "--name", "torchrun"], cwd=ROOT / "attentionce", env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    single = load_state(run_dir(tmp_path, "single") / "checkpoint.pth")["state_dict"]
    for name in ("spawn", "torchrun"):
        state = load_state(run_dir(tmp_path, name) / "checkpoint.pth")
        assert state["args"]["world_size"] == 2
        assert_close_params(single, state["state_dict"])
