"""ASCL for ImageNet-1K: the official MoCo ``builder.py`` with adaptive soft relabeling (spec §i).

``ascl/ImageNet-1K/builder.py`` re-exports :class:`MoCo` from here (a folder with a hyphen is not importable).
Differences from facebookresearch/moco: temperatures T1 (student) / T2 (teacher) instead of T, ``mlp=True`` by
default, a ``labels`` buffer next to the queue, ``forward(im_q, im_k, targets)`` returns
``(logits, soft_targets, mean confidence, mean max neighbour weight)``; the training script applies the soft
cross-entropy.  Construct with keywords (quirk 6: the official ``main_moco.py`` passed T positionally).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.moco import QueueSnapshot, moco_encoder_pair

from ascl.losses import moco_logits, relabel


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class MoCo(nn.Module):
    """MoCo v2 with ASCL targets. ``base_encoder(num_classes=dim)`` builds each encoder (its ``fc`` is the head)."""

    def __init__(self, base_encoder, dim: int = 128, K: int = 65536, m: float = 0.999, T1: float = 0.1,
                 T2: float = 0.05, mlp: bool = True):
        super().__init__()
        self.K, self.m, self.T1, self.T2 = K, m, T1, T2
        self.nn_num = 1  # hard-coded in the original builder
        self.max_entropy = math.log(K)
        self.encoder_q, self.encoder_k = moco_encoder_pair(base_encoder, dim, mlp)
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("labels", torch.full((K,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.queue_snapshot = QueueSnapshot()     # the pre-enqueue queue for the backward (not in the state)

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.mul_(self.m).add_(param_q.data, alpha=1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys, labels):
        if _distributed():
            from common.distributed import concat_all_gather
            keys, labels = concat_all_gather(keys), concat_all_gather(labels)
        batch_size = keys.shape[0]
        ptr = int(self.queue_ptr)
        if self.K % batch_size != 0:
            raise ValueError(f"queue size {self.K} is not a multiple of the global batch {batch_size}")
        self.queue[:, ptr:ptr + batch_size] = keys.t()
        self.labels[ptr:ptr + batch_size] = labels
        self.queue_ptr[0] = (ptr + batch_size) % self.K

    @torch.no_grad()
    def _batch_shuffle(self, x):
        if _distributed():
            from common.distributed import batch_shuffle_ddp
            return batch_shuffle_ddp(x)
        idx_shuffle = torch.randperm(x.shape[0], device=x.device)
        return x[idx_shuffle], torch.argsort(idx_shuffle)

    @torch.no_grad()
    def _batch_unshuffle(self, x, idx_unshuffle):
        if _distributed():
            from common.distributed import batch_unshuffle_ddp
            return batch_unshuffle_ddp(x, idx_unshuffle)
        return x[idx_unshuffle]

    def forward(self, im_q, im_k, targets):
        """Returns logits N×(1+K), soft targets N×(1+K), mean confidence, mean max neighbour weight."""
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            im_k, idx_unshuffle = self._batch_shuffle(im_k)
            k = F.normalize(self.encoder_k(im_k), dim=1)
            k = self._batch_unshuffle(k, idx_unshuffle)
            # the original's self.queue.clone(): the logits' backward needs the queue before the enqueue below
            queue = self.queue_snapshot.copy_of(self.queue)
            # local keys against the global queue, as in the original
            target = relabel(k, queue, self.T2, "ascl", self.nn_num, self.max_entropy, keep_intermediates=False)
        logits = moco_logits(q, k, queue, self.T1)
        self.queue_snapshot.keep_until_backward(logits)
        self._dequeue_and_enqueue(k, targets)
        return (logits, target.soft_labels, target.confidence.mean(),
                target.max_weight.mean())
