"""Two gloo processes (mp.spawn flags and torchrun) end with the same parameters, buffers and logged losses as one
process with the same global batch, for main_cifar.py, main_imagenet.py and main_moco_mcl.py.

Exact equality needs identical inputs and identical normalisation: BatchNorm in train mode normalises each
process's half batch with its own statistics (a different function than full-batch BN, as with the original's
DataParallel; MoCo's shuffle-BN also regroups the key batch at random), so the runs use ``--freeze-bn``. main_cifar.py
draws its augmentations per process (``--no-augment``); main_imagenet.py and main_moco_mcl.py seed every image's
views (and sampled memory indices) by (seed, epoch, index). Everything else (MPerClass batches split over ranks, the
in-batch MCL loss on the gathered global batch with gradient, memory-bank and queue updates with every process's
anchors / keys, CE / KD means, DDP gradient averaging, SGD) is the real path.
"""
import pytest
import torch

from ci.smoke import (assert_states_close, read_scalars, run_python, run_torchrun, spawn_flags,
                      to_single_process_order)

pytestmark = pytest.mark.distributed
FLAGS = ["--epochs", "1", "--max-iters", "3", "--batch-size", "8", "--num-workers", "0", "--no-progress",
         "--alpha", "0.1", "--gamma", "1", "--beta", "0.1", "--lam", "1", "--logit-distill", "--feat-dim", "16",
         "--arch", "ShuffleNetV2_05x", "--freeze-bn", "--no-augment", "--init-lr", "0.05"]


