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


def non_negative_positions(batch_size: int, n_anchor_views: int = 2, total_batch_size: int | None = None,
                           offset: int = 0, device=None) -> torch.Tensor:
    """Flat indices into the ``(V * b, V * B_all)`` similarity matrix of the entries that are *not* negatives
    (the complement of :func:`negative_mask`: each anchor's own column and its image's other anchor views),
    ``V`` per row; cached. Filling these ``V · V · b`` entries with -inf masks a row without a pass over the
    whole matrix."""
    total = batch_size if total_batch_size is None else total_batch_size
    key = ("positions", batch_size, n_anchor_views, total, offset, str(device))
    positions = _MASK_CACHE.get(key)
    if positions is None:
        rows = torch.arange(n_anchor_views * batch_size, device=device)
        image = rows % batch_size + offset
        columns = image[:, None] + total * torch.arange(n_anchor_views, device=device)[None, :]
        positions = (rows[:, None] * (n_anchor_views * total) + columns).flatten()
        if len(_MASK_CACHE) > 64:
            _MASK_CACHE.clear()
        _MASK_CACHE[key] = positions
    return positions


def own_positions(batch_size: int, n_anchor_views: int = 2, total_batch_size: int | None = None,
                  offset: int = 0, device=None) -> torch.Tensor:
    """Flat indices into the ``(V * b, V * B_all)`` similarity matrix of each row's own column (anchor view a
    of image i against itself), one per row; cached."""
    total = batch_size if total_batch_size is None else total_batch_size
    key = ("own", batch_size, n_anchor_views, total, offset, str(device))
    positions = _MASK_CACHE.get(key)
    if positions is None:
        rows = torch.arange(n_anchor_views * batch_size, device=device)
        columns = rows // batch_size * total + rows % batch_size + offset
        positions = rows * (n_anchor_views * total) + columns
        if len(_MASK_CACHE) > 64:
            _MASK_CACHE.clear()
        _MASK_CACHE[key] = positions
    return positions


