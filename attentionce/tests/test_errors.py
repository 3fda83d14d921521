"""Bad input: one clear ``error:`` line, exit code 2, no traceback, no half-written checkpoint."""
from __future__ import annotations

import re

import pytest
import torch

from ci.smoke import run_python, run_script
from attentionce.tests.helpers import TINY, run_dir

STEPS = ["--batch_size", "4", "--epochs", "1", "--steps_per_epoch", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    from common.data import fake
    fake.write_cifar10(root, n_train=16, n_test=8)
    return root


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in err, err


def test_missing_data_path(tmp_path):
    proc = run_script("attentionce", "sh/cifar10.sh", *STEPS, *TINY, env={"DATA": tmp_path / "nowhere"},
                      runs_dir=tmp_path, expect_failure=True)
    assert_user_error(proc, "nowhere")


def test_wrongly_formatted_data(tmp_path):
    bad = tmp_path / "bad"
    (bad / "cifar-10-batches-py").mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (bad / "cifar-10-batches-py" / name).write_bytes(b"this is not a pickle")
    proc = run_script("attentionce", "sh/cifar10.sh", *STEPS, *TINY, env={"DATA": bad}, runs_dir=tmp_path,
                      expect_failure=True)
    assert_user_error(proc)


def test_batch_not_divisible_by_processes(data, tmp_path):
    proc = run_python("attentionce", "image/main.py", "--root", data, "--epochs", "1", *TINY, "--batch_size", "5",
                      "--multiprocessing-distributed", "--world-size", "1", "--rank", "0", "--nproc-per-node", "2",
                      runs_dir=tmp_path, expect_failure=True)
    assert_user_error(proc, "not divisible")


@pytest.mark.parametrize("flags, needle", [
    (["--d_neg", "0"], "--d_neg"),
    (["--temperature", "-1"], "--temperature"),
    (["--loss", "simclr", "--repeat_view4_bug"], "--repeat_view4_bug"),
    (["--batch_size", "1"], "--batch_size"),
    (["--dataset_name", "imagenet"], "Invalid dataset name"),
])
def test_incompatible_flags(flags, needle):
    """Flag validation (the same function main.py runs before anything else)."""
    from attentionce.image.main import check_args, get_parser
    from common.utils import UserError
    with pytest.raises(UserError, match=re.escape(needle)):
        check_args(get_parser().parse_args(flags))


def test_corrupt_checkpoint_resume_and_linear(data, tmp_path):
    bad = tmp_path / "checkpoint.pth"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    proc = run_python("attentionce", "image/main.py", "--root", data, *STEPS, *TINY, "--resume", bad,
                      runs_dir=tmp_path, expect_failure=True)
    assert_user_error(proc, "corrupt")
    proc = run_script("attentionce", "sh/linear.sh", "--epochs", "1", env={"DATA": data, "DATASET": "cifar10",
                      "MODEL_PATH": bad}, runs_dir=tmp_path, expect_failure=True)
    assert_user_error(proc, "corrupt")
    from attentionce.image.linear import load_pretrained
    from common.utils import UserError
    with pytest.raises(UserError, match="does not exist"):
        load_pretrained(str(tmp_path / "missing.pth"), None, "cpu")
    torch.save({"f.0.weight": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(UserError, match="not an AttentioNCE model"):
        load_pretrained(str(tmp_path / "foreign.pth"), None, "cpu")


def test_nan_loss_stops_without_checkpoint(data, tmp_path):
    """An absurd learning rate blows the network up: the run stops at the first check with a message, and
    nothing is saved (no checkpoint holding NaN weights)."""
    proc = run_python("attentionce", "image/main.py", "--root", data, "--batch_size", "4", "--epochs", "1",
                      "--print_freq", "1", *TINY, "--lr", "1e30", "--name", "nan", runs_dir=tmp_path,
                      expect_failure=True)
    assert_user_error(proc, "loss is nan")
    folder = run_dir(tmp_path, "nan")
    assert not any(p.suffix == ".pth" or ".pth." in p.name for p in folder.iterdir())
