"""`--resume PATH` continues a run (a killed run auto-resuming to the uninterrupted parameters is tested for every
method in tests/reliability/test_faults.py)."""
import sys

import torch

from mcl.tests.helpers import run

FLAGS = ["--max-iters", "3", "--batch-size", "8", "--num-workers", "0", "--no-progress", "--lr-type", "multistep",
         "--milestones", "1", "--alpha", "0.1", "--gamma", "1", "--beta", "0.1", "--lam", "1", "--feat-dim", "16",
         "--arch", "ShuffleNetV2_05x"]


def load(path):
    return torch.load(path, weights_only=False)


def test_explicit_resume_flag(tmp_path, cifar100_root):
    base = [sys.executable, "main_cifar.py", "--data", cifar100_root, *FLAGS, "--max-iters", "1"]
    run(base + ["--epochs", "1", "--name", "first"], tmp_path)
    ckpt = tmp_path / "mcl/first/ShuffleNetV2_05x.pth.tar"
    _, out = run(base + ["--epochs", "2", "--name", "second", "--resume", "--resume-checkpoint", ckpt], tmp_path)
    assert "at epoch 1" in out and load(tmp_path / "mcl/second/ShuffleNetV2_05x.pth.tar")["epoch"] == 1
