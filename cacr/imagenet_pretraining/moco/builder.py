"""MoCo-v3-style model with the CACR loss (spec §e.3, §f.3; original ``imagenet_pretraining/moco/builder.py``)."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from cacr.softmax_moments import logsumexp_of_projections, softmax_moments

COSTS = ("rbf", "euclidean")


def _gather_keys(k: torch.Tensor):
    """All processes' normalised keys (no gradient) and this process's rank."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from common.distributed import concat_all_gather
        return concat_all_gather(k), dist.get_rank()
    return k, 0


def attraction_weights(q_hat: torch.Tensor, k_hat: torch.Tensor, T: float) -> torch.Tensor:
    """p[j, n] = softmax over the query list j of ‖q̂_j[n] − k̂[n]‖²/T (no gradient).

    q_hat: J×N×D, k_hat: N×D → J×N.  Farther queries weigh more; one query gives p ≡ 1.
    """
    with torch.no_grad():
        return torch.softmax((q_hat - k_hat.unsqueeze(0)).pow(2).sum(-1) / T, dim=0)


def _positive_columns(batch: int, rank: int, n_queries: int, device) -> torch.Tensor:
    """Column of each query row's own key among the gathered keys: n + N·rank, repeated per query (J·N)."""
    return (torch.arange(batch, device=device) + batch * rank).repeat(n_queries)


def cacr_rbfloss(queries, k: torch.Tensor, T: float = 1.0, return_weights: bool = False):
    """RBF-cost CACR (default ``--cacr-cost=rbf``): a p-weighted InfoNCE over the query list.

    queries: list of J tensors N×D (un-normalised), k: N×D (un-normalised) →
    Σ_j (1/N) Σ_n p[j,n]·CE(q̂_j[n]·K̂ᵀ/T, n + N·rank)·2T with K̂ the keys of all processes.
    CE = logsumexp_m(q̂·K̂_mᵀ/T) − q̂·K̂_posᵀ/T; the log-partition is computed tile by tile with a hand-written
    gradient (``cacr.softmax_moments``), so no J×N×M logits are kept for the backward.
    """
    q_hat = F.normalize(torch.stack(list(queries)), dim=-1)
    k_hat = F.normalize(k, dim=-1)
    p = attraction_weights(q_hat, k_hat, T)
    k_all, rank = _gather_keys(k_hat)
    n_queries, batch, dim = q_hat.shape
    log_partition = logsumexp_of_projections(q_hat.reshape(-1, dim), k_all, 1.0 / T)
    positive_logit = (q_hat * k_all[batch * rank:batch * (rank + 1)]).sum(-1) / T               # J×N
    ce = log_partition.reshape(n_queries, batch) - positive_logit
    loss = (p * ce).sum() / batch * (2 * T)
    return (loss, p) if return_weights else loss


def cacr_euclideanloss(queries, k: torch.Tensor, T: float = 1.0, return_weights: bool = False):
    """Euclidean-cost CACR (``--cacr-cost=euclidean``).

    cost_j = 1 − q̂_j K̂ᵀ (J×N×M); attraction a = cost at the positive column; repulsion
    r = Σ_m ρ·ν over the M−1 negatives with ν = −cost and ρ = softmax_m(ν/T) (no gradient);
    loss = Σ_j Σ_n p[j,n]·(a + r) — a sum over the batch with no 2T factor (quirk §k.8, reproduced).
    As ρ is a constant that sums to 1, r = ⟨q̂, μ⟩ − 1 with μ = Σ_m ρ_m K̂_m (same value and gradient), and μ is
    computed tile by tile (``cacr.softmax_moments``) without the J×N×M cost matrix.
    """
    q_hat = F.normalize(torch.stack(list(queries)), dim=-1)
    k_hat = F.normalize(k, dim=-1)
    p = attraction_weights(q_hat, k_hat, T)
    k_all, rank = _gather_keys(k_hat)
    n_queries, batch, dim = q_hat.shape
    # softmax_m(ν/T) = softmax_m(q̂·K̂_mᵀ/T): the constant −1/T of every negative cancels
    _, negative_mean = softmax_moments(q_hat.detach().reshape(-1, dim), k_all, 1.0 / T,
                                       exclude=_positive_columns(batch, rank, n_queries, k.device))
    attraction = 1 - (q_hat * k_all[batch * rank:batch * (rank + 1)]).sum(-1)                    # J×N
    repulsion = (q_hat * negative_mean.to(q_hat.dtype).reshape(q_hat.shape)).sum(-1) - 1
    loss = ((attraction + repulsion) * p).sum()
    return (loss, p) if return_weights else loss