def _positive_similarities(anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """s⁺[a, i, k] = ⟨anchor view a of image i, positive view k of image i⟩: ``(V, b, D)``, ``(M, b, D)`` →
    ``(V, b, M)`` (one small batched GEMM per image; einsum's dispatch cost more than the product here)."""
    return torch.bmm(anchors.transpose(0, 1), positives.permute(1, 2, 0)).transpose(0, 1)


def _softmax_(matrix: torch.Tensor) -> torch.Tensor:
    """Row softmax of a 2-D tensor written over it (one fused pass, no second n × n buffer)."""
    return torch.ops.aten._softmax.out(matrix, 1, False, out=matrix)


class _AttentioNCERows(torch.autograd.Function):
    """Per-anchor AttentioNCE losses ``(V * b,)`` (or their mean, ``mean=True``) with a hand-written gradient.

    The negatives are never copied out of the ``(V*b, V*B_all)`` similarity matrix S: the V non-negative
    entries of each row are set to -inf (a V-per-row fill, no mask pass) and β and the negative logits are
    formed on S itself, so there is no ``masked_select`` / scatter-back. The positive logit ℓ⁺ is written into
    the anchor's own column (a non-negative, so free), which makes the loss's softmax over [ℓ⁺, ℓ⁻] one fused
    row softmax of that matrix, done in place like β's; log Σ exp is read back from the row's largest weight.
    S is formed as the GEMM of the anchors pre-scaled by N/T (a pass over ``V*b × D``, not ``V*b × V*B_all``):
    then ℓ⁻ = (softmax + 1e-6) ⊙ S needs no scaling pass, and β/T = (N/T)(softmax + 1e-6). The forward keeps
    W = w ⊙ (softmax + 1e-6) (zero in the own column), from which dLoss/dS = G = diag(u) · (N/T) W for upstream
    per-anchor gradients u; under ``mean=True`` u is one number, folded into the ``V*b × D`` operand of the
    backward GEMM instead of a pass over W. With α and β detached:
        dL_n/dℓ⁺_n = w⁺_n − 1,   dL_n/ds⁻_nj = w_nj β_nj / T,   dℓ⁺_n/ds⁺_nk = α_nk / T,
    w = softmax over [ℓ⁺_n, ℓ⁻_n·] of row n. Single process (columns = rows), dL/drows = (G + Gᵀ) rows: one
    GEMM and a transposed add instead of two GEMMs.
    """

    @staticmethod
    def forward(ctx, anchors, positives, all_anchors, offset, temperature, d_pos, d_neg, mean):
        with torch.autocast(anchors.device.type, enabled=False):
            n_views, batch_size, dim = anchors.shape
            columns_source = anchors if all_anchors is None else all_anchors
            total = columns_source.shape[1]
            rows = anchors.reshape(n_views * batch_size, dim)
            columns = columns_source.reshape(n_views * total, dim)

            pos_sim = _positive_similarities(anchors, positives).reshape(n_views * batch_size, -1)
            alpha = torch.softmax(pos_sim / d_pos, dim=1)
            pos_logit = (alpha * pos_sim).sum(dim=1) / temperature

            n_neg = n_views * total - n_views
            scale = n_neg / temperature
            similarity = (rows * scale) @ columns.t()                  # S = (N/T) s
            excluded = non_negative_positions(batch_size, n_views, total, offset, anchors.device)
            own = own_positions(batch_size, n_views, total, offset, anchors.device)
            # the non-negatives become -inf: weight 0 in both softmaxes (β there is > 0, so ℓ⁻ stays -inf)
            similarity.view(-1).index_fill_(0, excluded, float("-inf"))
            # β T / N = softmax_j(s⁻/d_neg) + 1e-6, in a second buffer (the only other n × n one); the fill
            # again after the division: -inf / d_neg is NaN for d_neg = inf (uniform β, as in the original)
            attention = torch.div(similarity, scale * d_neg)
            attention.view(-1).index_fill_(0, excluded, float("-inf"))
            _softmax_(attention).add_(BETA_EPSILON)
            logits = similarity.mul_(attention)                        # ℓ⁻ = β s⁻ / T
            logits.view(-1).index_copy_(0, own, pos_logit)              # ℓ⁺ in the anchor's own column
            peak = logits.amax(dim=1)
            weights = _softmax_(logits)                                 # w over [ℓ⁺, ℓ⁻] of each row
            # log Σ exp ℓ read back from the row's largest weight exp(max ℓ − log Σ exp ℓ) ≥ 1 / (N + 1): finite
            # even where w⁺ underflows, so the loss stays finite as with a log-sum-exp
            log_normaliser = peak - weights.amax(dim=1).log_()
            per_anchor = log_normaliser - pos_logit
            if any(ctx.needs_input_grad[:3]):
                pos_slope = (weights.view(-1)[own] - 1)[:, None] * alpha / temperature     # (w⁺ − 1) α / T
                slope = weights.mul_(attention)                                             # W; G = u (N/T) W
                slope.view(-1).index_fill_(0, own, 0.0)                 # the own column is ℓ⁺'s, not a negative
                ctx.save_for_backward(anchors, positives, all_anchors, slope, pos_slope)
        ctx.single, ctx.mean, ctx.scale = all_anchors is None, mean, scale
        return per_anchor.mean() if mean else per_anchor

    @staticmethod
    def backward(ctx, grad_per_anchor):
        anchors, positives, all_anchors, slope, pos_slope = ctx.saved_tensors
        n_views, batch_size, dim = anchors.shape
        rows = anchors.reshape(n_views * batch_size, dim)
        if ctx.mean:   # u = grad / (V b) for every anchor: G = c W, with c folded into the other GEMM operand
            upstream = grad_per_anchor / (n_views * batch_size)
            grad_sim, row_weight = slope, upstream * ctx.scale
        else:
            upstream = grad_per_anchor[:, None]
            grad_sim, row_weight = slope.mul_(upstream * ctx.scale), 1.0   # G, in place (used once)
        grad_pos_sim = (pos_slope * upstream).view(n_views, batch_size, -1)
        grad_all = None
        if ctx.single:
            # G + Gᵀ: ``copy_`` of a transposed matrix takes a blocked path, several times faster than an add
            # that reads one operand column by column
            grad_rows = torch.empty_like(grad_sim).copy_(grad_sim.t()).add_(grad_sim) @ (rows * row_weight)
        else:
            grad_rows = grad_sim @ (all_anchors.reshape(-1, dim) * row_weight)
            if ctx.needs_input_grad[2]:
                grad_all = (grad_sim.t() @ (rows * row_weight)).view(all_anchors.shape)
        # s⁺ = bmm over images: d/danchors[:, i] = g⁺_i P_iᵀ, d/dpositives[:, i] = g⁺_iᵀ A_i
        grad_pos_by_image = grad_pos_sim.transpose(0, 1)                          # (b, V, M)
        grad_anchors = grad_rows.view_as(anchors)
        grad_anchors += torch.bmm(grad_pos_by_image, positives.transpose(0, 1)).transpose(0, 1)
        grad_positives = None
        if ctx.needs_input_grad[1]:
            grad_positives = torch.bmm(grad_pos_by_image.transpose(1, 2), anchors.transpose(0, 1)).transpose(0, 1)
        return grad_anchors, grad_positives, grad_all, None, None, None, None, None


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
    if positives.shape[1:] != (batch_size, dim):
        raise ValueError(f"positives {tuple(positives.shape)} do not match anchors {tuple(anchors.shape)}")
    if reduction == "mean" and not return_intermediates:
        return _AttentioNCERows.apply(anchors, positives, all_anchors, offset, temperature, d_pos, d_neg, True)
    per_anchor = _AttentioNCERows.apply(anchors, positives, all_anchors, offset, temperature, d_pos, d_neg, False)
    loss = per_anchor.mean() if reduction == "mean" else per_anchor
    if not return_intermediates:
        return loss
    with torch.no_grad():   # the spec's quantities one by one, for the golden fixtures and tests
        pos_sim = torch.einsum("aid,kid->aik", anchors, positives).reshape(n_views * batch_size, -1)
        alpha = torch.softmax(pos_sim / d_pos, dim=1)
        pos_logit = (alpha * pos_sim).sum(dim=1) / temperature
        _, neg_sim, mask = _negative_similarities(anchors, all_anchors, offset)
        beta = neg_sim.shape[1] * (torch.softmax(neg_sim / d_neg, dim=1) + BETA_EPSILON)
        neg_score = (beta * neg_sim / temperature).exp()
    intermediates = {
        "loss_per_anchor": per_anchor.detach(), "pos_sim": pos_sim, "alpha": alpha, "pos_logit": pos_logit,
        "pos_score": pos_logit.exp(), "neg_mask": mask, "neg_sim": neg_sim, "beta": beta,
        "neg_score": neg_score, "neg_score_sum": neg_score.sum(dim=1),
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
        # anchors and positives stacked apart: slices of one stack would each scatter their gradient into a
        # zero-filled copy of all six views in the backward
        if torch.is_tensor(views):
            anchors, positives = views[: self.n_anchor_views], views[self.n_anchor_views:]
        else:
            views = list(views)
            anchors = torch.stack(views[: self.n_anchor_views])
            positives = torch.stack(views[self.n_anchor_views:]) if len(views) > self.n_anchor_views else None
        all_anchors, offset = self._gather(anchors)
        if self.loss == "simclr":
            return simclr_loss(anchors, self.temperature, all_anchors, offset)
        if positives is None or positives.shape[0] == 0:
            raise ValueError("AttentioNCE needs at least one positive view besides the anchors")
        return attentionce_loss(anchors, positives, self.temperature, self.d_pos, self.d_neg, all_anchors, offset)
