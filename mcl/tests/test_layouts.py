"""Checkpoints out in the original's layouts, the original's files in (spec §g, §h; issue 16), and the one save path.

Expected key layouts are written down from the spec (the original's save code):
* ``main_cifar.py`` / ``main_imagenet.py``: ``<checkpoint-dir>/<arch>.pth.tar`` = {net (the wrapper's state dict,
  no DataParallel prefix), acc, epoch (index of the finished epoch), optimizer}, copied to ``<arch>_best.pth.tar``;
* ``main_moco_mcl.py``: ``<checkpoint>/checkpoint_{epoch:04d}.pth.tar`` (epoch index: 0000 after epoch 0) =
  {epoch (epoch + 1), arch, state_dict (DDP: ``module.`` + encoder_q_<i> / encoder_k_<i> / queue / queue_ptr),
  optimizer (SGD over every parameter of the model)};
* ``main_lincls.py``: ``lincls_mcl_checkpoint_{epoch:04d}.pth.tar`` = {epoch, arch, state_dict (``module.`` +
  the torchvision-style network), best_acc1, optimizer} and ``model_best.pth.tar``.
Beside them every file holds this project's keys (what ``common.engine`` adds and the method's extras).
"""
import argparse
import re
import sys

import pytest
import torch

from mcl.tests.helpers import run

pytestmark = pytest.mark.slow
OURS = {"run_flags", "global_step", "rng_state", "code_version", "args"}
SUPERVISED_ORIGINAL = {"net", "acc", "epoch", "optimizer"}
MOCO_ORIGINAL = {"epoch", "arch", "state_dict", "optimizer"}
LINCLS_ORIGINAL = {"epoch", "arch", "state_dict", "best_acc1", "optimizer"}
CIFAR = ["--max-iters", "2", "--batch-size", "8", "--num-workers", "0", "--no-progress", "--image-size", "16",
         "--alpha", "0.1", "--gamma", "1", "--beta", "0.1", "--lam", "1", "--feat-dim", "16", "--arch",
         "ShuffleNetV2_05x", "--dataset", "cifar100"]
MOCO = ["-a", "resnet20_option_a", "--image-size", "32", "--batch-size", "4", "--moco-k", "8", "--moco-dim", "16",
        "--workers", "0", "--max-iters", "1", "--no-progress", "--seed", "0"]
LINCLS = ["-a", "resnet20_option_a", "--image-size", "32", "--resize", "36", "--batch-size", "4", "--num-classes", "3",
          "--workers", "0", "--max-iters", "1", "--no-progress", "--seed", "0"]


def load(path):
    return torch.load(path, weights_only=True, map_location="cpu")   # no pickled objects in any file


def originals(tmp_path):
    """Where the entry points publish the original's output folder in tests (``CL_ORIGINAL_OUTPUTS``)."""
    return tmp_path / "original_outputs" / "mcl" / "checkpoint"


def env(tmp_path):
    return {"CL_ORIGINAL_OUTPUTS": tmp_path / "original_outputs"}


def mcl_wrapper(arch, num_classes, number_net, rep_size=32, feat_dim=16):
    from mcl.builder import SupervisedMCL
    from mcl.losses.cifar_sup_mcl_loss import SupMCLLoss
    from mcl.models import get_model
    net = get_model(arch, num_classes, number_net)
    rep_dims = [e.shape[1] for e in net.eval()(torch.zeros(1, 3, rep_size, rep_size))[1]]
    return net, SupervisedMCL(net, SupMCLLoss(rep_dims, feat_dim, 0.1, 3.0))


