"""A run interrupted after epoch 1 and continued (auto-resume from the run dir, or --resume) ends with the
same parameters and optimiser state as the uninterrupted run."""
from __future__ import annotations

import shutil

import torch

from ci.smoke import run_python
from attentionce.tests.helpers import load_state, run_dir


def assert_same(a, b):
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(sb["exp_avg_sq"], sa["exp_avg_sq"], rtol=0, atol=0)


def test_resume_equals_uninterrupted(reference_runs):
    runs, flags = reference_runs
    # killed right after the last step of epoch 1 (2 steps per epoch); its checkpoint holds epoch 1
    proc = run_python("attentionce", "image/main.py", *flags, "--epochs", "2", "--name", "cut", runs_dir=runs,
                      env={"CL_FAULT_INJECT": "kill_after_steps=3"}, expect_failure=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    saved = runs / "epoch1.pth"
    shutil.copy(run_dir(runs, "cut") / "checkpoint.pth", saved)
    assert load_state(saved)["epoch"] == 1
    # auto-resume: the same command again (another --epochs would be another run: common.engine refuses it)
    proc = run_python("attentionce", "image/main.py", *flags, "--epochs", "2", "--name", "cut", runs_dir=runs)
    assert "resumed from" in proc.stdout
    # explicit --resume into another run directory
    run_python("attentionce", "image/main.py", *flags, "--epochs", "2", "--name", "explicit", "--resume", saved,
               runs_dir=runs)
    full = load_state(run_dir(runs, "full") / "checkpoint.pth")
    assert_same(full, load_state(run_dir(runs, "cut") / "checkpoint.pth"))
    assert_same(full, load_state(run_dir(runs, "explicit") / "checkpoint.pth"))
    # and epoch 2 did change the parameters
    assert not torch.equal(full["state_dict"]["g.3.weight"], load_state(saved)["state_dict"]["g.3.weight"])
