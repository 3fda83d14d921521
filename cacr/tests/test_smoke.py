"""Every sh/*.sh script end to end for 1–2 iterations on tiny generated data in the script's real format.

Sizes are overridden with flags (tiny batch / image size / arch, --epochs 1, --max-iters). Scripts that depend on a
checkpoint run after the one producing it (same module, pytest keeps file order).
"""
from __future__ import annotations

import glob
import os
import re

import pytest
import torch

from ci.smoke import FAST_PATH_FLAGS, assert_fast_path_args, scratch_dir

pytestmark = pytest.mark.slow

SMALL = ["--epochs", "1", "--max-iters", "2", "--Ns", "8", "--Ny", "1", "--num_workers", "0", "--monitor", "none",
         "--no-progress"]
LARGE = ["-a", "resnet18", "--Ns", "4", "--Ny", "1", "--moco-k", "8", "--moco-dim", "16", "--image-size", "32",
         "--epochs", "1", "--max-iters", "1", "-j", "0", "--no-progress"]
PRETRAIN = ["-b", "4", "--image-size", "32", "--moco-dim", "16", "--moco-mlp-dim", "32", "--epochs", "1",
            "--max-iters", "1", "-j", "0", "--warmup-epochs", "0", "--no-progress"]
STATE = {}


def test_train_sh_digits_default(cacr_run, runs_dir):
    # batch 16 (--Ns), not 128: the fast path's bfloat16 autocast is ~16x slower than float32 on this CPU
    out = cacr_run(["bash", "sh/train.sh", "--epochs", "1", "--max-iters", "2", "--monitor-epochs", "5", "--Ns", "16",
                    "--num_workers", "0", "--name", "smoke_digits", *FAST_PATH_FLAGS]).stdout
    assert_fast_path_args(os.path.join(runs_dir, "cacr", "smoke_digits", "checkpoint.pth.tar"))
    initial = re.search(r"^initial (knn|linear) top-1: (\d+\.\d+)$", out, re.M)
    final = re.search(r"^final (knn|linear) top-1: (\d+\.\d+)$", out, re.M)
    assert initial and final and initial.start() < final.start(), out
    assert 0 <= float(final.group(2)) <= 100


@pytest.mark.parametrize("script,dataset,extra", [
    ("train_cifar10.sh", "cifar10", ["--imbalanced"]),
    ("train_cifar100.sh", "cifar100", []),
    ("train_stl10.sh", "stl10", []),
])
def test_small_scale_train(cacr_run, fake_data, runs_dir, script, dataset, extra):
    data = fake_data["stl10"] if dataset == "stl10" else fake_data["cifar"]
    name = f"smoke_{dataset}"
    cacr_run(["bash", f"sh/{script}", *SMALL, *extra, "--name", name], env={"DATA": data})
    encoder = os.path.join(runs_dir, "cacr", name, "encoder.pth")
    assert os.path.isfile(encoder)
    assert glob.glob(os.path.join(runs_dir, "cacr", name, "events.out.tfevents*"))
    STATE[dataset] = encoder


@pytest.mark.parametrize("dataset", ["cifar10", "stl10"])
def test_linear_eval_sh(cacr_run, fake_data, dataset):
    if dataset not in STATE:
        pytest.skip("needs the pre-training smoke run")
    data = fake_data["stl10"] if dataset == "stl10" else fake_data["cifar"]
    out = cacr_run(["bash", "sh/linear_eval.sh", "--epochs", "1", "--max-iters", "2", "--batch_size", "8",
                    "--num_workers", "0", "--no-progress", "--print_category_acc"],
                   env={"DATA": data, "DATASET": dataset, "ENCODER": STATE[dataset]}).stdout
    assert "Best acc" in out


@pytest.mark.parametrize("script,key", [("train_large_imagenet.sh", "imagenet"),
                                        ("train_large_webvision.sh", "webvision")])
def test_large_scale_train(cacr_run, fake_data, runs_dir, port, script, key):
    cacr_run(["bash", f"sh/{script}", *LARGE, "--amp", "--channels-last"],
             env={"DATA": fake_data[key], "GPUS": "0", "PORT": str(port)})
    ckpts = glob.glob(os.path.join(runs_dir, "cacr", "ours", "*", "resnet18", "*", "checkpoint.pth.tar"))
    assert ckpts
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    # the original's DDP layout, which its main_lincls.py selects by prefix
    assert "module.encoder_q.fc.0.weight" in state["state_dict"] and "module.queue" in state["state_dict"]
    STATE["large_ckpt"] = ckpts[0]


