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


def test_knn_torchrun_two_processes(cacr_run, fake_data, tmp_path):
    out = cacr_run(["torchrun", "--standalone", "--nproc_per_node=2", "imagenet_pretraining/main_knn.py",
                    "--arch", "vit_tiny", "--image-size", "32", "--nb_knn", "2", "--num_workers", "0",
                    "--batch_size_per_gpu", "4", "--data_path", fake_data["imagenet"],
                    "--dump_features", tmp_path / "knn"]).stdout
    assert "final knn top-1" in out
