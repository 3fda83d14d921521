"""The supervised MCL model: N networks (``mcl.models`` wrapper) + one embedding head per network.

The heads belong to the loss in the original (``Sup_MCL_Loss.embed_list``); they are run inside this
module so that one DistributedDataParallel wrapper covers networks and heads, and the loss module only
does the (gathered) loss math.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from common.backbones import freeze_batchnorm  # noqa: F401  (re-exported for the entry points)
from common.distributed import all_gather_with_grad, concat_all_gather, get_world_size


class SupervisedMCL(nn.Module):
    """``forward(x)`` → (logits (N, B, C), z (N, B, D) normalised head outputs, raw embeddings list)."""

    def __init__(self, net: nn.Module, criterion: nn.Module):
        super().__init__()
        self.net = net
        self.embed_list = criterion.embed_list  # shared with the loss module (same parameters)

    @torch.no_grad()
    def rep_dims(self, image_size: int, device="cpu"):
        return [e.shape[1] for e in self.net(torch.zeros(1, 3, image_size, image_size, device=device))[1]]

    def forward(self, x):
        logits, embeddings = self.net(x)
        z = torch.stack([head(e) for head, e in zip(self.embed_list, embeddings)])
        return torch.stack(logits), z


def gather_batch(z: torch.Tensor, *others: torch.Tensor):
    """All-gather (N, B, D) embeddings along the batch axis with gradient, and further (B, ...) tensors
    without, so every rank computes the in-batch loss of the global batch (what ``nn.DataParallel`` did in
    the original). World size 1 → unchanged."""
    if get_world_size() == 1:
        return (z, *others)
    z = all_gather_with_grad(z.transpose(0, 1).contiguous()).transpose(0, 1)
    return (z, *(concat_all_gather(t) for t in others))
