"""PaCo's MoCo-style wrapper (spec §e.2): query encoder + momentum key encoder, a queue of keys *and labels*,
and a linear classifier (the parametric class centres) on the pooled backbone feature.

State-dict keys follow the originals (`encoder_q.*`, `encoder_k.*`, `linear.*`, `linear_k.*`, `queue`,
`queue_l`, `queue_ptr`) so the released checkpoints load.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.distributed import batch_shuffle_ddp, batch_unshuffle_ddp, concat_all_gather
from common.utils import UserError

CLASSIFIER_NAMES = ("fc", "linear", "classifier")


def _classifier_name(encoder: nn.Module) -> str:
    for name in CLASSIFIER_NAMES:
        if isinstance(getattr(encoder, name, None), nn.Linear):
            return name
    raise ValueError(f"{type(encoder).__name__} has no linear classifier named one of {CLASSIFIER_NAMES}")


class PaCo(nn.Module):
    """base_encoder(num_classes=dim) must return a network whose last layer is a Linear called ``fc`` (or
    ``linear`` / ``classifier``); its input is the pooled feature h (B, f) used by the class centres.

    momentum_classifier: keep ``linear_k``, the unused momentum copy of the classifier (LT wrapper, quirk §k.6);
    the Full-ImageNet wrapper has none.
    """

    def __init__(self, base_encoder, dim: int = 128, K: int = 8192, m: float = 0.999, T: float = 0.2,
                 mlp: bool = True, feat_dim: int | None = 2048, num_classes: int = 1000, normalize: bool = False,
                 momentum_classifier: bool = True):
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.normalize = normalize
        self.encoder_q = base_encoder(num_classes=dim)
        self.encoder_k = base_encoder(num_classes=dim)
        self.head_name = _classifier_name(self.encoder_q)
        if feat_dim is None:  # the pooled feature is the head's input
            feat_dim = getattr(self.encoder_q, self.head_name).weight.shape[1]
        if mlp:  # Linear → BatchNorm1d → ReLU → Linear (the BN deviates from MoCo v2, quirk §k.7)
            for encoder in (self.encoder_q, self.encoder_k):
                fc = getattr(encoder, self.head_name)
                hidden = fc.weight.shape[1]
                setattr(encoder, self.head_name, nn.Sequential(
                    nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), fc))
        self.linear = nn.Linear(feat_dim, num_classes)
        self.linear_k = nn.Linear(feat_dim, num_classes) if momentum_classifier else None

        for param_q, param_k in zip(self._online_params(), self._momentum_params()):
            param_k.data.copy_(param_q.data)
            param_k.requires_grad = False

        # normalised along K, not per row, with random labels: fake keys until overwritten (quirk §k.1)
        self.register_buffer("queue", F.normalize(torch.randn(K, dim), dim=0))
        self.register_buffer("queue_l", torch.randint(0, num_classes, (K,)))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

        # the classifier sees the pooled feature, i.e. the input of the encoder's head
        self._pooled = {}
        head = getattr(self.encoder_q, self.head_name)
        head.register_forward_pre_hook(self._store_pooled)

    def _store_pooled(self, module, inputs):
        self._pooled["q"] = torch.flatten(inputs[0], 1)

    def _online_params(self):
        params = list(self.encoder_q.parameters())
        return params + (list(self.linear.parameters()) if self.linear_k is not None else [])

    def _momentum_params(self):
        params = list(self.encoder_k.parameters())
        return params + (list(self.linear_k.parameters()) if self.linear_k is not None else [])

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        """θ_k ← m·θ_k + (1 − m)·θ_q for parameters only; BN running stats stay separate (quirk §k.29)."""
        key_params = [p.data for p in self._momentum_params()]
        torch._foreach_mul_(key_params, self.m)
        torch._foreach_add_(key_params, [p.data for p in self._online_params()], alpha=1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys, labels):
        keys = concat_all_gather(keys)
        labels = concat_all_gather(labels)
        batch_size = keys.shape[0]
        if self.K % batch_size != 0:
            raise UserError(f"queue size K={self.K} (--moco-k) is not a multiple of the global batch {batch_size}; "
                            f"choose --moco-k as a multiple of {batch_size}")
        ptr = int(self.queue_ptr[0])
        self.queue[ptr:ptr + batch_size] = keys.to(self.queue.dtype)
        self.queue_l[ptr:ptr + batch_size] = labels
        self.queue_ptr[0] = (ptr + batch_size) % self.K

    def pooled_classifier_logits(self):
        feat = self._pooled.pop("q")
        if self.normalize:
            feat = F.normalize(feat, dim=1)
        return self.linear(feat)

    def _train(self, im_q, im_k, labels):
        q = F.normalize(self.encoder_q(im_q), dim=1)
        logits_q = self.pooled_classifier_logits()
        with torch.no_grad():
            self._momentum_update_key_encoder()
            im_k, idx_unshuffle = batch_shuffle_ddp(im_k)
            k = F.normalize(self.encoder_k(im_k), dim=1)
            k = batch_unshuffle_ddp(k, idx_unshuffle)
        # cat copies the queue, so the enqueue below cannot reach the loss's inputs (the original's clone is moot)
        features = torch.cat((q, k.to(q.dtype), self.queue.to(q.dtype)), dim=0)
        target = torch.cat((labels, labels, self.queue_l), dim=0)
        self._dequeue_and_enqueue(k, labels)
        return features, target, logits_q

    def _inference(self, image):
        self.encoder_q(image)  # projection computed but unused, as in the original
        return self.pooled_classifier_logits()

    def forward(self, im_q, im_k=None, labels=None):
        """Training: (im_q, im_k, labels) → (features (2B+K, d), target (2B+K,), sup_logits (B, C)).
        Evaluation: im_q alone → classifier logits (B, C), no prior."""
        if im_k is None:
            return self._inference(im_q)
        return self._train(im_q, im_k, labels)
