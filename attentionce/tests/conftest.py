"""Shared run for the resume and distributed tests: one uninterrupted single-process reference run."""
from __future__ import annotations

import pytest

from ci.smoke import run_python, scratch_dir
from attentionce.tests.helpers import TINY

# BatchNorm frozen (eval mode) so that the 2-process runs are comparable (see test_distributed.py)
REFERENCE_FLAGS = ["--dataset_name", "digits", "--batch_size", "8", "--steps_per_epoch", "2", "--freeze_bn",
                   "--d_neg", "0.5", "--device", "cpu", *TINY]


@pytest.fixture(scope="session")
def reference_runs(request, tmp_path_factory):
    """``(runs_dir, flags)``: ``runs/attentionce/full`` trained 2 epochs without interruption."""
    with scratch_dir(request, tmp_path_factory, "attentionce_runs") as runs:
        run_python("attentionce", "image/main.py", *REFERENCE_FLAGS, "--epochs", "2", "--name", "full",
                   runs_dir=runs)
        yield runs, REFERENCE_FLAGS
