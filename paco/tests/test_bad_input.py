"""Bad input gives one clear `error:` line and a non-zero exit, never a bare traceback, and no checkpoint."""
from __future__ import annotations

import pytest

from common.data import fake
from paco.tests.helpers import TINY, run, run_dir

DIGITS = ["--dataset", "digits", "--imb-factor", "0.1", "--feat_dim", "64", "--epochs", "1", "-b", "32",
          "--moco-k", "64", "--moco-dim", "16", "--alpha", "0.01", "--moco-t", "0.05", "-j", "0", "--seed", "0",
          "--no-multiprocessing-distributed"]


def _fails(cmd, tmp_path, *fragments):
    proc = run(cmd, tmp_path, expect_failure=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert error, proc.stderr
    for fragment in fragments:
        assert fragment in error[0], error[0]
    return error[0]


def test_missing_cifar_path(tmp_path):
    _fails(["LT/paco_cifar.py", "--data", str(tmp_path / "nowhere"), "--imb-factor", "0.01", "--alpha", "0.01",
            "--feat_dim", "64", "--no-multiprocessing-distributed"], tmp_path, "nowhere")


def test_wrong_format_list_file(tmp_path):
    (tmp_path / "lists" / "ImageNet_LT").mkdir(parents=True)
    for split in ("train", "test"):
        (tmp_path / "lists" / "ImageNet_LT" / f"ImageNet_LT_{split}.txt").write_text("just-a-path-without-label\n")
    _fails(["LT/paco_lt.py", "--data", str(tmp_path), "--list-dir", str(tmp_path / "lists"), *TINY,
            "-a", "resnet18", "--feat_dim", "512"], tmp_path, "ImageNet_LT_train.txt")


def test_missing_list_dir(tmp_path):
    _fails(["LT/paco_lt.py", "--data", str(tmp_path), "--list-dir", str(tmp_path / "no_lists"), *TINY,
            "-a", "resnet18", "--feat_dim", "512"], tmp_path, "no_lists")


def test_queue_not_divisible_by_batch(tmp_path):
    _fails(["LT/paco_cifar.py", *DIGITS, "--moco-k", "100"], tmp_path, "--moco-k 100", "multiple of")


def test_feat_dim_mismatch(tmp_path):
    _fails(["LT/paco_cifar.py", *DIGITS, "--feat_dim", "2048"], tmp_path, "--feat_dim 64")


def test_missing_imb_factor(tmp_path):
    _fails(["LT/paco_cifar.py", "--alpha", "0.01", "--no-multiprocessing-distributed"], tmp_path, "--imb-factor")


@pytest.mark.parametrize("flag", ["--resume", "--reload"])
def test_corrupt_checkpoint(flag, tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"this is not a checkpoint")
    _fails(["LT/paco_cifar.py", *DIGITS, flag, str(bad)], tmp_path, "bad.pth.tar")


def test_reload_of_foreign_checkpoint_is_an_error(tmp_path):
    # a checkpoint with nothing matching must not silently evaluate a random network (quirk 13)
    import torch
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"module.something.weight": torch.zeros(3)}}, foreign)
    _fails(["LT/paco_cifar.py", *DIGITS, "--evaluate", "--reload", str(foreign)], tmp_path, "no tensor matches")


def test_nan_loss_stops_without_checkpoint(tmp_path):
    _fails(["LT/paco_cifar.py", *DIGITS, "--lr", "1e30", "--mark", "nan"], tmp_path, "loss is")
    assert not list(run_dir(tmp_path, "digits", "nan").glob("*.pth.tar"))


def test_corrupt_imagefolder(tmp_path):
    fake.write_imagefolder(tmp_path / "inet", n_classes=2, n_per_class=2)
    for image in (tmp_path / "inet" / "train").rglob("*.*"):
        image.write_bytes(b"not an image")
    _fails(["Full-ImageNet/paco_imagenet.py", "--data", str(tmp_path / "inet"), *TINY, "-a", "resnet18"],
           tmp_path)
