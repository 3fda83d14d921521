"""Every sh/ script end to end for 1-2 steps on tiny data in its real on-disk format (CPU, small encoder)."""
from __future__ import annotations

import pytest

from ci.smoke import FAST_PATH_FLAGS, assert_fast_path_args, run_script, scratch_dir
from attentionce.tests.helpers import TINY, load_state, run_dir, write_all

pytestmark = pytest.mark.slow
STEPS = ["--batch_size", "4", "--epochs", "1", "--steps_per_epoch", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    with scratch_dir(request, tmp_path_factory, "runs") as path:
        yield path


@pytest.mark.parametrize("script, dataset, d_pos, d_neg", [
    ("sh/cifar10.sh", "cifar10", 1.0, 10.0),
    ("sh/cifar100.sh", "cifar100", 1.0, 10.0),
    ("sh/stl10.sh", "stl10", 2.0, 0.5),
    ("sh/tinyimagenet.sh", "tinyImageNet", 4.0, 1.0),
])
def test_pretrain_scripts(script, dataset, d_pos, d_neg, data, runs):
    proc = run_script("attentionce", script, *STEPS, *TINY, "--name", dataset, env={"DATA": data}, runs_dir=runs)
    assert "# Classes:" in proc.stdout
    path = run_dir(runs, dataset) / f"{dataset}_SimCLR_4model_4_1_{d_pos}_{d_neg}.pth"
    state = load_state(path)
    assert all(k.startswith("module.") for k in state) and "module.g.3.bias" in state
    assert state["module.g.3.weight"].shape[0] == 16


def test_simclr_baseline_script(data, runs):
    run_script("attentionce", "sh/simclr.sh", *STEPS, *TINY, "--name", "simclr", env={"DATA": data, "DATASET": "cifar10"},
               runs_dir=runs)
    # an un-set --d_pos / --d_neg prints as the original printed its int defaults (issue 16)
    assert (run_dir(runs, "simclr") / "cifar10_SimCLR_4model_4_1_1_1.pth").is_file()


def test_linear_scripts(data, runs):
    """linear.sh reads what cifar10.sh wrote; linear_tiny.sh what tinyimagenet.sh wrote (64 px test images)."""
    model = run_dir(runs, "cifar10") / "cifar10_SimCLR_4model_4_1_1.0_10.0.pth"
    if not model.is_file():
        run_script("attentionce", "sh/cifar10.sh", *STEPS, *TINY, "--name", "cifar10", env={"DATA": data}, runs_dir=runs)
    args = ["--arch", TINY[1], "--workers", "0", "--epochs", "1", "--batch_size", "8", "--steps_per_epoch", "1"]
    proc = run_script("attentionce", "sh/linear.sh", *args, env={"DATA": data, "DATASET": "cifar10", "MODEL_PATH": model},
                      runs_dir=runs)
    assert "Best acc1 result:" in proc.stdout and "Last acc1 result:" in proc.stdout
    tiny = run_dir(runs, "tinyImageNet") / "tinyImageNet_SimCLR_4model_4_1_4.0_1.0.pth"
    if not tiny.is_file():
        run_script("attentionce", "sh/tinyimagenet.sh", *STEPS, *TINY, "--name", "tinyImageNet", env={"DATA": data},
                   runs_dir=runs)
    proc = run_script("attentionce", "sh/linear_tiny.sh", *args, env={"DATA": data, "MODEL_PATH": tiny}, runs_dir=runs)
    assert "Best acc1 result:" in proc.stdout


def test_train_sh_embedded_default_runs(runs):
    """sh/train.sh (digits) with its epochs cut to a few steps: prints initial and final evaluation lines."""
    # batch 16: the fast path's bfloat16 autocast is ~16x slower than float32 on this CPU
    proc = run_script("attentionce", "sh/train.sh", "--epochs", "1", "--steps_per_epoch", "2", "--eval_epochs", "2",
                      "--batch_size", "16", "--name", "digits", *FAST_PATH_FLAGS, runs_dir=runs)
    lines = proc.stdout.splitlines()
    initial = [l for l in lines if l.startswith("initial linear top-1: ")]
    final = [l for l in lines if l.startswith("final linear top-1: ")]
    assert len(initial) == 1 and len(final) == 1, proc.stdout[-2000:]
    assert lines.index(initial[0]) < lines.index(final[0])
    files = {p.name for p in run_dir(runs, "digits").iterdir()}
    assert "checkpoint.pth" in files and "log.txt" in files and any(f.startswith("events.out.tfevents") for f in files)
    assert_fast_path_args(run_dir(runs, "digits") / "checkpoint.pth")