LOSSES = {"rbf": cacr_rbfloss, "euclidean": cacr_euclideanloss}


def cacr_multiview_loss(queries, keys, cost: str = "rbf", T: float = 1.0):
    """(1/len_k) Σ_{i<len_k} lossfn([q_j for j ≠ i], k_i) (spec §f.3 step 3).

    queries: list of all views' queries (2 global + local crops), keys: list of len_k keys.
    """
    lossfn = LOSSES[cost]
    terms = [lossfn([q for j, q in enumerate(queries) if j != i], k, T) for i, k in enumerate(keys)]
    return torch.stack(terms).mean()


class MoCo(nn.Module):
    """Base encoder (+ projector) → predictor; momentum encoder; CACR over global and local views.

    ``base_encoder`` / ``momentum_encoder`` are modules whose head is already the projector (the subclasses
    build them like the original; the golden checks pass linear stand-ins).
    """

    def __init__(self, base_encoder: nn.Module, momentum_encoder: nn.Module, predictor: nn.Module, T: float = 1.0):
        super().__init__()
        self.T = T
        self.base_encoder = base_encoder
        self.momentum_encoder = momentum_encoder
        self.predictor = predictor
        for param_b, param_m in zip(self.base_encoder.parameters(), self.momentum_encoder.parameters()):
            param_m.data.copy_(param_b.data)
            param_m.requires_grad = False

    @staticmethod
    def _build_mlp(num_layers, input_dim, mlp_dim, output_dim, last_bn=True):
        mlp = []
        for layer in range(num_layers):
            dim1 = input_dim if layer == 0 else mlp_dim
            dim2 = output_dim if layer == num_layers - 1 else mlp_dim
            mlp.append(nn.Linear(dim1, dim2, bias=False))
            if layer < num_layers - 1:
                mlp.append(nn.BatchNorm1d(dim2))
                mlp.append(nn.ReLU(inplace=True))
            elif last_bn:
                # the last BN has no affine parameters (as in SimCLR / MoCo v3)
                mlp.append(nn.BatchNorm1d(dim2, affine=False))
        return nn.Sequential(*mlp)

    @torch.no_grad()
    def _update_momentum_encoder(self, m):
        params_m = list(self.momentum_encoder.parameters())
        params_b = [p.detach() for p in self.base_encoder.parameters()]
        torch._foreach_mul_(params_m, m)
        torch._foreach_add_(params_m, params_b, alpha=1.0 - m)

    def forward(self, x1, x2, m, x_local=None, cost="rbf", use_full_mode=False):
        """x1, x2: global views N×3×H×W; x_local: list of local crops or None; m: momentum. → scalar loss."""
        views = [x1, x2] + list(x_local or [])
        # one pass per view: BN statistics are per view like the original (and crops differ in size)
        queries = [self.predictor(self.base_encoder(x)) for x in views]
        n_keys = len(views) if (use_full_mode and x_local) else 2
        with torch.no_grad():
            self._update_momentum_encoder(m)
            keys = [self.momentum_encoder(x) for x in views[:n_keys]]
        return cacr_multiview_loss(queries, keys, cost, self.T)


class MoCo_ResNet(MoCo):
    """torchvision ResNet (zero_init_residual): projector 2048→4096→256 (last BN), predictor 256→4096→256."""

    def __init__(self, base_encoder, dim=256, mlp_dim=4096, T=1.0):
        base = base_encoder(num_classes=mlp_dim, zero_init_residual=True)
        momentum = base_encoder(num_classes=mlp_dim, zero_init_residual=True)
        hidden_dim = base.fc.weight.shape[1]
        del base.fc, momentum.fc
        base.fc = self._build_mlp(2, hidden_dim, mlp_dim, dim)
        momentum.fc = self._build_mlp(2, hidden_dim, mlp_dim, dim)
        predictor = self._build_mlp(2, dim, mlp_dim, dim, False)
        super().__init__(base, momentum, predictor, T)


class MoCo_ViT(MoCo):
    """ViT (torchvision layout, head at ``heads.head``): projector 3 layers width→4096→4096→256 (last BN),
    predictor 256→4096→256 with last BN."""

    def __init__(self, base_encoder, dim=256, mlp_dim=4096, T=1.0):
        base = base_encoder(num_classes=mlp_dim)
        momentum = base_encoder(num_classes=mlp_dim)
        hidden_dim = base.heads.head.weight.shape[1]
        base.heads.head = self._build_mlp(3, hidden_dim, mlp_dim, dim)
        momentum.heads.head = self._build_mlp(3, hidden_dim, mlp_dim, dim)
        predictor = self._build_mlp(2, dim, mlp_dim, dim)
        super().__init__(base, momentum, predictor, T)
