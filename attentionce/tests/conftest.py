"""Shared run for the resume and distributed tests: one uninterrupted single-process reference run."""
from __future__ import annotations

import pytest

from ci.smoke import run_python
from attentionce.tests.helpers import TINY

# BatchNorm frozen (eval mode) so that the 2-process runs are comparable (see test_distributed.py)
REFERENCE_FLAGS = ["--dataset_name", "digits", "--batch_size", "8", "--steps_per_epoch", "2", "--freeze_bn",
                   "--d_neg", "0.5", "--device", "cpu", *TINY]


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory):
    """``(runs_dir, flags)``: ``runs/attentionce/full`` trained 2 epochs without interruption."""
    runs = tmp_path_factory.mktemp("attentionce_runs")
    run_python("attentionce", "image/main.py", *REFERENCE_FLAGS, "--epochs", "2", "--name", "full", runs_dir=runs)
    return runs, REFERENCE_FLAGS
