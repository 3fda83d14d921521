"""Two gloo processes (mp.spawn flags and torchrun) end with the same parameters as one process with the same
global batch.

Exact equality needs identical inputs and identical normalisation: BatchNorm in train mode normalises each
process's half batch with its own statistics (a different function than full-batch BN, as with the original's
DataParallel), and the random augmentations are drawn per process. So the runs use ``--freeze-bn`` and
``--no-augment``; everything else (MPerClass batches split over ranks, the in-batch MCL loss on the gathered
global batch with gradient, CE / KD means, DDP gradient averaging, Nesterov SGD) is the real path.
"""
import sys

import pytest
import torch

from mcl.tests.helpers import free_port, run

pytestmark = pytest.mark.distributed
FLAGS = ["--epochs", "1", "--max-iters", "3", "--batch-size", "8", "--num-workers", "0", "--no-progress",
         "--alpha", "0.1", "--gamma", "1", "--beta", "0.1", "--lam", "1", "--logit-distill", "--feat-dim", "16",
         "--arch", "ShuffleNetV2_05x", "--freeze-bn", "--no-augment", "--init-lr", "0.05"]


def params(tmp_path, name):
    state = torch.load(tmp_path / "runs" / "mcl" / name / "ShuffleNetV2_05x.pth.tar", weights_only=False)
    return {**{"net." + k: v for k, v in state["net"].items()}, **{"head." + k: v for k, v in state["criterion"].items()}}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")


def test_two_processes_equal_one(tmp_path, cifar100_root):
    base = [sys.executable, "main_cifar.py", "--data", cifar100_root, *FLAGS]
    run(base + ["--name", "single"], tmp_path)
    _, out = run(base + ["--name", "spawn", "--multiprocessing-distributed", "--world-size", "1", "--rank", "0",
                         "--dist-url", f"tcp://127.0.0.1:{free_port()}", "--dist-backend", "gloo",
                         "--nproc-per-node", "2"], tmp_path)
    single = params(tmp_path, "single")
    assert_same(single, params(tmp_path, "spawn"))
    # the parameters did move (the comparison is not trivially true)
    untrained = [sys.executable, "main_cifar.py", "--data", cifar100_root, *FLAGS, "--name", "zero", "--init-lr", "0"]
    run(untrained, tmp_path)
    zero = params(tmp_path, "zero")
    assert any(not torch.allclose(single[k], zero[k]) for k in single if single[k].is_floating_point())


def test_torchrun_two_processes_equal_one(tmp_path, cifar100_root):
    base = [sys.executable, "main_cifar.py", "--data", cifar100_root, *FLAGS]
    run(base + ["--name", "single"], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
         "main_cifar.py", "--data", cifar100_root, *FLAGS, "--name", "torchrun", "--dist-backend", "gloo"], tmp_path)
    assert_same(params(tmp_path, "single"), params(tmp_path, "torchrun"))
