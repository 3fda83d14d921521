"""AttentioNCE loss (spec §f) and the plain SimCLR / NT-Xent baseline, as pure functions under a small module.

Notation (spec): B images per step, D projection dim, 2 anchor views (v1, v2) and M = 4 positive views
(v3 ... v6) per image, T temperature, N = 2B - 2 negatives per anchor.  Row ``n = a * B + i`` of the
anchor matrix is anchor view ``a + 1`` of image ``i``.

The original computes ``-log(pos / (pos + sum(neg)))`` literally; here the same value is computed as
``logsumexp([pos_logit, neg_logits]) - pos_logit`` so float32 cannot overflow (quirk §k.17).  Everything
else (detached attentions, the ``+ 1e-6`` inside beta before scaling by N, beta multiplying the similarity
*inside* the exponent, anchors 1 and 2 of one image never compared) is reproduced exactly (§k.7, §k.8).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Added to every negative-attention weight before scaling by N (original value; changes the loss by up to
# 4e-4 and is checked by the golden fixtures).
BETA_EPSILON = 1e-6

_MASK_CACHE: dict = {}


def negative_mask(batch_size: int, n_anchor_views: int = 2, total_batch_size: int | None = None,
                  offset: int = 0, device=None) -> torch.Tensor:
    """Boolean ``(V * b, V * B_all)`` mask of negatives: True where column j is a negative of row n.

    Rows are the ``V * b`` local anchors (view-major), columns the ``V * B_all`` anchors of the whole
    (gathered) batch, view-major; the local images are images ``offset ... offset + b - 1`` of the whole
    batch.  An anchor's negatives are all anchor views of every *other* image, so its own column and the
    columns of the other anchor views of the same image (n ± B for V = 2) are False.  Single process:
    ``B_all = b``, ``offset = 0``: the original ``get_negative_mask``, built without a Python loop and
    cached (quirk §k.10).
    """
    total = batch_size if total_batch_size is None else total_batch_size
    key = (batch_size, n_anchor_views, total, offset, str(device))
    mask = _MASK_CACHE.get(key)
    if mask is None:
        row_image = torch.arange(batch_size, device=device).repeat(n_anchor_views) + offset
        column_image = torch.arange(total, device=device).repeat(n_anchor_views)
        mask = row_image[:, None] != column_image[None, :]
        if len(_MASK_CACHE) > 64:
            _MASK_CACHE.clear()
        _MASK_CACHE[key] = mask
    return mask


def _negative_similarities(anchors: torch.Tensor, all_anchors: torch.Tensor | None, offset: int):
    """Anchors ``(V, b, D)``, all anchors ``(V, B_all, D)`` → (``(V*b, D)``, ``(V*b, V*B_all - V)`` s⁻, mask)."""
    n_views, batch_size, dim = anchors.shape
    if all_anchors is None:
        all_anchors = anchors
    total = all_anchors.shape[1]
    rows = anchors.reshape(n_views * batch_size, dim)
    columns = all_anchors.reshape(n_views * total, dim)
    similarity = rows @ columns.t()
    mask = negative_mask(batch_size, n_views, total, offset, similarity.device)
    # boolean indexing keeps row-major order, i.e. increasing column index within a row like the original
    neg_sim = similarity.masked_select(mask).view(n_views * batch_size, n_views * total - n_views)
    return rows, neg_sim, mask


def attentionce_loss(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.5,
                     d_pos: float = 1.0, d_neg: float = 1.0, all_anchors: torch.Tensor | None = None,
                     offset: int = 0, reduction: str = "mean", return_intermediates: bool = False):
    """AttentioNCE loss of spec §f.

    Args:
        anchors: ``(V, b, D)`` L2-normalised projections of the anchor views (V = 2: views 1 and 2); the
            loss does not normalise.
        positives: ``(M, b, D)`` normalised projections of the positive views of the same images
            (M = 4: views 3 ... 6), shared by every anchor view of an image.
        temperature: T.
        d_pos: scaling factor (softmax temperature) of the positive attention α.
        d_neg: scaling factor of the negative attention β.
        all_anchors: ``(V, B_all, D)`` anchors of the whole batch across processes (negatives); ``None``
            = ``anchors`` (single process).  Must contain ``anchors`` as images ``offset ... offset+b-1``.
        offset: index of this process's first image in ``all_anchors``.
        reduction: ``'mean'`` (the original: mean over the ``V * b`` local anchors), ``'none'``.
        return_intermediates: also return a dict with α, β, similarities, scores, mask (shapes as in the
            golden-fixture README).

    Returns:
        scalar loss (or ``(V * b,)`` per-anchor losses), optionally with the intermediates dict.

    Per anchor n with positives p_{n,k} and negatives s⁻_{n,j}, N = V * B_all - V:
        α = softmax_k(sg(s⁺)/d_pos),  ℓ⁺ = Σ_k α s⁺ / T,
        β = N (softmax_j(sg(s⁻)/d_neg) + 1e-6),  ℓ⁻_j = β_j s⁻_j / T,
        L_n = -log(exp ℓ⁺ / (exp ℓ⁺ + Σ_j exp ℓ⁻_j)).
    """
    n_views, batch_size, dim = anchors.shape
    n_pos = positives.shape[0]
    if positives.shape[1:] != (batch_size, dim):
        raise ValueError(f"positives {tuple(positives.shape)} do not match anchors {tuple(anchors.shape)}")
    # s⁺[a, i, k] = <anchor view a of image i, positive view k of image i>
    pos_sim = torch.einsum("aid,kid->aik", anchors, positives).reshape(n_views * batch_size, n_pos)
    alpha = torch.softmax(pos_sim.detach() / d_pos, dim=1)
    pos_logit = (alpha * pos_sim).sum(dim=1) / temperature

    rows, neg_sim, mask = _negative_similarities(anchors, all_anchors, offset)
    n_neg = neg_sim.shape[1]
    beta = n_neg * (torch.softmax(neg_sim.detach() / d_neg, dim=1) + BETA_EPSILON)
    neg_logit = beta * neg_sim / temperature

    logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)
    per_anchor = torch.logsumexp(logits, dim=1) - pos_logit
    loss = per_anchor.mean() if reduction == "mean" else per_anchor
    if not return_intermediates:
        return loss
    intermediates = {
        "loss_per_anchor": per_anchor, "pos_sim": pos_sim, "alpha": alpha, "pos_logit": pos_logit,
        "pos_score": pos_logit.exp(), "neg_mask": mask, "neg_sim": neg_sim, "beta": beta,
        "neg_score": neg_logit.exp(), "neg_score_sum": neg_logit.exp().sum(dim=1),
    }
    return loss, intermediates


def simclr_loss(anchors: torch.Tensor, temperature: float = 0.5, all_anchors: torch.Tensor | None = None,
                offset: int = 0, reduction: str = "mean") -> torch.Tensor:
    """Plain SimCLR / NT-Xent baseline (spec §f "Plain SimCLR baseline"), 2 views.

    Args:
        anchors: ``(2, b, D)`` normalised projections of views 1 and 2.
        all_anchors, offset: as in :func:`attentionce_loss` (negatives from the whole batch).

    pos_n = exp(<z1_i, z2_i>/T) for both rows of image i; the same 2B - 2 negatives exp(s⁻/T) (no
    attention); L = mean_n -log(pos_n / (pos_n + Σ_j neg_{n,j})).
    """
    n_views, batch_size, _ = anchors.shape
    if n_views != 2:
        raise ValueError(f"simclr_loss needs exactly 2 anchor views, got {n_views}")
    pos_logit = (anchors[0] * anchors[1]).sum(dim=1).repeat(2) / temperature
    _, neg_sim, _ = _negative_similarities(anchors, all_anchors, offset)
    logits = torch.cat([pos_logit[:, None], neg_sim / temperature], dim=1)
    per_anchor = torch.logsumexp(logits, dim=1) - pos_logit
    return per_anchor.mean() if reduction == "mean" else per_anchor


class AttentioNCE(nn.Module):
    """Loss module: takes the list of view projections, gathers the anchors across processes.

    ``loss='attentionce'`` (default): views ``[z1, ..., z6]`` each ``(b, D)``; the first ``n_anchor_views``
    are anchors, the rest positives.  ``loss='simclr'``: only ``z1, z2`` are used.

    Under ``torch.distributed`` each process scores its own anchors against the anchors of the whole
    global batch (gathered with gradient), and the loss is the mean over its anchors; DDP's gradient
    average then equals the gradient of the single-process loss on the global batch (the original's
    DataParallel also computed the loss once on the full batch, spec §i).
    """

    def __init__(self, temperature: float = 0.5, d_pos: float = 1.0, d_neg: float = 1.0,
                 loss: str = "attentionce", n_anchor_views: int = 2):
        super().__init__()
        if loss not in ("attentionce", "simclr"):
            raise ValueError(f"unknown loss '{loss}' (choose attentionce or simclr)")
        self.temperature = temperature
        self.d_pos = d_pos
        self.d_neg = d_neg
        self.loss = loss
        self.n_anchor_views = n_anchor_views

    def extra_repr(self) -> str:
        return f"loss={self.loss}, temperature={self.temperature}, d_pos={self.d_pos}, d_neg={self.d_neg}"

    def _gather(self, anchors: torch.Tensor):
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return None, 0
        from common.distributed import all_gather_with_grad
        batch_size = anchors.shape[1]
        # (V, b, D) -> gather along the image axis -> (V, W*b, D); this process's images start at rank*b
        gathered = all_gather_with_grad(anchors.transpose(0, 1).contiguous())
        return gathered.transpose(0, 1), dist.get_rank() * batch_size

    def forward(self, views) -> torch.Tensor:
        views = torch.stack(list(views)) if not torch.is_tensor(views) else views
        anchors = views[: self.n_anchor_views]
        all_anchors, offset = self._gather(anchors)
        if self.loss == "simclr":
            return simclr_loss(anchors, self.temperature, all_anchors, offset)
        positives = views[self.n_anchor_views:]
        if positives.shape[0] == 0:
            raise ValueError("AttentioNCE needs at least one positive view besides the anchors")
        return attentionce_loss(anchors, positives, self.temperature, self.d_pos, self.d_neg, all_anchors, offset)
