"""Row-wise softmax over a large set of projections without materialising it (CACR's queue / MoCo-v3 losses).

Both CACR ImageNet losses take a softmax over N × M logits ``scale · x yᵀ`` (M = 65,536 queue entries, or the
4,096 gathered keys) and only need two row statistics of it: the log-partition and the softmax-weighted mean
of the rows of ``y``.  Computing them tile by tile (online rescaling, as in flash attention) keeps every
intermediate at ~1 MB, so it stays in cache and is never freshly mapped by the allocator, instead of the several
N × M tensors (and their autograd copies) that the plain expression builds.
"""
from __future__ import annotations

import torch

# CPU: logits per tile 2^18 float32 = 1 MB, small enough for L2 and below glibc's mmap threshold
_TILE_ELEMENTS = 1 << 18
_TILE_ROWS = 256
# accelerators: per-tile kernel launches are the cost, not cache, so tiles of up to 2^24 logits (64 MB)
_ACCELERATOR_TILE_ELEMENTS = 1 << 24
# the tiles work in base 2: exp(t) = 2^(t·log2 e) with log2 e folded into the scale of the GEMM's left operand,
# because exp2 is the cheaper kernel (CPU: ~0.9 against ~1.6 ns per float32 element, the largest cost after
# the two GEMMs); log-partitions are converted back with ln 2
_LOG2_E = 1.4426950408889634
_LN_2 = 0.6931471805599453


@torch.no_grad()
def softmax_moments(x: torch.Tensor, y: torch.Tensor, scale: float = 1.0, exclude: torch.Tensor | None = None):
    """lse[n] = log Σ_m exp(scale·⟨x_n, y_m⟩) and mean[n] = Σ_m softmax_m(scale·⟨x_n, y_m⟩)·y_m (no gradient).

    x: N×D, y: M×D, exclude: optional N (int64) column left out of row n's softmax (the positive key).
    → (lse N, mean N×D).  The logits are formed as ⟨scale·log2(e)·x_n, y_m⟩ (base 2).  Half-precision inputs
    (autocast) are computed in float32, like the float32 softmax / cross-entropy that autocast gives the original.
    """
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        return _softmax_moments(x.to(dtype), y.to(dtype), scale, exclude)


def _softmax_moments(x, y, scale, exclude):
    n_rows, n_cols = x.shape[0], y.shape[0]
    x_scaled = x * (scale * _LOG2_E)                                                # logits in log2 units
    lse = x.new_empty(n_rows)
    mean = x.new_empty(n_rows, x.shape[1])
    if x.device.type == "cpu":
        tile_rows = max(1, min(n_rows, _TILE_ROWS))
        tile_cols = max(1, min(n_cols, max(_TILE_ROWS, _TILE_ELEMENTS // tile_rows)))
    else:
        tile_rows = max(n_rows, 1)
        tile_cols = max(1, min(n_cols, max(_TILE_ROWS, _ACCELERATOR_TILE_ELEMENTS // tile_rows)))
    for r0 in range(0, n_rows, tile_rows):
        xr = x_scaled[r0:r0 + tile_rows]
        rows = xr.shape[0]
        run_max = x.new_full((rows,), float("-inf"))
        run_sum = x.new_zeros(rows)
        acc = x.new_zeros(rows, x.shape[1])
        excl = exclude[r0:r0 + rows] if exclude is not None else None
        for c0 in range(0, n_cols, tile_cols):
            yc = y[c0:c0 + tile_cols]
            logits = xr @ yc.t()                                                   # rows × cols
            if excl is not None:
                # −inf at the excluded column when it falls in this tile (gather/scatter: no host sync)
                local = (excl - c0).clamp(0, yc.shape[0] - 1).unsqueeze(1)
                inside = ((excl >= c0) & (excl < c0 + yc.shape[0])).unsqueeze(1)
                logits.scatter_(1, local, torch.where(inside, float("-inf"), logits.gather(1, local)))
            new_max = torch.maximum(run_max, logits.amax(1))
            rescale = torch.exp2(run_max - new_max)
            weights = logits.sub_(new_max.unsqueeze(1)).exp2_()                     # in place: one buffer
            run_sum = run_sum * rescale + weights.sum(1)
            acc = torch.addmm(acc * rescale.unsqueeze(1), weights, yc)
            run_max = new_max
        lse[r0:r0 + rows] = (run_max + run_sum.log2()) * _LN_2
        mean[r0:r0 + rows] = acc / run_sum.unsqueeze(1)
    return lse, mean


class _LogSumExpOfProjections(torch.autograd.Function):
    """lse[n] = log Σ_m exp(scale·⟨x_n, y_m⟩); d lse[n] / d x_n = scale · Σ_m softmax_m · y_m (y constant)."""

    @staticmethod
    def forward(ctx, x, y, scale, exclude):
        lse, mean = softmax_moments(x, y, scale, exclude)
        ctx.save_for_backward(mean)
        ctx.scale, ctx.x_dtype = scale, x.dtype
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse):
        mean, = ctx.saved_tensors
        return (grad_lse.unsqueeze(1) * (ctx.scale * mean)).to(ctx.x_dtype), None, None, None


def logsumexp_of_projections(x: torch.Tensor, y: torch.Tensor, scale: float = 1.0,
                             exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable in x (first order) lse[n] = log Σ_{m ≠ exclude[n]} exp(scale·⟨x_n, y_m⟩).

    x: N×D, y: M×D without gradient (keys / a queue), exclude: optional N column indices → N.
    The backward keeps only the N×D softmax-weighted mean of y, never the N×M softmax.
    """
    if y.requires_grad:
        raise RuntimeError("logsumexp_of_projections: y must not require gradient (its gradient is not computed)")
    return _LogSumExpOfProjections.apply(x, y, scale, exclude)