def test_nan_weights_under_net_are_refused_and_the_previous_file_kept(tmp_path, monkeypatch):
    """The bug of the old save path: it checked only ``state_dict``; MCL saves its networks under ``net``."""
    from common.engine import Run
    from common.utils import UserError
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path))
    net, model = mcl_wrapper("resnet32", 10, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    args = argparse.Namespace(arch="resnet32", init_lr=0.1, name="nan", auto_resume=True)
    with Run.open("mcl", args, name="nan") as r:
        good = {"net": net.state_dict(), "acc": 1.0, "epoch": 0, "optimizer": optimizer.state_dict()}
        path = r.save(good, "resnet32.pth.tar")
        before = open(path, "rb").read()
        bad_net = {k: v.clone() for k, v in net.state_dict().items()}
        bad_net["module_list.1.classifier.weight"][0, 0] = float("nan")
        with pytest.raises(UserError, match=r"NaN / inf weights.*net\.module_list\.1\.classifier\.weight"):
            r.save({**good, "net": bad_net, "epoch": 1}, "resnet32.pth.tar", is_best=True,
                   best_name="resnet32_best.pth.tar")
        assert open(path, "rb").read() == before
        assert not (tmp_path / "mcl" / "nan" / "resnet32_best.pth.tar").exists()


def test_cifar_layout_readme_chain_and_original_checkpoint(tmp_path, cifar100_root):
    from mcl.models import get_model
    base = [sys.executable, "main_cifar.py", "--data", cifar100_root, *CIFAR]
    run(base + ["--epochs", "1", "--name", "lay"], tmp_path, env=env(tmp_path))
    state = load(tmp_path / "mcl" / "lay" / "ShuffleNetV2_05x.pth.tar")
    assert set(state) == SUPERVISED_ORIGINAL | OURS | {"criterion", "best_acc", "scaler"}
    assert state["epoch"] == 0                                   # the index of the finished epoch
    assert set(state["net"]) == set(get_model("ShuffleNetV2_05x", 100, 2).state_dict())   # no 'module.' prefix
    best = load(tmp_path / "mcl" / "lay" / "ShuffleNetV2_05x_best.pth.tar")
    assert set(best) == set(state)
    # the original's ./checkpoint/: its --evaluate default (./checkpoint/<arch>_best.pth.tar) reads it as typed
    assert (originals(tmp_path) / "ShuffleNetV2_05x.pth.tar").is_file()
    _, out = run(base + ["--evaluate"], tmp_path, env=env(tmp_path))
    assert "ShuffleNetV2_05x_best.pth.tar" in out and re.search(r"^top-1: \d+\.\d\d$", out, re.M)

    # a file in the original's layout (no heads, no bookkeeping) resumes at epoch + 1 with heads re-initialised
    net, model = mcl_wrapper("ShuffleNetV2_05x", 100, 2, rep_size=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    original = tmp_path / "orig_ShuffleNetV2_05x.pth.tar"
    torch.save({"net": net.state_dict(), "acc": 12.5, "epoch": 0, "optimizer": optimizer.state_dict()}, original)
    _, out = run(base + ["--epochs", "2", "--name", "from_original", "--resume", "--resume-checkpoint", original],
                 tmp_path, env=env(tmp_path))
    assert re.search(r"resumed from .*orig_ShuffleNetV2_05x.pth.tar' at epoch 1", out)
    assert "start fresh" in out and "final top-1:" in out
    assert load(tmp_path / "mcl" / "from_original" / "ShuffleNetV2_05x.pth.tar")["epoch"] == 1
    # the original's --evaluate of an original file
    _, out = run(base + ["--evaluate", "--evaluate-checkpoint", original], tmp_path, env=env(tmp_path))
    assert re.search(r"^top-1: \d+\.\d\d$", out, re.M)


def test_imagenet_layout(tmp_path, imagenet_root):
    from mcl.models import get_model
    run([sys.executable, "main_imagenet.py", "--data", imagenet_root, "--arch", "resnet18", "--image-size", "32",
         "--resize", "36", "--batch-size", "4", "--neg_k", "4", "--num-workers", "0", "--epochs", "1", "--max-iters",
         "1", "--no-progress", "--feat-dim", "16", "--name", "lay"], tmp_path, env=env(tmp_path))
    state = load(tmp_path / "mcl" / "lay" / "resnet18.pth.tar")
    assert set(state) == SUPERVISED_ORIGINAL | OURS | {"criterion", "best_acc", "scaler"}
    assert state["epoch"] == 0 and set(state["net"]) == set(get_model("resnet18", 3, 2).state_dict())
    assert (originals(tmp_path) / "resnet18_best.pth.tar").is_file()


def moco_model(number_net=2):
    from mcl.main_moco_mcl import build_encoder
    from mcl.moco.builder_mcl import MoCo
    return MoCo(build_encoder("resnet20_option_a"), number_net, 16, 8, 0.999, 0.07, False)


def test_moco_and_lincls_layouts_readme_chain_and_original_checkpoints(tmp_path, imagenet_root):
    from common.backbones import build_backbone
    moco = [sys.executable, "main_moco_mcl.py", "--data", imagenet_root, *MOCO]
    run(moco + ["--epochs", "1", "--name", "lay"], tmp_path, env=env(tmp_path))
    state = load(tmp_path / "mcl" / "lay" / "checkpoint_0000.pth.tar")      # after epoch 0: 0000
    assert set(state) == MOCO_ORIGINAL | OURS | {"scaler"}
    model = moco_model()
    assert state["epoch"] == 1 and state["arch"] == "resnet20_option_a"
    assert set(state["state_dict"]) == {"module." + k for k in model.state_dict()}
    # the original's SGD is over every parameter (key encoders included): same optimizer layout
    assert len(state["optimizer"]["param_groups"][0]["params"]) == len(list(model.parameters()))

    # the README's next command, as typed: main_lincls.py --pretrained ./checkpoint/checkpoint_<epoch>.pth.tar
    published = originals(tmp_path) / "checkpoint_0000.pth.tar"
    assert published.is_file()
    lincls = [sys.executable, "main_lincls.py", "--data", imagenet_root, *LINCLS]
    _, out = run(lincls + ["--epochs", "1", "--pretrained", published, "--name", "lay_lincls"], tmp_path, env=env(tmp_path))
    assert "final top-1:" in out
    state = load(tmp_path / "mcl" / "lay_lincls" / "lincls_mcl_checkpoint_0000.pth.tar")
    assert set(state) == LINCLS_ORIGINAL | OURS
    backbone = build_backbone("resnet20_option_a", num_classes=3)
    assert state["epoch"] == 1 and set(state["state_dict"]) == {"module." + k for k in backbone.state_dict()}
    assert (tmp_path / "mcl" / "lay_lincls" / "model_best.pth.tar").is_file()
    assert (originals(tmp_path) / "model_best.pth.tar").is_file()

    # the original's MoCo-MCL checkpoint (torch.save of its dict, SGD over all parameters) resumes here ...
    torch.manual_seed(0)
    model = moco_model()
    optimizer = torch.optim.SGD(model.parameters(), 0.03, momentum=0.9, weight_decay=1e-4)
    original = tmp_path / "orig_checkpoint_0000.pth.tar"
    torch.save({"epoch": 1, "arch": "resnet20_option_a", "optimizer": optimizer.state_dict(),
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, original)
    _, out = run(moco + ["--epochs", "2", "--name", "from_original", "--resume", original], tmp_path,
                 env=env(tmp_path))
    assert "orig_checkpoint_0000.pth.tar' (epoch 1)" in out
    assert load(tmp_path / "mcl" / "from_original" / "checkpoint_0001.pth.tar")["epoch"] == 2
    assert not (tmp_path / "mcl" / "from_original" / "checkpoint_0000.pth.tar").exists()
    # ... and evaluates in main_lincls.py
    _, out = run(lincls + ["--epochs", "1", "--pretrained", original, "--name", "lincls_of_original"], tmp_path,
                 env=env(tmp_path))
    assert "final top-1:" in out

    # the original's lincls checkpoint resumes (quirk 13 fixed) and evaluates (-e, quirk 11 fixed)
    backbone = build_backbone("resnet20_option_a", num_classes=3)
    fc = torch.optim.SGD([backbone.fc.weight, backbone.fc.bias], 30.0, momentum=0.9)
    original_lincls = tmp_path / "orig_lincls_mcl_checkpoint_0000.pth.tar"
    torch.save({"epoch": 1, "arch": "resnet20_option_a", "best_acc1": 10.0, "optimizer": fc.state_dict(),
                "state_dict": {"module." + k: v for k, v in backbone.state_dict().items()}}, original_lincls)
    _, out = run(lincls + ["--epochs", "2", "--resume", original_lincls, "--name", "lincls_resumed"], tmp_path,
                 env=env(tmp_path))
    assert "(epoch 1)" in out and "final top-1:" in out
    assert load(tmp_path / "mcl" / "lincls_resumed" / "lincls_mcl_checkpoint_0001.pth.tar")["epoch"] == 2
    _, out = run(lincls + ["-e", "--resume", original_lincls], tmp_path, env=env(tmp_path))
    assert re.search(r"^top-1: \d+\.\d\d$", out, re.M)
