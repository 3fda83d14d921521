"""Distributed: every multi-process entry point, launched as a user would (the README's --multiprocessing-distributed
flags, torchrun) with 2 gloo CPU processes, ends with the parameters, buffers and logged losses of 1 process with the
same global batch. small_scale_experiments/main_ours.py has no multi-process mode (nn.DataParallel in one process, as
the original)."""
from __future__ import annotations

import glob
import os

import pytest
import torch

from ci.smoke import assert_states_close, read_scalars, spawn_flags, to_single_process_order

pytestmark = pytest.mark.distributed


def test_moco_v3_torchrun_two_processes_equal_one(cacr_run, fake_data, tmp_path):
    """imagenet_pretraining/main_pretrain.py (MoCo-v3 style, ResNet with BN in the backbone, projector and
    predictor) under torchrun with 2 CPU processes = 1 process with the same global batch: parameters, BN
    buffers and the logged loss after 2 LARS steps. The original converts every BN to SyncBN in distributed
    mode, which would make the two equal; SyncBN has no CPU kernel, so here each process would normalise its own
    half and the test freezes BN (--freeze-bn) instead. The keys are gathered across processes for the global
    N x M logits with labels offset by rank: a wrong offset or a missing gather changes the loss."""
    flags = ["imagenet_pretraining/main_pretrain.py", "-a", "resnet18", "-b", "4", "--image-size", "32",
             "--moco-dim", "8", "--moco-mlp-dim", "16", "--epochs", "1", "--max-iters", "2", "-j", "0",
             "--warmup-epochs", "0", "--no-progress", "-p", "1", "--seed", "0", "--no-amp", "--freeze-bn",
             "--lr", "2.0"]
    cacr_run([*flags, "--output_dir", tmp_path / "single", fake_data["imagenet"]])
    cacr_run(["torchrun", "--standalone", "--nproc_per_node=2", *flags, "--output_dir", tmp_path / "torchrun",
              fake_data["imagenet"]])
    single, two = (torch.load(tmp_path / name / "checkpoint.pth.tar", map_location="cpu", weights_only=False)
                   for name in ("single", "torchrun"))
    assert two["args"]["world_size"] == 2
    assert_states_close(single["state_dict"], two["state_dict"], rtol=1e-4, atol=1e-5)
    base_fc = next(k for k in single["state_dict"] if "base_encoder.fc" in k and k.endswith("weight"))
    assert not torch.allclose(single["state_dict"][base_fc],
                              single["state_dict"][base_fc.replace("base_encoder", "momentum_encoder")])  # trained
    logged = [read_scalars(tmp_path / name)["train/loss"] for name in ("single", "torchrun")]
    torch.testing.assert_close(logged[1], logged[0], rtol=1e-4, atol=1e-5)


def test_large_scale_two_processes_equal_one(cacr_run, fake_data, tmp_path):
    """large_scale_shift_experiments/imagenet/main_ours.py with the README launch flags on 2 CPU processes (mp.spawn,
    gloo) = 1 process with the same global batch: parameters, queue and logged losses after 2 steps.

    Two settings make the computation defined for any number of processes: --freeze-bn (the queries use
    per-process BN and the keys shuffle-BN, a random regrouping of the key batch, by design) and
    --moco-unif-no-intra-batch (the in-batch repulsion is over each process's own slice in the original, so it
    changes with the number of processes). The key shuffle / unshuffle across processes and the queue gather
    still run: a key put back at the wrong place, or a lost process's keys, change the result."""
    flags = ["large_scale_shift_experiments/imagenet/main_ours.py", "-a", "resnet20_option_a", "--Ns", "4", "--Ny",
             "1", "--moco-k", "16", "--moco-dim", "8", "--image-size", "16", "--epochs", "1", "--max-iters", "2",
             "-j", "0", "--no-progress", "-p", "1", "--seed", "0", "--lr", "0.5", "--freeze-bn",
             "--moco-unif-no-intra-batch"]
    cacr_run([*flags, "--output_folder", tmp_path / "single", fake_data["imagenet"]])
    cacr_run([*flags, *spawn_flags(2), "--output_folder", tmp_path / "spawn", fake_data["imagenet"]])
    run_dirs = [glob.glob(os.path.join(tmp_path, name, "runs", "cacr", "ours", "*", "resnet20_option_a", "*"))
                for name in ("single", "spawn")]
    assert all(len(d) == 1 for d in run_dirs), run_dirs
    single, two = (torch.load(os.path.join(d[0], "checkpoint.pth.tar"), map_location="cpu",
                              weights_only=False)["state_dict"] for d in run_dirs)
    key = next(k for k in single if k.endswith("queue"))
    assert int(single[key + "_ptr"]) == int(two[key + "_ptr"]) == 8  # 2 steps x global batch 4 enqueued
    two[key] = to_single_process_order(two[key], 4, 2, filled=8, dim=-1)
    assert_states_close(single, two, rtol=1e-4, atol=1e-5)
    q_fc = next(k for k in single if "encoder_q" in k and k.endswith("fc.weight"))
    assert not torch.allclose(single[q_fc], single[q_fc.replace("encoder_q", "encoder_k")])  # it trained
    logged = [read_scalars(d[0]) for d in run_dirs]
    for tag in ("train/loss", "train/loss1", "train/loss2"):
        torch.testing.assert_close(logged[1][tag], logged[0][tag], rtol=1e-4, atol=1e-5, msg=tag)


