"""Small-scale CACR loss: contrastive attraction (``our_loss1``) + contrastive repulsion (``our_loss2``).

Reference: spec §f.1 (``small_scale_experiments/losses/__init__.py`` of the original).  Inputs are V views
``z_0 … z_{V-1}`` of one batch, each ``B×D`` and already L2-normalised by the encoder.  Nothing is detached:
the gradient flows through the costs *and* through the softmax weights (quirk §k.3, reproduced).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from common.losses import nt_xent
from common.utils import UserError

CHOICES = ("full", "without_w1", "without_w2", "none")
COSTS = ("euclidean", "rbf")


def _stack_views(views) -> torch.Tensor:
    return torch.stack(list(views)) if not torch.is_tensor(views) else views


def attraction_distances(z: torch.Tensor) -> torch.Tensor:
    """d1[x, i, y'] = ‖z_x[i] − z_y[i]‖² for the other views y ≠ x in increasing order.

    z: V×B×D → V×B×(V−1).  The difference form (not 2 − 2⟨·,·⟩) matches the original's gradient.
    """
    n_views, batch, _ = z.shape
    per_sample = z.transpose(0, 1)                                                  # B×V×D
    d = (per_sample.unsqueeze(2) - per_sample.unsqueeze(1)).pow(2).sum(-1)          # B×V×V
    off_diagonal = ~torch.eye(n_views, dtype=torch.bool, device=z.device)
    return d[:, off_diagonal].reshape(batch, n_views, n_views - 1).transpose(0, 1)


def view_pairs(n_views: int, device=None) -> torch.Tensor:
    """The unordered view pairs (x, y), x < y, in the original's loop order: P×2 (int64)."""
    return torch.triu_indices(n_views, n_views, offset=1, device=device).t()


def repulsion_distances(z: torch.Tensor, pairs: torch.Tensor | None = None):
    """d2[p, i, :] = ‖z_x[i] − z_y[j]‖² for j ≠ i (row-major off-diagonal) and the positive ‖z_x[i] − z_y[i]‖².

    z: V×B×D → (P×B×(B−1), P×B).  ‖a‖² + ‖b‖² − 2⟨a, b⟩ has the same gradient as the difference form
    (2a − 2b) without the P×B×B×D intermediate.
    """
    n_views, batch, _ = z.shape
    if pairs is None:
        pairs = view_pairs(n_views, z.device)
    anchors, others = z[pairs[:, 0]], z[pairs[:, 1]]                                # P×B×D
    sq_a = anchors.pow(2).sum(-1)
    sq_o = others.pow(2).sum(-1)
    d = sq_a.unsqueeze(2) + sq_o.unsqueeze(1) - 2 * anchors @ others.transpose(1, 2)  # P×B×B
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=z.device)
    positive = (anchors - others).pow(2).sum(-1)                                    # P×B
    return d[:, off_diagonal].reshape(len(pairs), batch, batch - 1), positive


def contrastive_attraction(z: torch.Tensor, alpha: float = 1.0, tau_pos: float = 1.0, choice: str = "full"):
    """L_CA of spec §f.1 (``our_loss1``).

    z: V×B×D unit-norm views.  Returns (scalar loss, w1 V×B×(V−1), d1 V×B×(V−1)).
    ``full``/``without_w2``: (1/V) Σ_x (1/B) Σ_i Σ_y w1·α·d1 with w1 = softmax_y(α·d1·τ₊/α);
    ``without_w1``/``none``: the plain mean of α·d1 (quirk §k.4: a mean, (V−1)× smaller than a sum).
    """
    d1 = attraction_distances(z)
    cost = alpha * d1
    # written as cost·τ/α like the original: α = 0 gives NaN weights (quirk §k.6, guarded in CACRLoss)
    weights = torch.softmax(cost * tau_pos / alpha, dim=-1)
    if choice in ("full", "without_w2"):
        loss = (weights * cost).sum(-1).mean()
    else:
        loss = cost.mean()
    return loss, weights, d1


