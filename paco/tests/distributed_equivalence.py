"""Run as a script by test_distributed.py: a few PaCo steps on 2 gloo processes vs. 1 process.

PaCo's loss is per process (local q/k + the global queue, spec §i), so a 2-process run is NOT the 1-process run
on the concatenated batch. The defined relationship is: DDP-averaged gradients of the per-process losses equal the
single-process gradient of the mean of the two half-batch losses, each half contrasted with the same queue, and
the queue then receives the keys of both halves in rank order. The encoder here has no BatchNorm (the MLP head
is off), so shuffle-BN and per-process BN statistics play no role and the equality is exact up to float error.

usage: python distributed_equivalence.py OUT.pt
"""
from __future__ import annotations

import sys

import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from common.distributed import find_free_port
from paco.losses import PaCoLoss
from paco.moco.builder import PaCo

STEPS, GLOBAL_BATCH, K, C, D_IN = 3, 8, 32, 4, 6


class Encoder(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Linear(D_IN, 16)
        self.avgpool = nn.Identity()
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(torch.relu(self.body(x))), 1))


def make():
    torch.manual_seed(0)
    model = PaCo(Encoder, dim=8, K=K, m=0.9, T=0.2, mlp=False, feat_dim=16, num_classes=C)
    criterion = PaCoLoss(alpha=0.3, beta=1.0, gamma=1.0, temperature=0.2, K=K, num_classes=C,
                         cls_num_list=[8, 4, 2, 1])
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(GLOBAL_BATCH, D_IN, generator=g), torch.randn(GLOBAL_BATCH, D_IN, generator=g),
             torch.randint(0, C, (GLOBAL_BATCH,), generator=g)) for _ in range(STEPS)]
    return model, criterion, data


def optimizer_for(model):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9,
                           weight_decay=5e-4)


def worker(rank, port, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model, criterion, data = make()
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = optimizer_for(ddp)
    half = GLOBAL_BATCH // 2
    for im_q, im_k, labels in data:
        sl = slice(rank * half, (rank + 1) * half)
        features, target, logits = ddp(im_q[sl], im_k[sl], labels[sl])
        loss = criterion(features, target, logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if rank == 0:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out)
    dist.destroy_process_group()


def reference():
    """One process: the mean of the two half-batch losses, both against the pre-step queue."""
    model, criterion, data = make()
    optimizer = optimizer_for(model)
    half = GLOBAL_BATCH // 2
    for im_q, im_k, labels in data:
        q = F.normalize(model.encoder_q(im_q), dim=1)
        logits = model.pooled_classifier_logits()
        with torch.no_grad():
            model._momentum_update_key_encoder()
            k = F.normalize(model.encoder_k(im_k), dim=1)
        losses = []
        for r in range(2):
            sl = slice(r * half, (r + 1) * half)
            features = torch.cat((q[sl], k[sl], model.queue.clone()))
            target = torch.cat((labels[sl], labels[sl], model.queue_l.clone()))
            losses.append(criterion(features, target, logits[sl]))
        optimizer.zero_grad()
        (sum(losses) / 2).backward()
        optimizer.step()
        model._dequeue_and_enqueue(k, labels)
    return model.state_dict()


def whole_batch():
    """One process on the whole global batch (what 2 processes are NOT equal to)."""
    model, criterion, data = make()
    optimizer = optimizer_for(model)
    for im_q, im_k, labels in data:
        loss = criterion(*model(im_q, im_k, labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


if __name__ == "__main__":
    out = sys.argv[1]
    mp.spawn(worker, nprocs=2, args=(find_free_port(), out + ".ddp"), join=True)
    torch.save({"ddp": torch.load(out + ".ddp"), "reference": reference(), "whole_batch": whole_batch()}, out)
