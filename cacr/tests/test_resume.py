"""A run interrupted after one epoch and resumed (auto-resume from the run directory, or --resume) ends with the
same parameters as an uninterrupted run (CPU, tiny)."""
from __future__ import annotations

import os

import torch

ARGS = ["small_scale_experiments/main_ours.py", "--dataset", "digits", "--arch", "resnet20_option_a", "--Ns", "16",
        "--Ny", "1", "--max-iters", "3", "--num_workers", "0", "--monitor", "none", "--no-progress",
        "--lr_decay_epochs", "1", "--seed", "3"]


def _params(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_resume_matches_uninterrupted(cacr_run, runs_dir):
    cacr_run([*ARGS, "--epochs", "2", "--name", "resume_full"])
    cacr_run([*ARGS, "--epochs", "1", "--name", "resume_split"])
    split_dir = os.path.join(runs_dir, "runs", "cacr", "resume_split")
    assert os.path.isfile(os.path.join(split_dir, "checkpoint.pth.tar"))
    out = cacr_run([*ARGS, "--epochs", "2", "--name", "resume_split"]).stdout  # auto-resume
    assert "resumed at epoch 1" in out
    full = _params(os.path.join(runs_dir, "runs", "cacr", "resume_full", "encoder.pth"))
    split = _params(os.path.join(split_dir, "encoder.pth"))
    assert full.keys() == split.keys()
    for k in full:
        assert torch.equal(full[k], split[k]), k
