"""Checkpoints out and in, in the original's layouts (spec §g.1–§g.3, §h).

Out: every file an entry point writes has exactly the original's top-level keys (plus this project's bookkeeping)
and the original's state-dict key names: ``module.``-prefixed DDP keys for the pre-trainings and the linear
evaluations (the originals' ``main_lincls.py`` select ``module.encoder_q.*`` / ``module.base_encoder.*`` by that
prefix), the bare encoder for the small-scale ``encoder.pth``; kept files named ``checkpoint_%04d`` of the 0-based
epoch. In: files built in the original's layout (no bookkeeping keys) resume / evaluate here.

The entry points run in-process (one process, no process group) on tiny data.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

OURS = {"run_flags", "global_step", "rng_state", "code_version", "args"}
SMALL_FLAGS = ["--dataset", "cifar10", "--image-size", "16", "--arch", "resnet20_option_a", "--Ns", "8", "--Ny", "1",
               "--max-iters", "1", "--num_workers", "0", "--monitor", "none", "--no-progress", "--epochs", "1"]
LARGE_FLAGS = ["-a", "resnet18", "--Ns", "4", "--Ny", "1", "--moco-k", "8", "--moco-dim", "16", "--image-size", "32",
               "--max-iters", "1", "-j", "0", "--no-progress", "--seed", "0"]
V3_FLAGS = ["-a", "resnet18", "-b", "4", "--image-size", "32", "--moco-dim", "16", "--moco-mlp-dim", "32",
            "--max-iters", "1", "-j", "0", "--warmup-epochs", "0", "--no-progress", "--no-amp", "--seed", "0"]
LINCLS_FLAGS = ["-a", "resnet18", "-b", "4", "-j", "0", "--image-size", "32", "--max-iters", "1", "--no-progress",
                "--seed", "0"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CL_ORIGINAL_OUTPUTS", str(tmp_path / "original_outputs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def only_file(pattern: str, root: Path) -> Path:
    (found,) = list(root.glob(pattern))
    return found


def original_file(state: dict, keys) -> dict:
    """``state`` as the original wrote it: only its own top-level keys (no run flags, RNG, step count)."""
    return {k: state[k] for k in keys}


# ------------------------------------------------------------------------------------------------ small scale
def test_small_scale_files_and_original_encoder(runs, fake_data, capsys):
    from cacr.small_scale_experiments import main_ours
    from cacr.small_scale_experiments.encoder import build_encoder
    encoder = main_ours.main(["--data_folder", fake_data["cifar"], *SMALL_FLAGS, "--name", "layout"])
    run_dir = runs / "runs" / "cacr" / "layout"
    expected = set(build_encoder("resnet20_option_a", 128, 16).state_dict())

    # encoder.pth: the original's only file, the bare encoder's state dict (linear_eval.py of the original loads it)
    exported = load(run_dir / "encoder.pth")
    assert set(exported) == expected
    # ... also where the original wrote it (results/ of the dataset folder it ran in)
    published = only_file("cifar10/results/ours/Ny1_Ns8/*_with_imbalanced_False/encoder.pth",
                          runs / "original_outputs")
    assert set(load(published)) == expected

    # checkpoint.pth.tar: ours (the original has no resume): the encoder's keys, what a resume needs
    state = load(run_dir / "checkpoint.pth.tar")
    assert set(state) == {"epoch", "state_dict", "optimizer", "scaler", "scheduler"} | OURS
    assert set(state["state_dict"]) == expected and state["epoch"] == 1
    assert all(torch.equal(v, encoder.state_dict()[k].cpu()) for k, v in exported.items())

    # the original's encoder.pth is no training state: one error naming the file and the way to use it
    from common.utils import UserError
    with pytest.raises(UserError, match="encoder.pth.*linear_eval.py --encoder_checkpoint"):
        main_ours.main(["--data_folder", fake_data["cifar"], *SMALL_FLAGS, "--name", "again", "--epochs", "2",
                        "--resume", str(run_dir / "encoder.pth")])

    # linear_eval.py evaluates the original-layout file, given relative to the dataset folder as in the README
    from cacr.small_scale_experiments import linear_eval
    relative = os.path.relpath(published, runs / "original_outputs" / "cifar10")
    acc = linear_eval.main(["--dataset", "cifar10", "--data_folder", fake_data["cifar"], "--encoder_checkpoint",
                            relative, "--arch", "resnet20_option_a", "--image-size", "16", "--epochs", "1",
                            "--max-iters", "1", "--batch_size", "8", "--num_workers", "0", "--no-progress",
                            "--device", "cpu"])
    assert 0 <= acc <= 100 and "final linear top-1" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ large scale
def large_model_keys():
    from common.backbones import build_backbone
    from cacr.large_scale_shift_experiments.imagenet.ours.builder import MoCo
    model = MoCo(lambda num_classes: build_backbone("resnet18", num_classes=num_classes), 16, 8, 0.999, False, 1,
                 1.0, 1.0, 3.0, 3.0, 0.1, False, True, True)
    return {"module." + k for k in model.state_dict()}


def test_large_scale_pretrain_and_lincls_layouts(runs, fake_data):
    from cacr.large_scale_shift_experiments.imagenet import main_ours
    from cacr.imagenet_pretraining import main_lincls
    main_ours.main([fake_data["imagenet"], *LARGE_FLAGS, "--epochs", "2", "--interval", "1"])
    run_dir = only_file("runs/cacr/ours/*/resnet18/*", runs)
    # the original's numbering: checkpoint_%04d of the 0-based epoch (200 epochs end with checkpoint_0199)
    assert sorted(p.name for p in run_dir.glob("checkpoint*.pth.tar")) == \
        ["checkpoint.pth.tar", "checkpoint_0000.pth.tar", "checkpoint_0001.pth.tar"]
    last = load(run_dir / "checkpoint_0001.pth.tar")
    assert set(last) == {"epoch", "arch", "state_dict", "optimizer", "scaler"} | OURS
    assert last["epoch"] == 2 and last["arch"] == "resnet18"
    assert set(last["state_dict"]) == large_model_keys()      # module.encoder_q..., module.queue ...
    # ... also where the original wrote it (results/ of imagenet/), which its README's main_lincls.py reads
    published = only_file("imagenet/results/ours/imagenet/resnet18/*/checkpoint_0001.pth.tar",
                          runs / "original_outputs")
    assert set(load(published)["state_dict"]) == large_model_keys()

    # --resume of the original's file (its keys only) continues it
    original = run_dir.parent / "original_checkpoint_0000.pth.tar"
    torch.save(original_file(load(run_dir / "checkpoint_0000.pth.tar"), ("epoch", "arch", "state_dict",
                                                                        "optimizer")), original)
    main_ours.main([fake_data["imagenet"], *LARGE_FLAGS, "--epochs", "2", "--interval", "1", "--resume",
                    str(original)])
    assert load(run_dir / "checkpoint.pth.tar")["epoch"] == 2

    # linear evaluation of the original-layout file: its own files in the original's layout next to it
    main_lincls.main([fake_data["imagenet"], *LINCLS_FLAGS, "--epochs", "1", "--pretrained", str(original)],
                     variant="large")
    out = original.parent / "lincls" / original.name / "b4_lr30_e60,80,1"
    state = load(out / "checkpoint.pth.tar")
    assert set(state) == {"epoch", "arch", "state_dict", "best_acc1", "optimizer", "acc1", "acc5"} | OURS
    from common.backbones import build_backbone
    assert set(state["state_dict"]) == {"module." + k for k in build_backbone("resnet18", num_classes=3).state_dict()}


# ------------------------------------------------------------------------------------------------ MoCo v3
def test_moco_v3_pretrain_and_lincls_layouts(runs, fake_data):
    from cacr.imagenet_pretraining import main_lincls, main_pretrain
    out = runs / "output_dir"
    main_pretrain.main([fake_data["imagenet"], *V3_FLAGS, "--epochs", "2", "--save-freq", "1",
                        "--output_dir", str(out)])
    assert sorted(p.name for p in out.glob("checkpoint*.pth.tar")) == \
        ["checkpoint.pth.tar", "checkpoint_0000.pth.tar", "checkpoint_0001.pth.tar"]
    last = load(out / "checkpoint_0001.pth.tar")
    assert set(last) == {"epoch", "arch", "state_dict", "optimizer", "scaler"} | OURS and last["epoch"] == 2
    args = main_pretrain.get_parser().parse_args([fake_data["imagenet"], *V3_FLAGS])
    model_keys = {"module." + k for k in main_pretrain.build_model(args).state_dict()}
    assert set(last["state_dict"]) == model_keys        # module.base_encoder..., module.momentum_encoder...
    assert any(k.startswith("module.base_encoder.") for k in model_keys)

    # --resume of the original's file (epoch, arch, state_dict, optimizer, scaler) continues it
    original = runs / "original_v3.pth.tar"
    torch.save(original_file(load(out / "checkpoint_0000.pth.tar"),
                             ("epoch", "arch", "state_dict", "optimizer", "scaler")), original)
    main_pretrain.main([fake_data["imagenet"], *V3_FLAGS, "--epochs", "2", "--save-freq", "1",
                        "--output_dir", str(runs / "resumed"), "--resume", str(original)])
    assert load(runs / "resumed" / "checkpoint.pth.tar")["epoch"] == 2

    # linear evaluation of the original-layout file (module.base_encoder.*), checkpoint in the original's layout
    lincls_out = runs / "lincls"
    main_lincls.main([fake_data["imagenet"], *LINCLS_FLAGS, "--epochs", "1", "--pretrained", str(original),
                      "--output_dir", str(lincls_out)])
    state = load(lincls_out / "checkpoint.pth.tar")
    assert set(state) == {"epoch", "arch", "state_dict", "best_acc1", "optimizer", "acc1", "acc5"} | OURS
    assert all(k.startswith("module.") for k in state["state_dict"])
    # ... and --resume of the original's linear-evaluation file (its keys only) continues it
    original_lincls = runs / "original_lincls.pth.tar"
    torch.save(original_file(state, ("epoch", "arch", "state_dict", "best_acc1", "optimizer")), original_lincls)
    main_lincls.main([fake_data["imagenet"], *LINCLS_FLAGS, "--epochs", "2", "--pretrained", str(original),
                      "--output_dir", str(runs / "lincls_resumed"), "--resume", str(original_lincls)])
    assert load(runs / "lincls_resumed" / "checkpoint.pth.tar")["epoch"] == 2