def test_spawn_and_torchrun_two_processes_equal_one(tmp_path, cifar100_root):
    """main_cifar.py: networks, heads, SGD momentum buffers and logged losses after 3 steps, for both launch paths."""
    flags = ["--data", str(cifar100_root), *FLAGS]
    run_python("mcl", "main_cifar.py", *flags, "--name", "single", runs_dir=tmp_path)
    run_python("mcl", "main_cifar.py", *flags, "--name", "spawn", *spawn_flags(2), runs_dir=tmp_path)
    run_torchrun("mcl", "main_cifar.py", *flags, "--name", "torchrun", runs_dir=tmp_path)
    runs = {name: tmp_path / "mcl" / name for name in ("single", "spawn", "torchrun")}
    states = {name: torch.load(run / "ShuffleNetV2_05x.pth.tar", map_location="cpu", weights_only=False)
              for name, run in runs.items()}
    momenta = {name: [s["momentum_buffer"] for s in state["optimizer"]["state"].values()]
               for name, state in states.items()}
    # the momentum buffers hold the accumulated gradients: non-zero, so the comparison is not trivially true
    assert max(float(m.abs().max()) for m in momenta["single"]) > 1e-3
    logged = {name: read_scalars(run) for name, run in runs.items()}
    for name in ("spawn", "torchrun"):
        assert states[name]["args"]["world_size"] == 2
        for part in ("net", "criterion"):
            assert_states_close(states["single"][part], states[name][part], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(momenta[name], momenta["single"], rtol=1e-4, atol=1e-5)
        for tag in ("train/loss", "train/loss_ce", "train/loss_icl", "train/loss_soft_vcl"):
            torch.testing.assert_close(logged[name][tag], logged["single"][tag], rtol=1e-4, atol=1e-5,
                                       msg=f"{name} {tag}")


MOCO_FLAGS = ["-a", "resnet20_option_a", "--image-size", "16", "--batch-size", "4", "--moco-k", "12", "--moco-dim", "8",
              "--epochs", "1", "--workers", "0", "--no-progress", "-p", "1", "--seed", "0", "--lr", "0.5",
              "--freeze-bn"]
MOCO_BATCHES = 3  # 12 training images / global batch 4; the queue (K 12) then holds every enqueued key once


def test_moco_mcl_torchrun_two_processes_equal_one(tmp_path, imagenet_root):
    """main_moco_mcl.py under torchrun: parameters, the N queues and the logged losses after 3 steps equal the
    1-process run's. BatchNorm is frozen (--freeze-bn) because MoCo's per-process BN and shuffle-BN (a random
    regrouping of the key batch) make W processes a different function by design; the shuffle / unshuffle of
    the keys across processes still runs and must put every key back next to its query."""
    flags = ["--data", str(imagenet_root), *MOCO_FLAGS]
    run_python("mcl", "main_moco_mcl.py", *flags, "--name", "single", runs_dir=tmp_path)
    run_torchrun("mcl", "main_moco_mcl.py", *flags, "--name", "torchrun", runs_dir=tmp_path)
    runs = tmp_path / "mcl"
    single, two = (torch.load(runs / name / "checkpoint_0000.pth.tar", weights_only=False)["state_dict"]
                   for name in ("single", "torchrun"))
    assert int(single["module.queue_ptr"][0]) == 0 and MOCO_BATCHES * 4 == single["module.queue"].shape[-1]
    two["module.queue"] = to_single_process_order(two["module.queue"], 4, 2, filled=12, dim=-1)
    assert_states_close(single, two, rtol=1e-4, atol=1e-5)
    # trained: the query encoders moved away from their momentum copies
    assert not torch.allclose(single["module.encoder_q_0.fc.weight"], single["module.encoder_k_0.fc.weight"])
    logged = [read_scalars(runs / name) for name in ("single", "torchrun")]
    for tag in ("train/loss", "train/loss_vcl", "train/loss_icl", "train/loss_soft_icl"):
        torch.testing.assert_close(logged[1][tag], logged[0][tag], rtol=1e-4, atol=1e-5, msg=tag)


def test_imagenet_two_processes_equal_one(tmp_path, imagenet_root):
    """main_imagenet.py through its --multiprocessing-distributed flags: networks, heads, memory banks and the logged
    losses after one epoch (3 steps of a global batch of 4) equal the 1-process run's. Every item's crop and
    sampled positive / negative indices are seeded by (seed, epoch, index); BatchNorm is frozen (--freeze-bn, see
    the module docstring). The memory rows of every process's anchors are written on every process."""
    flags = ["--data", str(imagenet_root), "--arch", "resnet18", "--image-size", "32", "--resize", "36",
             "--batch-size", "4", "--epochs", "1", "--neg_k", "8", "--num-workers", "0", "--no-progress",
             "--freeze-bn", "--alpha", "0.1", "--gamma", "1", "--beta", "0.1", "--lam", "1", "--logit-distill",
             "--feat-dim", "16", "--init-lr", "0.002"]
    run_python("mcl", "main_imagenet.py", *flags, "--name", "single", runs_dir=tmp_path)
    run_python("mcl", "main_imagenet.py", *flags, "--name", "spawn", *spawn_flags(2), runs_dir=tmp_path)
    runs = [tmp_path / "mcl" / name for name in ("single", "spawn")]
    states = [torch.load(run / "resnet18.pth.tar", map_location="cpu", weights_only=False) for run in runs]
    assert states[1]["args"]["world_size"] == 2
    for part in ("net", "criterion"):
        assert_states_close(states[0][part], states[1][part], rtol=1e-4, atol=1e-5)
    # the SGD momentum buffers accumulate the gradients themselves (independent of the small learning rate)
    momenta = [[s["momentum_buffer"] for s in state["optimizer"]["state"].values()] for state in states]
    torch.testing.assert_close(momenta[1], momenta[0], rtol=1e-4, atol=1e-5)
    assert max(float(m.abs().max()) for m in momenta[0]) > 1e-3
    memory = states[0]["criterion"]["contrast_memory.memory"]
    # rows start un-normalised (quirk 19) and become unit vectors when written: every one of the 12 images was an
    # anchor of one of the processes, and both networks' banks hold every row
    assert memory.shape[:2] == (2, 12) and torch.allclose(memory.norm(dim=-1), torch.ones(2, 12), atol=1e-5)
    logged = [read_scalars(run) for run in runs]
    for tag in ("train/loss", "train/loss_ce", "train/loss_kd", "train/loss_icl", "train/loss_soft_vcl"):
        torch.testing.assert_close(logged[1][tag], logged[0][tag], rtol=1e-4, atol=1e-5, msg=tag)


def test_lincls_two_processes_equal_one(tmp_path, imagenet_root):
    """main_lincls.py through its --multiprocessing-distributed flags: the classifier, its SGD momentum and the
    logged per-epoch train loss after 2 epochs (3 global batches of 4 each) equal the 1-process run's. The frozen
    backbone is in eval mode (the original's protocol), so BatchNorm is the same function for any number of
    processes; every image's crop / flip is seeded by (seed, epoch, index) and process r takes samples r, r+2, ... of
    each global batch. 12 images / batch 4 leave no partial batch (the sampler pads one for 2 processes)."""
    from common.backbones import build_backbone
    torch.manual_seed(0)
    encoder = {f"module.encoder_q_0.{k}": v for k, v in build_backbone("resnet18", num_classes=3).state_dict().items()
               if not k.startswith("fc.")}
    pretrained = tmp_path / "checkpoint_0000.pth.tar"
    torch.save({"epoch": 1, "state_dict": encoder}, pretrained)
    flags = ["--data", str(imagenet_root), "-a", "resnet18", "--image-size", "32", "--resize", "36",
             "--batch-size", "4", "--epochs", "2", "--workers", "0", "--no-progress", "--num-classes", "3",
             "--lr", "1.0", "--seed", "0", "--pretrained", str(pretrained)]
    run_python("mcl", "main_lincls.py", *flags, "--name", "single", runs_dir=tmp_path)
    run_python("mcl", "main_lincls.py", *flags, "--name", "spawn", *spawn_flags(2), runs_dir=tmp_path)
    runs = [tmp_path / "mcl" / name for name in ("single", "spawn")]
    states = [torch.load(run / "lincls_mcl_checkpoint_0001.pth.tar", map_location="cpu", weights_only=False)
              for run in runs]
    assert_states_close(states[0]["state_dict"], states[1]["state_dict"], rtol=1e-4, atol=1e-5)
    momenta = [[s["momentum_buffer"] for s in state["optimizer"]["state"].values()] for state in states]
    torch.testing.assert_close(momenta[1], momenta[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(states[0]["state_dict"]["module.fc.bias"], torch.zeros(3))   # it trained
    logged = [read_scalars(run) for run in runs]
    assert len(logged[0]["train/loss"]) == 2
    for tag in ("train/loss", "train/top1", "eval/linear_top1"):
        torch.testing.assert_close(logged[1][tag], logged[0][tag], rtol=1e-4, atol=1e-5, msg=tag)
