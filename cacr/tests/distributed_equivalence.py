"""Run a few DDP steps of the CACR models with BN-free linear encoders in N gloo processes and save rank 0's
parameters (used by test_distributed.py; ``python tests/distributed_equivalence.py N PORT OUT``; both models,
queue MoCo and MoCo-v3 rbf, in one process group).

Why BN-free: with BatchNorm every process normalises its own slice, so N processes and one process with the same
global batch are different computations; without BN the CACR losses are per-sample (queue MoCo without the
intra-batch term) or use globally gathered keys (MoCo-v3 rbf), and DDP's gradient average makes the N-process run
equal to the one-process run on the concatenated batch.
"""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

GLOBAL_BATCH, DIN, DIM, STEPS = 8, 12, 6, 3


def build(mode):
    torch.manual_seed(0)
    if mode == "queue":
        from cacr.large_scale_shift_experiments.imagenet.ours.builder import MoCo
        return MoCo(lambda num_classes: nn.Linear(DIN, num_classes, bias=False), dim=DIM, K=16, m=0.9, Ny=2,
                    tau_pos=1.0, tau_neg=2.0, alpha=1.0, beta=1.0, unif_intra_batch=False)
    from cacr.imagenet_pretraining.moco.builder import MoCo
    return MoCo(nn.Linear(DIN, DIM, bias=False), nn.Linear(DIN, DIM, bias=False), nn.Identity(), T=0.5)


def step_loss(model, views, mode):
    if mode == "queue":
        losses = model(views, 0)
        return losses.loss1 + losses.loss2
    return model(views[0], views[1], 0.9, views[2:], "rbf", False)


def worker(rank, world, port, out):
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    results = {mode: train(rank, world, mode) for mode in ("queue", "v3")}
    if rank == 0:
        torch.save(results, out)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def train(rank, world, mode):
    model = build(mode).double()
    ddp = DDP(model) if world > 1 else model
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    local = GLOBAL_BATCH // world
    for _ in range(STEPS):
        views = [torch.randn(GLOBAL_BATCH, DIN, generator=gen, dtype=torch.float64) for _ in range(3)]
        views = [v[rank * local:(rank + 1) * local] for v in views]
        loss = step_loss(ddp, views, mode)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


if __name__ == "__main__":
    world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if world == 1:
        worker(0, 1, port, out)
    else:
        mp.spawn(worker, nprocs=world, args=(world, port, out), join=True)
