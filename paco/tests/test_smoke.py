"""Every sh/*.sh end to end for one epoch of 1–3 iterations on tiny data in the script's real format (CPU).

Sizes are overridden with flags appended after the script's own (image size 32, batch 4, K 16, ResNet-18 where
the script uses an ImageNet-size network). Eval scripts reload the checkpoint the matching train script wrote.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import torch

from ci.smoke import FAST_PATH_FLAGS, assert_fast_path_args
from common.data import fake
from paco.tests.helpers import PACO_DIR, TINY, assert_original_layout, run, run_dir

SMALL_ARCH = ["-a", "resnet18", "--feat_dim", "512"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("paco_data")
    lists = root / "lists"
    fake.write_list_dataset(root / "imagenet", "imagenet_lt", n_classes=4, train_counts=[6, 3, 2, 1],
                            list_dir=lists / "ImageNet_LT")
    fake.write_list_dataset(root / "inat", "inat2018", n_classes=4, train_counts=[5, 3, 2, 1],
                            list_dir=lists / "iNaturalist18")
    fake.write_list_dataset(root / "places", "places_lt", n_classes=4, train_counts=[5, 3, 2, 1],
                            list_dir=lists / "Places_LT")
    fake.write_cifar100(root / "cifar", n_train=300, n_test=100)
    fake.write_imagefolder(root / "imagenet_full", n_classes=3, n_per_class=3)
    from common.backbones import build_backbone
    torch.save(build_backbone("resnet18", num_classes=1000).state_dict(), root / "resnet18_torchvision.pth")
    return root


def _env(data, sub):
    return {"DATA": str(data / sub), "LISTS": str(data / "lists")}


@pytest.mark.parametrize("script,mark", [
    ("ImageNetLT_train_R50.sh", "R50_mocot0.2_augrandcls_sim_400epochs_lr0.02_t1"),
    ("ImageNetLT_train_X50.sh", "X50_mocot0.07_augrandclsstack_sim_400epochs_lr0.02_t1"),
    ("ImageNetLT_train_X101.sh", "X101_mocot0.2_augrandclsstack_sim_400epochs_lr0.03_t1"),
])
def test_imagenet_lt_train_then_eval(script, mark, data, tmp_path):
    run(["bash", f"sh/{script}", *SMALL_ARCH, *TINY], tmp_path, env=_env(data, "imagenet"))
    ckpt = run_dir(tmp_path, mark) / "moco_ckpt.pth.tar"
    assert_original_layout(ckpt, epochs_done=1)
    if ckpt.with_name("moco_ckpt.best.pth.tar").exists():   # (top-1 may stay 0 on 4 tiny classes: no best file)
        assert_original_layout(ckpt.with_name("moco_ckpt.best.pth.tar"), epochs_done=1)
    if script.endswith("R50.sh"):  # the released weights' layout: DDP 'module.' keys (as ours), nothing else
        state = torch.load(ckpt, weights_only=True)
        assert all(k.startswith("module.") for k in state["state_dict"])
        ckpt = tmp_path / "imagenetlt_r50.pth"
        torch.save({"state_dict": state["state_dict"]}, ckpt)
    eval_script = script.replace("train", "eval")
    proc = run(["bash", f"sh/{eval_script}", *SMALL_ARCH, *TINY, "--mark", "eval"], tmp_path,
               env={**_env(data, "imagenet"), "RELOAD": str(ckpt)})
    assert "Many_acc" in proc.stdout and "top-1:" in proc.stdout
    loaded, total = re.search(r"reloaded (\d+)/(\d+) tensors", proc.stdout).groups()
    assert loaded == total  # every tensor of the model came from the checkpoint


def test_inat_train_and_eval_with_8142_classes(data, tmp_path):
    # 8142 classes: the original's evaluation crashed on its 1000-column accumulator (quirk 11)
    proc = run(["bash", "sh/Inat_train_R50.sh", *SMALL_ARCH, *TINY], tmp_path, env=_env(data, "inat"))
    assert "final top-1:" in proc.stdout


def test_places_train_then_eval(data, tmp_path):
    env = {**_env(data, "places"), "TORCH_WEIGHTS": str(data / "resnet18_torchvision.pth")}
    proc = run(["bash", "sh/PlacesLT_train_R152.sh", *SMALL_ARCH, *TINY, "--epochs", "2"], tmp_path, env=env)
    # trained past epoch 0 and saved (the original died after the first evaluation, quirk 12)
    assert "reloaded" in proc.stdout and "epoch 1:" in proc.stdout
    mark = "R152_mocot0.2_augsim_sim_30epochs_lr0.02_t1"
    ckpt = run_dir(tmp_path, mark) / "moco_ckpt.pth.tar"
    assert_original_layout(ckpt, epochs_done=2)
    proc = run(["bash", "sh/PlacesLT_eval_R152.sh", *SMALL_ARCH, *TINY, "--mark", "eval"], tmp_path,
               env={**_env(data, "places"), "RELOAD": str(ckpt)})
    assert "reloaded" in proc.stdout and "top-1:" in proc.stdout


@pytest.mark.parametrize("imb", ["0.01", "0.02", "0.1"])
def test_cifar_train(imb, data, tmp_path):
    tiny = [a for a in TINY if a not in ("--image-size", "32")]
    proc = run(["bash", f"sh/CIFAR100_train_imb{imb}.sh", *tiny], tmp_path, env={"DATA": str(data / "cifar")})
    assert "initial top-1:" in proc.stdout and "final top-1:" in proc.stdout
    (ckpt,) = (tmp_path / "paco").glob("*/moco_ckpt.pth.tar")
    assert_original_layout(ckpt, epochs_done=1)


@pytest.mark.parametrize("arch", ["resnet50", "resnet101", "resnet200"])
def test_full_imagenet_train_then_eval(arch, data, tmp_path):
    env = {"DATA": str(data / "imagenet_full")}
    mark = "paco_r50_fullImageNet" if arch == "resnet50" else f"paco_{arch.replace('resnet', 'r')}_fullImageNet"
    run(["bash", f"sh/train_{arch}.sh", "-a", "resnet18", *TINY], tmp_path, env=env)
    ckpt = run_dir(tmp_path, mark, full=True) / "moco_ckpt.pth.tar"
    assert_original_layout(ckpt, epochs_done=1)
    proc = run(["bash", f"sh/eval_{arch}.sh", "-a", "resnet18", *TINY, "--mark", "eval"], tmp_path,
               env={**env, "RELOAD": str(ckpt)})
    assert "reloaded" in proc.stdout and "top-1:" in proc.stdout


def test_train_sh_runs_short(tmp_path):
    # one training batch (CL_SHORT_RUN) and one evaluation batch (CL_SHORT_EVAL): the fast path's bfloat16 autocast
    # is ~16x slower than float32 on this CPU (the lines are checked here, not their values)
    proc = run(["bash", "sh/train.sh", "--epochs", "1", "-b", "32", "--moco-k", "256", *FAST_PATH_FLAGS], tmp_path,
               env={"CL_SHORT_RUN": "1", "CL_SHORT_EVAL": "1"})
    assert "initial top-1:" in proc.stdout and "final top-1:" in proc.stdout
    d = run_dir(tmp_path, "digits_default")
    assert (d / "moco_ckpt.pth.tar").is_file() and (d / "digits_default.log").is_file()
    assert_fast_path_args(d / "moco_ckpt.pth.tar", amp_key="fp16")
    assert list(d.glob("events.out.tfevents*"))


@pytest.mark.parametrize("script,submitted_from", [("ImageNetLT_train_X101.sh", ""), ("PlacesLT_eval_R152.sh", "sh"),
                                                   ("CIFAR100_train_imb0.1.sh", "")])
def test_sbatch_spool_copy_finds_its_helpers(script, submitted_from, tmp_path):
    """sbatch runs a copy of the script from SLURM's spool directory, where its helper scripts are not: it then finds
    paco/sh/ from SLURM_SUBMIT_DIR (paco/ or paco/sh/), and without it stops with one line saying where to submit."""
    spool = tmp_path / "spool"
    spool.mkdir()
    copy = shutil.copy(PACO_DIR / "sh" / script, spool / "slurm_script")
    env = {k: v for k, v in os.environ.items() if k != "SLURM_SUBMIT_DIR"}
    proc = subprocess.run(["bash", copy, "--help"], cwd=spool, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: paco/sh/ not found; submit from paco/: cd paco && sbatch sh/<this script>.sh"]
    env["SLURM_SUBMIT_DIR"] = str(PACO_DIR / submitted_from)
    proc = subprocess.run(["bash", copy, "--help"], cwd=spool, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: paco_"), proc.stderr[-2000:]
