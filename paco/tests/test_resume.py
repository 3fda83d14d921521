"""Resume: an interrupted run continued by auto-resume (same run dir) or by --resume PATH ends with exactly the
parameters of an uninterrupted run (CPU, tiny digits config)."""
from __future__ import annotations

import shutil

import torch

from common.faults import FAULT_ENV
from paco.tests.helpers import run, run_dir

BASE = ["--dataset", "digits", "--imb-factor", "0.01", "--feat_dim", "64", "-b", "32", "--moco-k", "64",
        "--moco-dim", "16", "--alpha", "0.01", "--moco-t", "0.05", "--warmup_epochs", "1", "-j", "0", "--seed", "0",
        "--no-multiprocessing-distributed"]


def _state(tmp_path, mark):
    return torch.load(run_dir(tmp_path, mark) / "moco_ckpt.pth.tar", weights_only=False)


def test_resumed_run_equals_uninterrupted(tmp_path):
    run(["LT/paco_cifar.py", *BASE, "--epochs", "2", "--mark", "straight"], tmp_path)
    # killed one step into epoch 2 (10 steps per epoch), then restarted with the same command: auto-resume
    run(["LT/paco_cifar.py", *BASE, "--epochs", "2", "--mark", "auto"], tmp_path,
        env={FAULT_ENV: "kill_after_steps=11"}, expect_failure=True)
    assert _state(tmp_path, "auto")["epoch"] == 1
    saved = tmp_path / "after_epoch1.pth.tar"
    shutil.copy(run_dir(tmp_path, "auto") / "moco_ckpt.pth.tar", saved)
    proc = run(["LT/paco_cifar.py", *BASE, "--epochs", "2", "--mark", "auto"], tmp_path)
    assert "auto-resuming" in proc.stdout and "initial top-1" not in proc.stdout
    # explicit --resume into a fresh run dir
    proc = run(["LT/paco_cifar.py", *BASE, "--epochs", "2", "--mark", "explicit", "--resume", str(saved)], tmp_path)
    assert "resumed at epoch 1" in proc.stdout

    straight = _state(tmp_path, "straight")
    assert straight["epoch"] == 2
    for mark in ("auto", "explicit"):
        resumed = _state(tmp_path, mark)
        assert resumed["epoch"] == 2
        assert straight["optimizer"]["param_groups"] == resumed["optimizer"]["param_groups"]
        for key, value in straight["state_dict"].items():
            assert torch.equal(resumed["state_dict"][key], value), f"{mark}: {key} differs"
        assert resumed["best_acc"] == straight["best_acc"]  # best accuracy survives a resume (quirk 19)
    first = torch.load(saved, weights_only=False)["state_dict"]
    assert not torch.equal(first["module.linear.weight"], straight["state_dict"]["module.linear.weight"])  # epoch 2 trained
