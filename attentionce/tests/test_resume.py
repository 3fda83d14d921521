"""A run interrupted after epoch 1 and continued (auto-resume from the run dir, or --resume) ends with the
same parameters as the uninterrupted run."""
from __future__ import annotations

import shutil

import pytest
import torch

from ci.smoke import run_python
from attentionce.tests.helpers import TINY, load_state, run_dir

FLAGS = ["--dataset_name", "digits", "--batch_size", "8", "--steps_per_epoch", "2", *TINY]


def params(runs, name):
    return load_state(run_dir(runs, name) / "checkpoint.pth")


def assert_same(a, b):
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    # the optimiser state continues too
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=0, atol=0)


def test_resume_equals_uninterrupted(tmp_path):
    run_python("attentionce", "image/main.py", *FLAGS, "--epochs", "2", "--name", "full", runs_dir=tmp_path)
    run_python("attentionce", "image/main.py", *FLAGS, "--epochs", "1", "--name", "cut", runs_dir=tmp_path)
    saved = tmp_path / "epoch1.pth"
    shutil.copy(run_dir(tmp_path, "cut") / "checkpoint.pth", saved)
    # auto-resume: same run name, more epochs
    proc = run_python("attentionce", "image/main.py", *FLAGS, "--epochs", "2", "--name", "cut", runs_dir=tmp_path)
    assert "resumed from" in proc.stdout
    # explicit --resume into another run directory
    run_python("attentionce", "image/main.py", *FLAGS, "--epochs", "2", "--name", "explicit", "--resume", saved,
               runs_dir=tmp_path)
    full = params(tmp_path, "full")
    assert_same(full, params(tmp_path, "cut"))
    assert_same(full, params(tmp_path, "explicit"))
    assert not torch.equal(full["state_dict"]["g.3.weight"], load_state(saved)["state_dict"]["g.3.weight"])
