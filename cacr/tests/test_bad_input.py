"""Bad input gives one clear ``error:`` line and exit code 2 (no traceback), and leaves no half-written checkpoint."""
from __future__ import annotations

import glob
import os


TINY = ["--epochs", "1", "--max-iters", "1", "--Ns", "8", "--Ny", "1", "--num_workers", "0", "--monitor", "none",
        "--no-progress", "--arch", "resnet20_option_a"]


def _assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.lower()
    assert "error:" in err
    for needle in needles:
        assert needle.lower() in err, proc.stderr


def test_missing_data_path(cacr_run, tmp_path):
    proc = cacr_run(["small_scale_experiments/cifar10/main_ours.py", "--data_folder", tmp_path / "nope", *TINY],
                    check=False)
    _assert_user_error(proc, "nope")


def test_wrong_data_format(cacr_run, fake_data):
    # an ImageFolder tree where CIFAR-10 pickles are expected
    proc = cacr_run(["small_scale_experiments/cifar10/main_ours.py", "--data_folder", fake_data["imagenet"], *TINY],
                    check=False)
    _assert_user_error(proc, "cifar")


def test_wrong_format_large_scale(cacr_run, fake_data):
    proc = cacr_run(["large_scale_shift_experiments/webvision/main_ours.py", fake_data["imagenet"], "-a", "resnet18",
                     "--Ns", "4", "--moco-k", "8", "-j", "0"], check=False)
    _assert_user_error(proc, "webvision")


def test_incompatible_flags(cacr_run, fake_data):
    proc = cacr_run(["small_scale_experiments/main_ours.py", "--dataset", "digits", "--choice", "none",
                     "--with_debiased", *TINY], check=False)
    _assert_user_error(proc, "--with_debiased")
    proc = cacr_run(["small_scale_experiments/main_ours.py", "--dataset", "stl10", "--imbalanced", *TINY], check=False)
    _assert_user_error(proc, "--imbalanced")


def test_queue_not_divisible_by_batch(cacr_run, fake_data):
    proc = cacr_run(["large_scale_shift_experiments/imagenet/main_ours.py", fake_data["imagenet"], "-a", "resnet18",
                     "--Ns", "4", "--moco-k", "10", "-j", "0", "--image-size", "32"], check=False)
    _assert_user_error(proc, "--moco-k 10", "divisible")


def test_corrupt_checkpoint_resume_and_eval(cacr_run, tmp_path, fake_data):
    bad = tmp_path / "checkpoint.pth.tar"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    proc = cacr_run(["small_scale_experiments/main_ours.py", "--dataset", "digits", "--resume", bad, *TINY],
                    check=False)
    _assert_user_error(proc, "corrupt")
    proc = cacr_run(["small_scale_experiments/linear_eval.py", "--dataset", "digits", "--encoder_checkpoint", bad,
                     "--arch", "resnet20_option_a", "--epochs", "1", "--num_workers", "0"], check=False)
    _assert_user_error(proc, "corrupt")
    proc = cacr_run(["imagenet_pretraining/main_lincls.py", fake_data["imagenet"], "-a", "resnet18", "--pretrained",
                     tmp_path / "missing.pth.tar", "-j", "0"], check=False)
    _assert_user_error(proc, "missing.pth.tar")


def test_nan_loss_stops_without_checkpoint(cacr_run, runs_dir):
    proc = cacr_run(["small_scale_experiments/main_ours.py", "--dataset", "digits", "--tau_pos", "nan",
                     "--name", "nan_run", *TINY], check=False)
    _assert_user_error(proc, "nan", "step")
    run_dir = os.path.join(runs_dir, "runs", "cacr", "nan_run")
    assert not glob.glob(os.path.join(run_dir, "*.pth*")) and not glob.glob(os.path.join(run_dir, ".*.tmp"))


def test_zero_alpha_is_a_clear_error(cacr_run):
    proc = cacr_run(["small_scale_experiments/main_ours.py", "--dataset", "digits", "--alpha", "0", *TINY],
                    check=False)
    _assert_user_error(proc, "--alpha")
