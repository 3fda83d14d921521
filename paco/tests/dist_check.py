"""2 gloo processes vs 1 process for PaCo's wrapper + loss (run by test_distributed.py as a subprocess).

The defined relationship (spec §f.8, §i): each process computes the loss of its *local* anchors against
[local q; local k; global queue], DDP averages the gradients, and the queue receives the keys of every process in
rank order. So one process reproduces a 2-process step exactly by computing the two half-batch losses against the
same queue, averaging them, stepping, and enqueueing both halves. The stand-in encoder has no BatchNorm (and the
MLP head is off, as its BN would make per-process batch statistics differ), so shuffle-BN changes nothing.

    python -m paco.tests.dist_check OUT.pt
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.distributed import find_free_port, init_distributed, unwrap_model, wrap_ddp
from paco.losses import PaCoLoss
from paco.moco.builder import PaCo

WORLD, BATCH, STEPS, IN_DIM, FEAT, DIM, K, C = 2, 8, 3, 10, 12, 6, 16, 5
COUNTS = [9, 5, 3, 2, 1]


class StandIn(nn.Module):
    """BN-free encoder: Linear → ReLU → (pool = identity) → fc."""

    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(IN_DIM, FEAT), nn.ReLU())
        self.avgpool = nn.Identity()
        self.fc = nn.Linear(FEAT, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.body(x)), 1))


def make():
    torch.manual_seed(0)
    model = PaCo(StandIn, dim=DIM, K=K, m=0.9, T=0.2, mlp=False, feat_dim=FEAT, num_classes=C)
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(STEPS, BATCH, IN_DIM, generator=g), torch.randn(STEPS, BATCH, IN_DIM, generator=g),
            torch.randint(0, C, (STEPS, BATCH), generator=g))
    criterion = PaCoLoss(alpha=0.5, beta=1.0, gamma=1.0, temperature=0.2, K=K, num_classes=C, cls_num_list=COUNTS)
    return model, data, criterion


def optimizer_of(model):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9,
                           weight_decay=1e-3)


def worker(local_rank, port, out):
    args = argparse.Namespace(multiprocessing_distributed=True, ngpus_per_node=WORLD, world_size=1, rank=0,
                              dist_url=f"tcp://127.0.0.1:{port}", dist_backend="gloo", gpu=None,
                              nproc_per_node=WORLD, device="cpu")
    init_distributed(args, local_rank)
    model, (xq, xk, y), criterion = make()
    model = wrap_ddp(model, args, find_unused_parameters=True)
    optimizer = optimizer_of(model)
    local = slice(args.rank * BATCH // WORLD, (args.rank + 1) * BATCH // WORLD)
    for step in range(STEPS):
        features, target, logits = model(xq[step, local], xk[step, local], y[step, local])
        loss = criterion(features, target, logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if args.rank == 0:
        torch.save(unwrap_model(model).state_dict(), out)
    torch.distributed.destroy_process_group()


def single_process_reference():
    model, (xq, xk, y), criterion = make()
    optimizer = optimizer_of(model)
    for step in range(STEPS):
        queue, queue_l = model.queue.clone(), model.queue_l.clone()
        model._momentum_update_key_encoder()
        losses, keys = [], []
        for r in range(WORLD):
            local = slice(r * BATCH // WORLD, (r + 1) * BATCH // WORLD)
            q = F.normalize(model.encoder_q(xq[step, local]), dim=1)
            logits = model.pooled_classifier_logits()
            with torch.no_grad():
                k = F.normalize(model.encoder_k(xk[step, local]), dim=1)
            labels = y[step, local]
            losses.append(criterion(torch.cat((q, k, queue)), torch.cat((labels, labels, queue_l)), logits))
            keys.append(k)
        loss = torch.stack(losses).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model._dequeue_and_enqueue(torch.cat(keys), y[step])
    return model.state_dict()


def main():
    out = sys.argv[1]
    torch.multiprocessing.spawn(worker, nprocs=WORLD, args=(find_free_port(), out), join=True)
    distributed = torch.load(out)
    reference = single_process_reference()
    worst = 0.0
    for key, value in reference.items():
        diff = (distributed[key].double() - value.double()).abs().max().item()
        worst = max(worst, diff)
        if not torch.allclose(distributed[key].double(), value.double(), rtol=1e-5, atol=1e-6):
            print(f"MISMATCH {key}: max abs diff {diff:.3e}")
            sys.exit(1)
    moved = max((reference[k] - make()[0].state_dict()[k]).abs().max().item()
                for k in reference if reference[k].is_floating_point())
    print(f"OK {len(reference)} tensors equal (worst abs diff {worst:.2e}; parameters moved by up to {moved:.3f})")


if __name__ == "__main__":
    main()
