"""Baseline losses that several methods compare against.

``nt_xent`` is SimCLR's normalised-temperature cross-entropy generalised to V ≥ 2 views of a batch (the
unsupervised form of SupCon, Khosla et al. 2020, eq. 1 with one label per image); with V = 2 it is exactly
SimCLR's loss. AttentioNCE keeps its own two-view ``simclr_loss`` because that one gathers the anchors across
processes with the layout of its golden fixtures.
"""
from __future__ import annotations

import torch


def nt_xent(views: torch.Tensor, temperature: float = 0.5, return_terms: bool = False):
    """NT-Xent over V views.

    Args:
        views: ``(V, B, D)`` L2-normalised embeddings; row ``i`` of every view is the same image.
        temperature: T.
        return_terms: also return the two parts of the loss (see below).

    Every one of the V·B embeddings is an anchor; its positives are the other V − 1 views of its image, its
    softmax runs over every other embedding (V·B − 1 terms, the other images' views being the negatives):

        L = mean_{n, p ∈ P(n)} [ log Σ_{m ≠ n} exp(s_nm / T) − s_np / T ].

    With ``return_terms`` the result is ``(L, attraction, repulsion)`` where attraction = −mean s_np / T and
    repulsion = mean_n log Σ_{m ≠ n} exp(s_nm / T), so L = attraction + repulsion.
    """
    n_views, batch, dim = views.shape
    if n_views < 2:
        raise ValueError(f"nt_xent needs at least 2 views, got {n_views}")
    z = views.reshape(n_views * batch, dim)
    logits = z @ z.t() / temperature
    self_mask = torch.eye(n_views * batch, dtype=torch.bool, device=z.device)
    repulsion = logits.masked_fill(self_mask, float("-inf")).logsumexp(dim=1).mean()
    image = torch.arange(batch, device=z.device).repeat(n_views)
    positive = (image[:, None] == image[None, :]) & ~self_mask
    # every anchor has exactly V - 1 positives, so the mean over (anchor, positive) pairs is a plain mean
    attraction = -logits.masked_select(positive).mean()
    loss = attraction + repulsion
    return (loss, attraction, repulsion) if return_terms else loss
