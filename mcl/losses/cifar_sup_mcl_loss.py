"""In-batch supervised Mutual Contrastive Learning for CIFAR (spec §f.1, original
``losses/cifar_sup_mcl_loss.py``): vanilla (VCL), soft vanilla, interactive (ICL) and soft interactive
contrastive losses between N networks, plus the per-network embedding heads (§e.6)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from common.utils import UserError
from mcl.losses.kd import kl_divergence


class Normalize(nn.Module):
    """Row-wise L2 normalisation x / ‖x‖₂ without an epsilon, like the original (quirk 4)."""

    def forward(self, x):
        return x / x.pow(2).sum(dim=1, keepdim=True).sqrt()


class Embed(nn.Module):
    """MCL embedding head: Linear(rep_dim→D) → ReLU → Linear(D→D) → L2-normalise (§e.6).

    ``flatten=True`` is the ImageNet variant, which first flattens its input to (B, -1).
    """

    def __init__(self, dim_in: int, dim_out: int = 128, flatten: bool = False):
        super().__init__()
        self.flatten = flatten
        self.proj_head = nn.Sequential(nn.Linear(dim_in, dim_out), nn.ReLU(inplace=True),
                                       nn.Linear(dim_out, dim_out))
        self.l2norm = Normalize()

    def forward(self, x):
        if self.flatten:
            x = x.reshape(x.shape[0], -1)
        return self.l2norm(self.proj_head(x))


def supervised_contrastive_rows(logits: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """ℓ(L) = −(1/B) Σ_a (1/|P_a|) Σ_b P_ab (L_ab − log Σ_k M_ak exp L_ak), summed over leading axes.

    Args:
        logits: (..., B, B) similarity logits L.
        positive: (B, B) float mask P (same class, diagonal excluded).
        valid: (B, B) bool mask M of denominator entries (everything but the diagonal).
    The original exponentiates without max-subtraction; a log-sum-exp over the masked row is the same
    number, computed stably (quirk 4).
    """
    log_denominator = torch.logsumexp(logits.masked_fill(~valid, float("-inf")), dim=-1, keepdim=True)
    log_prob = logits - log_denominator
    per_anchor = (positive * log_prob).sum(dim=-1) / positive.sum(dim=-1)
    return -per_anchor.mean(dim=-1).sum()


def check_same_class_partner(labels: torch.Tensor) -> None:
    """Raise a ``UserError`` if some anchor has no other sample of its class in the batch (quirk 3).

    The original silently returns NaN (0/0) there. Call it on CPU labels (no device sync).
    """
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    lonely = counts[inverse] < 2
    if bool(lonely.any()):
        raise UserError(
            f"{int(lonely.sum())} sample(s) of the batch have no other sample of the same class "
            f"(labels {sorted(set(labels[lonely].tolist()))[:10]}), so the supervised contrastive loss is "
            "undefined (NaN in the original). Use the MPerClassSampler (m=2, the default of main_cifar.py) "
            "and a batch size that is a multiple of 2.")


def sup_mcl_losses(embeddings: torch.Tensor, labels: torch.Tensor, tau: float, kd_T: float):
    """The four in-batch MCL losses.

    Args:
        embeddings: (N, B, D) L2-normalised embeddings z_i of the N networks (N ≥ 2).
        labels: (B,) int class labels; every label must occur at least twice.
        tau: contrastive temperature τ; kd_T: KL temperature T of the soft losses.
    With S^{ij} = z_i z_jᵀ/τ (anchor rows of network i against network j):
        vcl      = Σ_i ℓ(S^{ii})
        soft_vcl = Σ_{i≠j} KL_T(S^{ii} ‖ detach S^{jj})
        icl      = Σ_{i≠j} ℓ(S^{ij})   (same-image pair excluded from positives and denominator, quirk 2)
        soft_icl = Σ_{i≠j} KL_T(S^{ij} ‖ detach S^{ji})
    Returns: (vcl, soft_vcl, icl, soft_icl), each a () tensor (sums over networks, means over anchors).
    """
    number_net, batch = embeddings.shape[:2]
    if number_net < 2:
        raise ValueError("MCL needs at least two networks (quirk 21)")
    similarity = torch.einsum("ibd,jcd->ijbc", embeddings, embeddings) / tau      # (N, N, B, B)
    eye = torch.eye(batch, dtype=torch.bool, device=embeddings.device)
    positive = ((labels[:, None] == labels[None, :]) & ~eye).to(similarity.dtype)
    intra = similarity.diagonal(dim1=0, dim2=1).permute(2, 0, 1)                 # (N, B, B) = S^{ii}
    off_diagonal = ~torch.eye(number_net, dtype=torch.bool, device=embeddings.device)
    inter = similarity[off_diagonal]                                             # (N(N-1), B, B) = S^{ij}, i≠j
    inter_transposed = similarity.transpose(0, 1)[off_diagonal]                  # matching S^{ji}

    vcl = supervised_contrastive_rows(intra, positive, ~eye)
    icl = supervised_contrastive_rows(inter, positive, ~eye)

    # ordered pairs (i, j), i ≠ j: student S^{ii}, teacher S^{jj}
    student_index, teacher_index = off_diagonal.nonzero(as_tuple=True)
    intra_teacher = intra.detach()
    soft_vcl = kl_divergence(intra[student_index], intra_teacher[teacher_index], kd_T)
    soft_icl = kl_divergence(inter, inter_transposed.detach(), kd_T)
    return vcl, soft_vcl, icl, soft_icl


class SupMCLLoss(nn.Module):
    """N embedding heads + the in-batch MCL losses (``Sup_MCL_Loss`` of the original).

    Args:
        rep_dims: backbone embedding dim of each network (read with a dummy forward).
        feat_dim: head output dim D; tau: τ; kd_T: T of the soft losses.
    ``forward(embeddings: list of N (B, rep_dim) tensors, labels (B,))`` → (vcl, soft_vcl, icl, soft_icl).
    Unlike the original (quirk 23) the caller's list is not overwritten.
    """

    def __init__(self, rep_dims: Sequence[int], feat_dim: int = 128, tau: float = 0.1, kd_T: float = 3.0,
                 check_partners: bool = True):
        super().__init__()
        if len(rep_dims) < 2:
            raise UserError("MCL needs --number-net ≥ 2 (the mutual terms compare networks; quirk 21)")
        self.embed_list = nn.ModuleList([Embed(d, feat_dim) for d in rep_dims])
        self.tau = tau
        self.kd_T = kd_T
        self.check_partners = check_partners

    def embed(self, embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
        """(N, B, D) normalised head outputs."""
        return torch.stack([head(e) for head, e in zip(self.embed_list, embeddings)])

    def contrast(self, z: torch.Tensor, labels: torch.Tensor):
        """The four losses from already-embedded (N, B, D) ``z`` (heads run inside the DDP model)."""
        if self.check_partners and labels.device.type == "cpu":
            check_same_class_partner(labels)
        return sup_mcl_losses(z, labels, self.tau, self.kd_T)

    def forward(self, embeddings: Sequence[torch.Tensor], labels: torch.Tensor):
        return self.contrast(self.embed(embeddings), labels)


Sup_MCL_Loss = SupMCLLoss