def contrastive_repulsion(z: torch.Tensor, beta: float = 1.0, tau_neg: float = 1.0, choice: str = "full",
                          with_debiased: bool = False, tau_plus: float = 0.1, cost_type: str = "euclidean",
                          rbf_t: float = 2.0):
    """L_CR of spec §f.1 (``our_loss2``): mean over the P = V(V−1)/2 view pairs x < y of ℓ_xy.

    z: V×B×D.  Returns (scalar loss, w2 P×B×(B−1), d2 P×B×(B−1)).
    euclidean: cost = −β·d2, w2 = softmax_j(cost·τ₋/β);  ``full``: ℓ = (1/B) Σ_i Σ_j w2·cost;
    debiased: ℓ = (1/B) Σ_i [−τ⁺·‖z_x[i] − z_y[i]‖² + Σ_j w2·cost] / (1 − τ⁺) (positive not scaled by β, §k.5);
    uniform (``without_w2``/``none``): mean of cost.
    rbf (the original's commented-out variant): cost = exp(−t·d2), w2 = softmax(log(cost)·τ₋/t),
    ℓ = β·log((1/B) Σ_i Σ_j w2·cost) (``full``) or β·log(mean cost).
    """
    d2, positive = repulsion_distances(z)
    weighted = choice in ("full", "without_w1")
    if cost_type == "rbf":
        cost = torch.exp(-rbf_t * d2)
        weights = torch.softmax(torch.log(cost) * tau_neg / rbf_t, dim=-1)
        if weighted:
            per_pair = beta * torch.log((weights * cost).sum(-1).mean(-1))
        else:
            per_pair = beta * torch.log(cost.mean(dim=(1, 2)))
        return per_pair.mean(), weights, d2
    cost = -beta * d2
    weights = torch.softmax(cost * tau_neg / beta, dim=-1)
    if weighted:
        per_anchor = (weights * cost).sum(-1)
        if with_debiased and choice == "full":
            per_anchor = (-tau_plus * positive + per_anchor) / (1 - tau_plus)
        per_pair = per_anchor.mean(-1)
    else:
        per_pair = cost.mean(dim=(1, 2))
    return per_pair.mean(), weights, d2


def our_loss1(views: Sequence[torch.Tensor], alpha: float = 1.0, tau_pos: float = 1.0, choice: str = "full"):
    """Original API: (L_CA, w1 of the last query view B×(V−1))."""
    loss, weights, _ = contrastive_attraction(_stack_views(views), alpha, tau_pos, choice)
    return loss, weights[-1]


def our_loss2(views: Sequence[torch.Tensor], beta: float = 1.0, tau_neg: float = 1.0, tau_plus: float = 0.1,
              choice: str = "full", with_debiased: bool = False, cost_type: str = "euclidean", rbf_t: float = 2.0):
    """Original API: (L_CR, w2 of the last view pair B×(B−1))."""
    loss, weights, _ = contrastive_repulsion(_stack_views(views), beta, tau_neg, choice, with_debiased, tau_plus,
                                             cost_type, rbf_t)
    return loss, weights[-1]


class CACRLoss(nn.Module):
    """L = L_CA + L_CR over V views of one batch (stateless; single process like the original).

    forward(views: list of V tensors B×D, unit norm) → (loss, loss1, loss2).
    """

    def __init__(self, alpha=1.0, beta=1.0, tau_pos=1.0, tau_neg=1.0, choice="full", with_debiased=False,
                 tau_plus=0.1, cost="euclidean", rbf_t=2.0):
        super().__init__()
        if choice not in CHOICES:
            raise UserError(f"--choice must be one of {CHOICES}, got {choice!r}")
        if cost not in COSTS:
            raise UserError(f"--cost must be one of {COSTS}, got {cost!r}")
        if alpha == 0 or beta == 0:
            # quirk §k.6: the weights are computed as cost·τ/α (resp. β), so 0 gives NaN
            raise UserError("--alpha and --beta must be non-zero (the weights are softmax(cost·tau/alpha) in the "
                            "original, so 0 gives NaN); use a small positive value instead")
        if with_debiased and not 0 <= tau_plus < 1:
            raise UserError(f"--tau_plus must be in [0, 1) for --with_debiased, got {tau_plus}")
        self.alpha, self.beta, self.tau_pos, self.tau_neg = alpha, beta, tau_pos, tau_neg
        self.choice, self.with_debiased, self.tau_plus = choice, with_debiased, tau_plus
        self.cost, self.rbf_t = cost, rbf_t

    def forward(self, views):
        z = _stack_views(views)
        if z.shape[0] < 2:
            raise UserError("CACR needs at least two views (--Ny >= 1)")
        loss1, _, _ = contrastive_attraction(z, self.alpha, self.tau_pos, self.choice)
        loss2, _, _ = contrastive_repulsion(z, self.beta, self.tau_neg, self.choice, self.with_debiased,
                                            self.tau_plus, self.cost, self.rbf_t)
        return loss1 + loss2, loss1, loss2


class SimCLRBaseline(nn.Module):
    """The plain SimCLR baseline (``--loss simclr``, not in the original): NT-Xent (``common.losses.nt_xent``)
    over the same V views, so a baseline run differs from a CACR run in the loss only.

    forward(views: list of V tensors B×D, unit norm) → (loss, attraction, repulsion) with loss = attraction +
    repulsion (−mean positive logit, mean log-partition), logged as loss1 / loss2 like CACR's two terms.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if temperature <= 0:
            raise UserError(f"--temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, views):
        return nt_xent(_stack_views(views), self.temperature, return_terms=True)