def test_lincls_large_sh(cacr_run, fake_data, port):
    if "large_ckpt" not in STATE:
        pytest.skip("needs the large-scale smoke run")
    out = cacr_run(["bash", "sh/lincls_large.sh", "-a", "resnet18", "-b", "4", "--image-size", "32", "--epochs", "1",
                    "--max-iters", "1", "-j", "0", "--no-progress"],
                   env={"DATA": fake_data["imagenet"], "GPUS": "0", "PORT": str(port),
                        "PRETRAINED": STATE["large_ckpt"]}).stdout
    assert "final linear top-1" in out


def test_create_imagenet100_sh(cacr_run, fake_data, tmp_path):
    classes = sorted(os.listdir(os.path.join(fake_data["imagenet"], "train")))[:2]
    (tmp_path / "list.txt").write_text("\n".join(classes) + "\n")
    subset = tmp_path / "subset"
    cacr_run(["bash", "sh/create_imagenet100.sh", "-s", tmp_path / "list.txt"],
             env={"DATA": fake_data["imagenet"], "SUBSET": str(subset)})
    assert sorted(os.listdir(subset / "train")) == classes and os.path.islink(subset / "val" / classes[0])


def test_pretrain_resnet50_sh(cacr_run, fake_data, tmp_path, port):
    out_dir = tmp_path / "r50"
    cacr_run(["bash", "sh/pretrain_resnet50.sh", "-a", "resnet18", *PRETRAIN, "--channels-last"],
             env={"DATA": fake_data["imagenet"], "OUT": str(out_dir), "PORT": str(port)})
    assert (out_dir / "checkpoint.pth.tar").is_file()


@pytest.fixture(scope="module")
def vit_checkpoint(request, cacr_run, fake_data, tmp_path_factory):
    """The ViT pre-training script's checkpoint (local crops), which the lincls, kNN and DeiT-export scripts read."""
    with scratch_dir(request, tmp_path_factory, "vit") as out_dir:
        cacr_run(["bash", "sh/pretrain_vit_base.sh", "-a", "vit_tiny", *PRETRAIN, "--use-local-crops",
                  "--local_crops_number", "2", "--local-crop-size", "16", "--use-full-mode"],
                 env={"DATA": fake_data["imagenet"], "OUT": str(out_dir),
                      "MASTER_PORT": str(__import__("random").randint(20000, 60000))})
        yield str(out_dir / "checkpoint.pth.tar")


def test_pretrain_vit_base_sh_local_crops(vit_checkpoint):
    assert os.path.isfile(vit_checkpoint)


def test_lincls_sh_vit(cacr_run, fake_data, tmp_path, port, vit_checkpoint):
    out = cacr_run(["bash", "sh/lincls.sh", "-b", "4", "--image-size", "32", "--epochs", "1", "--max-iters", "1",
                    "-j", "0", "--no-progress"],
                   env={"DATA": fake_data["imagenet"], "ARCH": "vit_tiny", "PRETRAINED": vit_checkpoint,
                        "OUT": str(tmp_path / "lincls"), "PORT": str(port)}).stdout
    assert "final linear top-1" in out


def test_knn_sh_vit(cacr_run, fake_data, tmp_path, vit_checkpoint):
    out = cacr_run(["bash", "sh/knn.sh", "--image-size", "32", "--nb_knn", "2", "4", "--num_workers", "0",
                    "--batch_size_per_gpu", "8"],
                   env={"DATA": fake_data["imagenet"], "ARCH": "vit_tiny", "PRETRAINED": vit_checkpoint,
                        "DUMP": str(tmp_path / "knn")}).stdout
    assert "final knn top-1" in out and (tmp_path / "knn" / "log.txt").is_file()


def test_convert_to_deit_sh(cacr_run, tmp_path, vit_checkpoint):
    out_path = tmp_path / "deit" / "vit.pth"
    cacr_run(["bash", "sh/convert_to_deit.sh"], env={"INPUT": vit_checkpoint, "OUTPUT": str(out_path)})
    model = torch.load(out_path, map_location="cpu", weights_only=False)["model"]
    assert "cls_token" in model and not any(k.startswith("head") for k in model)  # timm names (test_convert_to_deit)