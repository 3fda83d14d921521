"""Two gloo processes give the same parameters, queue and logged loss as one process with the same global batch.

Why this holds exactly: the augmentation of every sample is seeded by (seed, epoch, index), the sampler hands
process r the samples r, r+2, … of each global batch, each process uses bn_splits/2 SplitBatchNorm groups (so the
student's BN groups are the single-process ones), DDP averages the per-process mean losses (= the global mean),
and the queue receives the all-gathered keys (in rank-major order: ``to_single_process_order`` maps them back).
BN running statistics are buffers each process averages over its own groups; only rank 0's are saved, so they are
not compared.
"""
import pytest
import torch

from ci.smoke import (assert_states_close, read_scalars, run_python, run_torchrun, spawn_flags,
                      to_single_process_order)

pytestmark = pytest.mark.distributed

FLAGS = ["--dataset", "digits", "--arch", "resnet20_option_a", "--epochs", "1", "--warm_up", "0", "--lr", "0.05",
         "--eval_epochs", "0", "--iters_per_epoch", "3", "--batch-size", "16", "--mem_size", "32", "--K", "3",
         "--workers", "0", "--no_progress", "--knn_k", "20"]
BATCH, MEM_SIZE = 16, 32


def _run_dir(tmp_path, run_id, model, t2):
    return tmp_path / "ascl" / run_id / f"digits_{model}_ascl_1_weak_augment_3_0.1_{t2}"


def _compare(tmp_path, model, t2=0.05):
    """1-process run ``single`` vs 2-process run ``multi``: parameters, queue and labels, logged loss."""
    runs = [_run_dir(tmp_path, run_id, model, t2) for run_id in ("single", "multi")]
    single, multi = (torch.load(run / "model_last.pth", map_location="cpu", weights_only=False)["state_dict"]
                     for run in runs)
    # the original's layout: top-level queue buffers; 3 steps x 16 keys wrap the queue of 32
    for name, dim in (("queue", -1), ("labels", 0)):
        multi[name] = to_single_process_order(multi[name], BATCH, 2, filled=MEM_SIZE, dim=dim)
    compared = assert_states_close(single, multi, rtol=1e-4, atol=2e-5, skip=("running_mean", "running_var"))
    assert compared > 10
    assert not torch.allclose(single["encoder_q.projector.2.weight"], single["encoder_k.projector.2.weight"])
    logged = [read_scalars(run)["train/epoch_loss"] for run in runs]
    torch.testing.assert_close(logged[1], logged[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("augment", ["pil", "batched"])
def test_two_gloo_processes_match_one_process(tmp_path, augment):
    """MoCo path through main.py's --multiprocessing-distributed flags. Shuffle-BN is switched off
    (``--no_shuffle_bn``): its random permutation regroups the teacher's BN batches differently in the two
    layouts, so with it only the distributions, not the values, agree. ``--augment batched``: each process draws
    the augmentation parameters of the global batch and keeps its samples' (``ShardGenerator``), so the views are
    the 1-process views too."""
    flags = [*FLAGS, "--no_shuffle_bn", "--augment", augment]
    run_python("ascl", "main.py", *flags, "--run_id", "single", runs_dir=tmp_path)
    run_python("ascl", "main.py", *flags, "--run_id", "multi", *spawn_flags(2), runs_dir=tmp_path)
    _compare(tmp_path, "moco")


def test_byol_torchrun_two_processes_equal_one(tmp_path):
    """BYOL path under torchrun: the neighbours of a key are the other keys of the *global* batch (gathered), as on
    one device. BatchNorm is frozen (``--freeze_bn``): the predictor's BatchNorm1d normalises the whole batch on
    one device, which across processes needs SyncBN, and SyncBN has no CPU kernel. The untrained keys are nearly
    parallel (cosine > 0.99), so T2 is lowered to 0.0005 to make the relabelling weights large (up to 1): with the
    default 0.05 they are ~1e-4 and neighbours taken from one process's half only would go unnoticed."""
    flags = [*FLAGS, "--model", "byol", "--freeze_bn", "--t2", "0.0005"]
    run_python("ascl", "main.py", *flags, "--run_id", "single", runs_dir=tmp_path)
    run_torchrun("ascl", "main.py", *flags, "--run_id", "multi", runs_dir=tmp_path)
    _compare(tmp_path, "byol", t2=0.0005)


def test_imagenet_builder_two_processes_equal_one(tmp_path):
    """ImageNet-1K/main_moco.py (the moco main_moco.py with the ASCL ImageNet builder) through its
    --multiprocessing-distributed flags: parameters, queue, labels and logged loss after 3 steps. BatchNorm is frozen
    (``--freeze-bn``): the queries use per-process BN and the keys shuffle-BN (a random regrouping of the key batch),
    so by design W processes compute another function than one; the key shuffle / unshuffle across processes still
    runs and must return every key to its query."""
    from common.data import fake
    data = fake.write_imagefolder(tmp_path / "imagenet", n_classes=2, n_per_class=6, size=40)
    flags = ["-a", "resnet20_option_a", "--image-size", "16", "--batch-size", "4", "--moco-k", "16", "--moco-dim",
             "8", "--epochs", "1", "--workers", "0", "--no-progress", "-p", "1", "--seed", "0", "--freeze-bn",
             "--lr", "0.5", "--mlp", str(data)]
    run_python("ascl", "ImageNet-1K/main_moco.py", *flags, "--name", "single", runs_dir=tmp_path)
    run_python("ascl", "ImageNet-1K/main_moco.py", *flags, "--name", "multi", *spawn_flags(2), runs_dir=tmp_path)
    runs = [tmp_path / "ascl" / name for name in ("single", "multi")]
    # MoCo's layout: the file after epoch 0 is checkpoint_0000, the keys those of the DDP model ('module.')
    single, multi = ({k.removeprefix("module."): v for k, v in
                      torch.load(run / "checkpoint_0000.pth.tar", map_location="cpu", weights_only=True)["state_dict"]
                      .items()} for run in runs)
    assert int(single["queue_ptr"]) == int(multi["queue_ptr"]) == 12   # 3 global batches of 4 enqueued
    multi["queue"] = to_single_process_order(multi["queue"], 4, 2, filled=12, dim=-1)
    multi["labels"] = to_single_process_order(multi["labels"], 4, 2, filled=12, dim=0)
    assert_states_close(single, multi, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(single["encoder_q.fc.2.weight"], single["encoder_k.fc.2.weight"])
    logged = [read_scalars(run) for run in runs]
    for tag in ("train/loss", "train/confidence", "train/max_weight"):
        torch.testing.assert_close(logged[1][tag], logged[0][tag], rtol=1e-4, atol=1e-5, msg=tag)
