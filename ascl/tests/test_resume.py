"""A killed run continued by auto-resume ends with the same parameters as an uninterrupted run (CPU, tiny)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from ci.smoke import ROOT, run_python, smoke_env
from common.utils import UserError

FLAGS = ["--dataset", "digits", "--arch", "resnet20_option_a", "--epochs", "4", "--warm_up", "1",
         "--eval_epochs", "0", "--iters_per_epoch", "3", "--batch-size", "16", "--mem_size", "32",
         "--workers", "0", "--save_freq", "1", "--no_progress", "--knn_k", "20"]
RUN = "digits_moco_ascl_4_weak_augment_1_0.1_0.05"


def _params(path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["state_dict"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6, rtol=1e-5), key


def test_killed_run_auto_resumes_to_identical_parameters(tmp_path):
    run_python("ascl", "main.py", *FLAGS, "--run_id", "straight", runs_dir=tmp_path)
    straight = tmp_path / "runs" / "ascl" / "straight" / RUN

    killed = tmp_path / "runs" / "ascl" / "killed" / RUN
    env = smoke_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "main.py", *FLAGS, "--run_id", "killed"], cwd=ROOT / "ascl", env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "ckpts.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not (killed / "model_last.pth").exists(), "the run finished before it could be killed"
    saved_epoch = torch.load(killed / "ckpts.pth", weights_only=False)["epoch"]
    assert 1 <= saved_epoch < 4

    resumed = run_python("ascl", "main.py", *FLAGS, "--run_id", "killed", runs_dir=tmp_path)
    assert "auto-resuming" in resumed.stdout and f"resumed at epoch {saved_epoch}" in resumed.stdout
    _assert_same(_params(straight / "model_last.pth"), _params(killed / "model_last.pth"))
    # the log continues instead of being truncated, one line per epoch overall (quirk 8)
    assert len((killed / "train_logs.txt").read_text().splitlines()) == 4


def test_explicit_resume_path_and_missing_checkpoint(tmp_path):
    proc = run_python("ascl", "main.py", *FLAGS, "--run_id", "none", "--resume", expect_failure=True,
                      runs_dir=tmp_path)
    assert "no checkpoint" in proc.stderr and "Traceback" not in proc.stderr
