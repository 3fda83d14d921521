"""Every sh/ script and every entry point, end to end for 1–2 iterations on tiny data in its real format (CPU).

Sizes are overridden with flags (the scripts forward "$@" last): tiny queue / batch, one epoch, a couple of
iterations, one linear-eval epoch.
"""
import re

import pytest
import torch

from ci.smoke import FAST_PATH_FLAGS, assert_fast_path_args, run_python, run_script
from common.data import fake

pytestmark = pytest.mark.slow

TINY = ["--epochs", "1", "--eval_epochs", "1", "--iters_per_epoch", "2", "--batch-size", "16", "--mem_size", "32",
        "--workers", "0", "--knn_k", "10", "--no_progress", "--image_size", "16"]


def _metric(out: str, name: str) -> float:
    match = re.search(rf"^{name}: ([0-9.]+)$", out, re.M)
    assert match, f"no '{name}: <value>' line in:\n{out[-2000:]}"
    return float(match.group(1))


def test_train_sh_digits_defaults(tmp_path):
    proc = run_script("ascl", "sh/train.sh", "--epochs", "1", "--eval_epochs", "1", "--iters_per_epoch", "2",
                      "--no_progress", *FAST_PATH_FLAGS, runs_dir=tmp_path)
    out = proc.stdout
    initial, final = _metric(out, "initial knn top-1"), _metric(out, "final knn top-1")
    assert 0 <= initial <= 100 and 0 <= final <= 100
    _metric(out, "final linear top-1")
    run = tmp_path / "ascl" / "digits" / "digits_moco_ascl_1_weak_augment_3_0.1_0.05"
    assert (run / "model_last.pth").is_file() and (run / "train_logs.txt").is_file()
    assert_fast_path_args(run / "model_last.pth")
    assert (run / "eval_logs.txt").read_text().endswith("\n")           # quirk 9 fixed
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())


def test_cifar100_main_script(tmp_path):
    data = fake.write_cifar100(tmp_path / "data", n_train=40, n_test=20)
    proc = run_script("ascl", "sh/cifar100_ascl.sh", *TINY, "--K", "2", env={"DATA": data}, runs_dir=tmp_path)
    assert "final linear top-1" in proc.stdout


def test_cifar100_main_simple_script(tmp_path):
    # the script runs the README's main_simple.py line as typed: --K 5 = 5 neighbours (quirk 5: the original read it
    # as the queue size), the queue is --mem_size (32 here); typing --K prints one notice
    data = fake.write_cifar100(tmp_path / "data", n_train=40, n_test=20)
    proc = run_script("ascl", "sh/cifar100_ascl_simple.sh", *TINY, "--type", "ahcl", "--arch", "resnet20_option_a",
                      env={"DATA": data}, runs_dir=tmp_path)
    assert "final knn top-1" in proc.stdout
    assert proc.stderr.count("notice: main_simple.py reads --K as the number of neighbours") == 1, proc.stderr
    # without --run_id the results folder also carries a digest of the result flags (common.engine)
    (run,) = (tmp_path / "ascl" / "ascl_project").glob("cifar100_moco_ahcl_1_weak_augment_5_0.1_0.05-*")
    stored = torch.load(run / "model_last.pth", map_location="cpu", weights_only=False)
    assert (stored["args"]["K"], stored["args"]["mem_size"]) == (5, 32)
    assert stored["state_dict"]["queue"].shape[1] == 32     # the queue: --mem_size, not --K


def test_imagenet_script(tmp_path):
    data = fake.write_imagefolder(tmp_path / "imagenet", n_classes=2, n_per_class=4, size=40)
    proc = run_script("ascl", "sh/imagenet_ascl.sh", "-a", "resnet20_option_a", "--image-size", "16", "--batch-size", "4",
                      "--moco-k", "8", "--moco-dim", "16", "--epochs", "1", "-j", "0", "--nproc-per-node", "1",
                      "--no-progress", "--amp", "--channels-last", env={"DATA": data}, runs_dir=tmp_path)
    (run,) = (tmp_path / "ascl").glob("imagenet_resnet20_option_a-*")   # the default name carries a digest
    assert (run / "checkpoint_0000.pth.tar").is_file(), proc.stdout[-2000:]   # MoCo's numbering: after epoch 0


@pytest.mark.parametrize("dataset,writer", [("stl10", "write_stl10"), ("tinyimagenet", "write_tinyimagenet"),
                                            ("cifar10", "write_cifar10")])
def test_main_other_datasets_and_byol(tmp_path, dataset, writer):
    kwargs = {"write_stl10": dict(n_train=20, n_test=10, n_unlabeled=20),
              "write_tinyimagenet": dict(n_classes=4, n_train_per_class=4, n_val_per_class=2),
              "write_cifar10": dict(n_train=40, n_test=10)}[writer]
    data = getattr(fake, writer)(tmp_path / "data", **kwargs)
    extra = ["--model", "byol", "--aug", "strong_augment"] if dataset == "cifar10" else []
    proc = run_python("ascl", "main.py", "--dataset", dataset, "--data_path", data, *TINY,
                      "--arch", "resnet18" if dataset == "stl10" else "resnet20_option_a",
                      "--eval_epochs", "0", *extra, runs_dir=tmp_path)
    assert "final knn top-1" in proc.stdout