@pytest.mark.parametrize("pretrained", [True, False], ids=["pretrained", "random_init"])
def test_knn_torchrun_two_processes_equal_one(cacr_run, fake_data, tmp_path, pretrained):
    """imagenet_pretraining/main_knn.py under torchrun with 2 CPU processes = 1 process: each process encodes a shard
    of train / val (the sampler pads an odd split), rank 0 assembles the banks in dataset order, so the dumped
    features and every printed k-NN result are the same. Without --pretrained_weights every process builds the
    same --seed initialisation (before, each drew its own and the shards came from different networks)."""
    flags = ["imagenet_pretraining/main_knn.py", "--arch", "resnet18", "--image-size", "32", "--nb_knn", "1", "3",
             "--num_workers", "0", "--batch_size_per_gpu", "4", "--data_path", fake_data["imagenet"]]
    if pretrained:
        flags += ["--pretrained_weights", _pretrained(tmp_path / "pretrain.pth.tar", "module.base_encoder.")]
    outputs, banks = [], []
    for name, launch in (("single", []), ("two", ["torchrun", "--standalone", "--nproc_per_node=2"])):
        outputs.append([line for line in cacr_run([*launch, *flags, "--dump_features", tmp_path / name]).stdout
                        .splitlines() if "NN classifier result" in line or "final knn" in line])
        banks.append(torch.load(tmp_path / name / "features.pth", map_location="cpu", weights_only=False))
    assert len(outputs[0]) == 3 and outputs[1] == outputs[0]
    for key in ("train_features", "test_features"):
        assert banks[0][key].shape[0] == 18   # 3 classes x 6 images in train and in val
        assert banks[0][key].norm(dim=1).min() > 0.99   # every row written
        torch.testing.assert_close(banks[1][key], banks[0][key], rtol=1e-4, atol=1e-5, msg=key)
    for key in ("train_labels", "test_labels"):
        assert torch.equal(banks[1][key], banks[0][key])

def _pretrained(path, prefix):
    """A pre-training checkpoint holding a seeded ResNet-18 under ``prefix`` (what main_lincls.py reads)."""
    from common.backbones import build_backbone
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", num_classes=1000).state_dict()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"epoch": 1, "state_dict": {prefix + k: v for k, v in backbone.items()}}, path)
    return path


@pytest.mark.parametrize("variant", ["v3_torchrun", "large_spawn"])
def test_lincls_two_processes_equal_one(cacr_run, fake_data, tmp_path, variant):
    """imagenet_pretraining/main_lincls.py (MoCo-v3 recipe, torchrun) and large_scale_shift_experiments/imagenet/
    main_lincls.py (MoCo-v1/v2 recipe, --multiprocessing-distributed) with 2 CPU processes = 1 process: the classifier,
    its SGD momentum and the logged loss after 2 epochs of 3 global batches of 6. The frozen backbone stays in eval
    mode (the original protocol), so BatchNorm is the same function for any number of processes; with --seed every
    image's crop / flip depends on (seed, epoch, index) and process r takes samples r, r+2, ... of each global
    batch. 18 images / batch 6 leave no partial batch."""
    flags = ["-a", "resnet18", "--image-size", "32", "-b", "6", "--epochs", "2", "-j", "0", "--no-progress", "-p", "1",
             "--seed", "0", fake_data["imagenet"]]
    out = {}
    for name in ("single", "two"):
        launch = []
        if variant == "v3_torchrun":
            entry, pretrained = "imagenet_pretraining/main_lincls.py", tmp_path / name / "pretrain.pth.tar"
            flags_out = ["--output_dir", tmp_path / name / "lincls", "--lr", "20"]
            if name == "two":
                launch = ["torchrun", "--standalone", "--nproc_per_node=2"]
            _pretrained(pretrained, "module.base_encoder.")
        else:
            entry, pretrained = "large_scale_shift_experiments/imagenet/main_lincls.py", tmp_path / name / "pre.pth.tar"
            flags_out = ["--lr", "0.5"] + (spawn_flags(2) if name == "two" else [])
            _pretrained(pretrained, "module.encoder_q.")
        cacr_run([*launch, entry, *flags, *flags_out, "--pretrained", pretrained])
        checkpoint, = glob.glob(os.path.join(tmp_path, name, "**", "checkpoint.pth.tar"), recursive=True)
        out[name] = torch.load(checkpoint, map_location="cpu", weights_only=False), read_scalars(
            os.path.dirname(checkpoint))
    (single, single_logged), (two, two_logged) = out["single"], out["two"]
    assert single["epoch"] == two["epoch"] == 2 and two["args"]["world_size"] == 2
    assert_states_close(single["state_dict"], two["state_dict"], rtol=1e-4, atol=1e-5)
    momenta = [[s["momentum_buffer"] for s in state["optimizer"]["state"].values()] for state in (single, two)]
    torch.testing.assert_close(momenta[1], momenta[0], rtol=1e-4, atol=1e-5)
    assert float(single["state_dict"]["module.fc.bias"].abs().max()) > 1e-4   # it trained (the original's DDP keys)
    assert len(single_logged["train/loss"]) == 6
    for tag in ("train/loss", "eval/linear_top1"):   # the logging schema (were lincls/train_loss, lincls/top1)
        torch.testing.assert_close(two_logged[tag], single_logged[tag], rtol=1e-4, atol=1e-5, msg=tag)
