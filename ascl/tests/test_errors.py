"""Bad input gives one clear ``error:`` line and a non-zero exit, never a bare traceback or a half-written file."""
import os

import pytest

from ci.smoke import run_python
from common.data import fake

SMALL = ["--dataset", "digits", "--arch", "resnet20_option_a", "--epochs", "1", "--eval_epochs", "0",
         "--iters_per_epoch", "2", "--batch-size", "16", "--mem_size", "32", "--workers", "0", "--no_progress"]


def _fails(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error:" in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_missing_data_path(tmp_path):
    proc = run_python("ascl", "main.py", "--dataset", "cifar10", "--data_path", str(tmp_path / "nope"),
                      expect_failure=True, runs_dir=tmp_path)
    _fails(proc, "does not exist")


def test_wrong_data_format(tmp_path):
    fake.write_cifar10(tmp_path / "data", n_train=20, n_test=10)   # CIFAR-10 files, but asking for CIFAR-100
    proc = run_python("ascl", "main.py", "--dataset", "cifar100", "--data_path", str(tmp_path / "data"),
                      expect_failure=True, runs_dir=tmp_path)
    _fails(proc, "cifar")


@pytest.mark.parametrize("entry,flags,fragment", [
    ("main.py", ["--mem_size", "40"], "multiple of the batch size"),
    ("main_simple.py", ["--K", "5"], "--nn_num"),                       # README's main_simple command (quirk 5)
    ("main.py", ["--model", "byol", "--dim", "64"], "--dim 128"),
    ("main.py", ["--type", "hard", "--K", "64"], "top-64"),
    ("main.py", ["--batch-size", "12", "--mem_size", "36"], "SplitBatchNorm"),
])
def test_incompatible_flags(tmp_path, entry, flags, fragment):
    proc = run_python("ascl", entry, *SMALL, *flags, expect_failure=True, runs_dir=tmp_path)
    _fails(proc, fragment)


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "ckpts.pth"
    bad.write_bytes(b"PK\x03\x04 truncated")
    proc = run_python("ascl", "main.py", *SMALL, "--resume", str(bad), expect_failure=True, runs_dir=tmp_path)
    _fails(proc, "corrupt")


def test_imagenet_bad_queue_and_missing_data(tmp_path):
    data = fake.write_imagefolder(tmp_path / "imagenet", n_classes=2, n_per_class=2, size=32)
    proc = run_python("ascl", "ImageNet-1K/main_moco.py", "--moco-k", "10", "--batch-size", "4", data,
                      expect_failure=True, runs_dir=tmp_path)
    _fails(proc, "--moco-k")
    proc = run_python("ascl", "ImageNet-1K/main_moco.py", str(tmp_path / "nope"), expect_failure=True,
                      runs_dir=tmp_path)
    _fails(proc, "does not exist")


def test_nan_loss_stops_without_checkpoint(tmp_path):
    proc = run_python("ascl", "main.py", *SMALL, "--lr", "1e30", "--warm_up", "0", "--print_freq", "1",
                      "--save_freq", "1", "--run_id", "nan", expect_failure=True, runs_dir=tmp_path)
    _fails(proc, "loss is nan")
    run = tmp_path / "runs" / "ascl" / "nan"
    leftovers = [f for _, _, files in os.walk(run) for f in files if f.endswith((".pth", ".tmp"))]
    assert leftovers == []
