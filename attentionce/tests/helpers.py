"""Shared pieces of the AttentioNCE tests: tiny fake datasets and small-model flags."""
from __future__ import annotations

import os
from pathlib import Path

import torch

METHOD_DIR = Path(__file__).resolve().parents[1]
# small encoder, few images, one or two steps: every script runs end to end in seconds on a CPU
SMALL_ARCH = os.environ.get("ATTENTIONCE_TEST_ARCH", "resnet20_option_a")
TINY = ["--arch", SMALL_ARCH, "--feature_dim", "16", "--workers", "0", "--seed", "0", "--crop_size", "16"]


def write_all(root: Path) -> Path:
    from common.data import fake
    fake.write_cifar10(root, n_train=16, n_test=8)
    fake.write_cifar100(root, n_train=16, n_test=8)
    fake.write_stl10(root, n_train=8, n_test=8, n_unlabeled=8)
    fake.write_tinyimagenet(root, n_classes=2, n_train_per_class=4, n_val_per_class=2)
    return root


def load_state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def run_dir(runs: Path, name: str) -> Path:
    return runs / "attentionce" / name


def loss_gradient_worker(rank: int, world_size: int, port: int, views, out_dir: str) -> None:
    """One rank of the 2-process loss check: its slice of the batch, anchors gathered with gradient."""
    import torch.distributed as dist
    from attentionce.losses import AttentioNCE
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    local = views.shape[1] // world_size
    leaf = views[:, rank * local:(rank + 1) * local].clone().requires_grad_(True)
    loss = AttentioNCE(0.5, 2.0, 0.5)(leaf)
    loss.backward()
    torch.save({"loss": loss.detach(), "grad": leaf.grad}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()
