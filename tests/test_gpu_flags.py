"""The originals' GPU-selecting flags (``--gpu``, ``--gpus``, ``--gpu-id``, ``--gpuid``, ``--gpu-ids``) on a machine
without CUDA: every entry point prints the same single notice line (``common.utils.gpus_available``) and runs on
the CPU. Each command is the smallest run of the method's smoke tests, run from the method folder."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from ci.smoke import run_python
from common.data import fake
from common.distributed import find_free_port
from common.utils import gpus_available, set_visible_gpus

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback needs a machine without CUDA")]

NOTICE = re.compile(r"^notice: (\S+) (.+) selects GPUs but CUDA is not available; running on the CPU$", re.M)


def assert_one_notice(proc, flag: str, ids: str) -> None:
    notices = NOTICE.findall(proc.stdout + proc.stderr)
    assert notices == [(flag, ids)], proc.stdout[-1500:] + proc.stderr[-1500:]


def run(method, entry, *args, tmp_path):
    return run_python(method, entry, *map(str, args), runs_dir=tmp_path, timeout=300)


def test_helper(capsys, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpus_available("--gpus", None) is False and capsys.readouterr().err == ""
    assert set_visible_gpus("--gpus", [0, 1]) is False
    import os
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert capsys.readouterr().err == ("notice: --gpus 0 1 selects GPUs but CUDA is not available; running on the "
                                       "CPU\n")
    assert set_visible_gpus("--gpu-id", "3", keep_existing=True) is False
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_cacr_small_scale_train_and_linear_eval(tmp_path):
    """The README's training and testing commands both end with --gpus (linear_eval.py used to stop)."""
    proc = run("cacr", "small_scale_experiments/main_ours.py", "--dataset", "digits", "--arch", "resnet20_option_a",
               "--Ny", "1", "--Ns", "16", "--epochs", "1", "--max-iters", "1", "--monitor", "none",
               "--num_workers", "0", "--no-progress", "--name", "gpu", "--gpus", "0", tmp_path=tmp_path)
    assert_one_notice(proc, "--gpus", "0")
    encoder = tmp_path / "runs" / "cacr" / "gpu" / "encoder.pth"
    assert encoder.is_file()
    proc = run("cacr", "small_scale_experiments/linear_eval.py", "--dataset", "digits", "--arch", "resnet20_option_a",
               "--encoder_checkpoint", encoder, "--epochs", "1", "--max-iters", "1", "--batch_size", "16",
               "--num_workers", "0", "--no-progress", "--gpus", "0", tmp_path=tmp_path)
    assert_one_notice(proc, "--gpus", "0")
    assert "Best acc" in proc.stdout


def test_cacr_large_scale_train_and_lincls(tmp_path):
    data = fake.write_imagefolder(tmp_path / "imagenet", n_classes=3, n_per_class=4, size=40)
    proc = run("cacr", "large_scale_shift_experiments/imagenet/main_ours.py", data, "-a", "resnet18", "--Ns", "4",
               "--Ny", "1", "--moco-k", "8", "--moco-dim", "16", "--image-size", "32", "--epochs", "1",
               "--max-iters", "1", "-j", "0", "--no-progress", "--gpus", "0", "1", tmp_path=tmp_path)
    assert_one_notice(proc, "--gpus", "0 1")
    ckpt = next((tmp_path / "runs" / "cacr").rglob("checkpoint.pth.tar"))
    proc = run("cacr", "large_scale_shift_experiments/imagenet/main_lincls.py", data, "-a", "resnet18", "-b", "4",
               "--image-size", "32", "--epochs", "1", "--max-iters", "1", "-j", "0", "--no-progress",
               "--pretrained", ckpt, "--gpus", "0", tmp_path=tmp_path)
    assert_one_notice(proc, "--gpus", "0")
    assert "final linear top-1" in proc.stdout


def test_paco_gpu(tmp_path):
    proc = run("paco", "LT/paco_lt.py", "--dataset", "digits", "-a", "resnet32", "--feat_dim", "64", "--epochs", "1",
               "-b", "32", "--moco-k", "64", "--moco-dim", "16", "--aug", "mocov2_mocov2",
               "--no-multiprocessing-distributed", "-j", "0", "--seed", "0", "--gpu", "0", tmp_path=tmp_path)
    assert_one_notice(proc, "--gpu", "0")


def test_ascl_gpuid(tmp_path):
    proc = run("ascl", "main.py", "--dataset", "digits", "--arch", "resnet20_option_a", "--epochs", "1",
               "--eval_epochs", "1", "--iters_per_epoch", "2", "--batch-size", "16", "--mem_size", "32",
               "--workers", "0", "--knn_k", "10", "--no_progress", "--image_size", "16", "--gpuid", "1",
               tmp_path=tmp_path)
    assert_one_notice(proc, "--gpuid", "1")


def test_mcl_gpu_id(tmp_path):
    proc = run("mcl", "main_cifar.py", "--dataset", "digits", "--arch", "resnet32", "--image-size", "16",
               "--epochs", "1", "--max-iters", "1", "--batch-size", "8", "--num-workers", "0", "--no-progress",
               "--gpu-id", "1", tmp_path=tmp_path)
    assert_one_notice(proc, "--gpu-id", "1")


def test_mcl_moco_and_lincls_gpu_ids(tmp_path):
    data = fake.write_imagefolder(tmp_path / "imagenet", n_classes=3, n_per_class=4, splits=("train", "val"), size=40)
    proc = run("mcl", "main_moco_mcl.py", "-a", "resnet18", "--data", data, "--image-size", "32", "--batch-size", "4",
               "--moco-k", "16", "--moco-dim", "16", "--epochs", "1", "--max-iters", "1", "--workers", "0",
               "--no-progress", "--gpu-ids", "0", tmp_path=tmp_path)
    assert_one_notice(proc, "--gpu-ids", "0")
    ckpt = tmp_path / "runs" / "mcl" / "moco_mcl_resnet18_n2" / "checkpoint_0000.pth.tar"
    proc = run("mcl", "main_lincls.py", "-a", "resnet18", "--pretrained", ckpt, "--data", data, "--image-size", "32",
               "--resize", "36", "--batch-size", "4", "--epochs", "1", "--max-iters", "1", "--workers", "0",
               "--num-classes", "3", "--no-progress", "--gpu-ids", "0", tmp_path=tmp_path)
    assert_one_notice(proc, "--gpu-ids", "0")
    assert "final top-1:" in proc.stdout
