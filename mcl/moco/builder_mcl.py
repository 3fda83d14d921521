"""MoCo with Mutual Contrastive Learning (original ``moco/builder_mcl.py``, spec §e.7, §f.4).

N query encoders and N momentum key encoders, one queue (dim × K) per network; the loss compares every
network's query with its own key/queue (VCL, soft VCL) and with the other networks' (ICL, soft ICL).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.distributed import batch_shuffle_ddp, batch_unshuffle_ddp, concat_all_gather
from common.moco import QueueSnapshot, moco_encoder_pair
from mcl.moco.losses import KL_T, dequeue_and_enqueue, moco_mcl_loss


class MoCo(nn.Module):
    """Build N MoCo encoder pairs with one queue each.

    Args:
        base_encoder: callable ``base_encoder(num_classes=dim)`` returning a network whose ``fc`` outputs ``dim``.
        number_net: N; dim: feature dimension (default 128); K: queue size per network (default 65536);
        m: key-encoder momentum (default 0.999); T: softmax temperature (default 0.07).
        mlp: MoCo-v2 projection head. The original registered it under an unused name (quirk 10: no effect);
            here ``mlp=True`` really replaces each encoder's ``fc`` with Linear-ReLU-fc (the corrected behaviour).
    """

    def __init__(self, base_encoder, number_net: int = 2, dim: int = 128, K: int = 65536, m: float = 0.999,
                 T: float = 0.07, mlp: bool = False):
        super().__init__()
        self.number_net, self.K, self.m, self.T = number_net, K, m, T
        for i in range(number_net):
            encoder_q, encoder_k = moco_encoder_pair(base_encoder, dim, mlp)
            setattr(self, f"encoder_q_{i}", encoder_q)
            setattr(self, f"encoder_k_{i}", encoder_k)
        self.register_buffer("queue", F.normalize(torch.randn(number_net, dim, K), dim=1))
        self.register_buffer("queue_ptr", torch.zeros(number_net, dtype=torch.long))
        self.queue_snapshot = QueueSnapshot()     # the pre-enqueue queues for the backward (not in the state)

    def encoders(self, kind: str):
        return [getattr(self, f"encoder_{kind}_{i}") for i in range(self.number_net)]

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for encoder_q, encoder_k in zip(self.encoders("q"), self.encoders("k")):
            params_q = [p.data for p in encoder_q.parameters()]
            params_k = [p.data for p in encoder_k.parameters()]
            torch._foreach_mul_(params_k, self.m)
            torch._foreach_add_(params_k, params_q, alpha=1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor):
        """keys (N, B_local, C) → gathered (N, B_total, C) written into every queue."""
        keys = concat_all_gather(keys.transpose(0, 1).contiguous()).transpose(0, 1)
        dequeue_and_enqueue(self.queue, self.queue_ptr, keys)

    def forward(self, im_q, im_k):
        """Returns (intra logits list of N (B, 1+K), zero labels (B,), vcl, soft_vcl, icl, soft_icl)."""
        q = torch.stack([F.normalize(encoder(im_q), dim=1) for encoder in self.encoders("q")])
        with torch.no_grad():
            self._momentum_update_key_encoder()
            # one shuffle of the key batch for every key encoder (shuffle-BN)
            im_k, idx_unshuffle = batch_shuffle_ddp(im_k)
            k = torch.stack([batch_unshuffle_ddp(F.normalize(encoder(im_k), dim=1), idx_unshuffle)
                             for encoder in self.encoders("k")])
        # the loss keeps the queue for its backward pass and the enqueue below overwrites it: pass a copy
        queue = self.queue_snapshot.copy_of(self.queue)
        intra, vcl, soft_vcl, icl, soft_icl = moco_mcl_loss(q.float(), k.float(), queue, self.T, KL_T)
        self.queue_snapshot.keep_until_backward(vcl)    # intra carries no gradient; vcl has the loss's node
        labels = torch.zeros(intra.shape[1], dtype=torch.long, device=intra.device)
        self._dequeue_and_enqueue(k)
        return list(intra.unbind(0)), labels, vcl, soft_vcl, icl, soft_icl
