"""Every sh/*.sh end to end for one or two iterations on tiny generated data in the script's real format."""
import glob
import sys
import re

import pytest
import torch

from ci.smoke import FAST_PATH_FLAGS, assert_fast_path_args
from mcl.tests.helpers import free_port, run

pytestmark = pytest.mark.slow
TINY_CIFAR = ["--epochs", "1", "--max-iters", "2", "--batch-size", "8", "--num-workers", "0", "--no-progress"]
TINY_IMAGENET = ["--image-size", "32", "--resize", "36", "--batch-size", "4", "--no-progress"]


def test_train_sh_default_prints_initial_and_final(tmp_path):
    # the real default run is measured in README.md; here: the same script, two iterations
    _, out = run(["bash", "sh/train.sh", "--epochs", "1", "--max-iters", "2", "--no-progress", *FAST_PATH_FLAGS],
                 tmp_path)
    assert re.search(r"^initial top-1: \d+\.\d\d$", out, re.M)
    assert re.search(r"^final top-1: \d+\.\d\d$", out, re.M)
    run_dir = tmp_path / "mcl" / "digits_resnet32_mcl_x2"
    assert (run_dir / "resnet32.pth.tar").is_file() and (run_dir / "log.txt").is_file()
    assert glob.glob(str(run_dir / "events.out.tfevents.*"))
    assert_fast_path_args(run_dir / "resnet32.pth.tar")


def test_train_cifar_baseline_sh(tmp_path, cifar100_root):
    _, out = run(["bash", "sh/train_cifar_baseline.sh", *TINY_CIFAR], tmp_path,
                 env={"DATA": cifar100_root, "ARCHS": "resnet32"})
    assert "final top-1:" in out
    state = torch.load(next((tmp_path / "mcl").glob("*/resnet32.pth.tar")), weights_only=False)
    assert state["args"]["alpha"] == 0 and state["args"]["number_net"] == 2


def test_train_cifar_mcl_sh_n2_and_n4(tmp_path, cifar100_root):
    _, out = run(["bash", "sh/train_cifar_mcl.sh", *TINY_CIFAR, "--feat-dim", "16"], tmp_path,
                 env={"DATA": cifar100_root, "ARCHS": "ShuffleNetV2_05x", "NUMBER_NETS": "2 4"})
    assert out.count("final top-1:") == 2
    assert "loss_icl" in out


def test_train_cifar_mcl_logit_sh(tmp_path, cifar100_root):
    _, out = run(["bash", "sh/train_cifar_mcl_logit.sh", *TINY_CIFAR, "--max-iters", "1"], tmp_path,
                 env={"DATA": cifar100_root, "ARCHS": "ShuffleNetV2_1x"})
    assert "final top-1:" in out and "'logit_distill': True" in out


def test_train_imagenet_mcl_sh(tmp_path, imagenet_root):
    _, out = run(["bash", "sh/train_imagenet_mcl.sh", *TINY_IMAGENET, "--epochs", "1", "--max-iters", "2",
                  "--neg_k", "8", "--num-workers", "0", "--amp", "--channels-last"], tmp_path,
                 env={"DATA": imagenet_root, "ARCHS": "resnet18", "NUMBER_NETS": "4"})
    assert "final top-1:" in out
    state = torch.load(next((tmp_path / "mcl").glob("*/resnet18.pth.tar")), weights_only=False)
    assert state["criterion"]["contrast_memory.memory"].shape == (4, 12, 128)  # memory saved (quirk 15)


def test_moco_mcl_then_lincls_sh(tmp_path, imagenet_root):
    run(["bash", "sh/train_moco_mcl.sh", "--image-size", "32", "--batch-size", "4", "--moco-k", "16",
         "--moco-dim", "16", "--epochs", "1", "--max-iters", "2", "--workers", "0", "--no-progress",
         "--dist-url", f"tcp://127.0.0.1:{free_port()}", "--dist-backend", "gloo", *FAST_PATH_FLAGS], tmp_path,
        env={"DATA": imagenet_root})
    (ckpt,) = (tmp_path / "mcl").glob("moco_mcl_resnet18_n2-*/checkpoint_0000.pth.tar")
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 1 and state["state_dict"]["module.queue"].shape == (2, 16, 16)
    assert (ckpt.parent / "imagenet_resnet18_moco.txt").is_file()  # quirk 9 fixed
    _, out = run(["bash", "sh/train_lincls.sh", *TINY_IMAGENET, "--epochs", "1", "--max-iters", "2",
                  "--workers", "0", "--num-classes", "3", "--dist-url", f"tcp://127.0.0.1:{free_port()}",
                  "--dist-backend", "gloo"], tmp_path, env={"DATA": imagenet_root, "PRETRAINED": ckpt})
    assert "final top-1:" in out
    (best,) = (tmp_path / "mcl").glob("lincls_mcl_resnet18-*/model_best.pth.tar")
    # -e/--evaluate works (quirk 11) and --resume loads a lincls checkpoint (quirk 13)
    _, out = run([sys.executable, "main_lincls.py", "-a", "resnet18", "-e", "--resume", best, "--data", imagenet_root,
                  *TINY_IMAGENET, "--workers", "0", "--num-classes", "3"], tmp_path)
    assert re.search(r"^top-1: \d+\.\d\d$", out, re.M)
