"""Memory-bank supervised Mutual Contrastive Learning for ImageNet (spec §f.2, original
``losses/imagenet_sup_mcl_loss.py``): per-network memory banks of embeddings, sampled same-class
positives and other-class negatives (CRD-style), momentum update of the anchors' rows."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from common.utils import UserError
from mcl.losses.cifar_sup_mcl_loss import Embed, Normalize  # noqa: F401  (re-exported like the original)
from mcl.losses.kd import kl_divergence


def nce_rows(logits: torch.Tensor, num_positive: int) -> torch.Tensor:
    """n_P(L) = −(1/B) Σ_b (1/P) Σ_{k<P} (L_bk − log Σ_k' exp L_bk'), summed over leading axes.

    Args:
        logits: (..., B, K) with the first ``num_positive`` = P columns positive.
    """
    log_prob = logits[..., :num_positive] - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -log_prob.mean(dim=-1).mean(dim=-1).sum()


def memory_mcl_losses(embeddings: torch.Tensor, memory: torch.Tensor, pos_idx: torch.Tensor,
                      neg_idx: torch.Tensor, tau: float, kd_T: float):
    """The four memory-bank MCL losses.

    Args:
        embeddings: (N, B, D) normalised embeddings z_i.
        memory: (N, n_data, D) memory banks V_i (no gradient is taken through them).
        pos_idx: (B, 1+pos_k) int64; column 0 = the anchor's own dataset index, then same-class indices.
        neg_idx: (B, neg_k) int64 other-class indices.
    With idx = [pos_idx, neg_idx] (K₁ columns) and A^{ij}_{bk} = ⟨V_i[idx_bk], z_j[b]⟩/τ:
        icl      = Σ_{i≠j} n_{1+pos_k}(A^{ij})
        soft_icl = Σ_{i≠j} KL_T(A^{ij} ‖ detach A^{ji})
        vcl      = Σ_i n_{pos_k}(C^i),   C^i = A^{ii} without column 0 (own instance dropped)
        soft_vcl = Σ_{i≠j} KL_T(C^i ‖ detach C^j)
    Returns: (vcl, soft_vcl, icl, soft_icl), () tensors.
    """
    number_net = embeddings.shape[0]
    num_positive = pos_idx.shape[1]
    index = torch.cat([pos_idx, neg_idx], dim=1)                                 # (B, K1)
    # index_select on the flat index reads the bank once; advanced indexing with a 2-D index is ~2x slower
    rows = memory.detach().index_select(1, index.flatten()).view(memory.shape[0], *index.shape, memory.shape[-1])  # (N, B, K1, D)
    # logits[i, j] = A^{ij}: memory of network i, anchors of network j
    logits = torch.einsum("ibkd,jbd->ijbk", rows, embeddings) / tau              # (N, N, B, K1)
    off_diagonal = ~torch.eye(number_net, dtype=torch.bool, device=embeddings.device)
    inter = logits[off_diagonal]
    inter_transposed = logits.transpose(0, 1)[off_diagonal]
    icl = nce_rows(inter, num_positive)
    soft_icl = kl_divergence(inter, inter_transposed.detach(), kd_T)

    intra = logits.diagonal(dim1=0, dim2=1).permute(2, 0, 1)[..., 1:]            # (N, B, K2)
    vcl = nce_rows(intra, num_positive - 1)
    student_index, teacher_index = off_diagonal.nonzero(as_tuple=True)
    soft_vcl = kl_divergence(intra[student_index], intra.detach()[teacher_index], kd_T)
    return vcl, soft_vcl, icl, soft_icl


@torch.no_grad()
def update_memory(memory: torch.Tensor, embeddings: torch.Tensor, anchor_idx: torch.Tensor, momentum: float) -> None:
    """In place: V_i[r_b] ← normalise(m·V_i[r_b] + (1−m)·z_i[b]) for every network i and anchor b.

    Args: memory (N, n_data, D); embeddings (N, B, D); anchor_idx (B,) distinct dataset indices.
    """
    rows = memory[:, anchor_idx] * momentum + embeddings.detach().to(memory.dtype) * (1 - momentum)
    rows = rows / rows.pow(2).sum(dim=-1, keepdim=True).sqrt()
    memory.index_copy_(1, anchor_idx, rows)


class ContrastMemory(nn.Module):
    """N memory banks (one buffer of shape (N, n_data, D)), initialised like the original: uniform in
    ±1/sqrt(D/3), rows not normalised (quirk 19). Saved in checkpoints (quirk 15 fixed)."""

    def __init__(self, feat_dim: int, n_data: int, number_net: int, momentum: float = 0.5):
        super().__init__()
        self.momentum = momentum
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        self.register_buffer("memory", torch.rand(number_net, n_data, feat_dim).mul_(2 * stdv).add_(-stdv))

    def update(self, embeddings: torch.Tensor, anchor_idx: torch.Tensor) -> None:
        update_memory(self.memory, embeddings, anchor_idx, self.momentum)


class SupMCLLoss(nn.Module):
    """N heads (flattening ``Embed``) + memory banks + the memory-bank MCL losses (``Sup_MCL_Loss``).

    ``forward(embeddings: list of N (B, rep_dim[, 1, 1]) tensors, pos_idx, neg_idx)`` →
    (vcl, soft_vcl, icl, soft_icl); the memory rows of the anchors are updated afterwards.
    """

    def __init__(self, rep_dims: Sequence[int], n_data: int, feat_dim: int = 128, tau: float = 0.07,
                 kd_T: float = 3.0, nce_m: float = 0.5):
        super().__init__()
        if len(rep_dims) < 2:
            raise UserError("MCL needs --number-net ≥ 2 (the mutual terms compare networks; quirk 21)")
        self.embed_list = nn.ModuleList([Embed(d, feat_dim, flatten=True) for d in rep_dims])
        self.contrast_memory = ContrastMemory(feat_dim, n_data, len(rep_dims), nce_m)
        self.tau = tau
        self.kd_T = kd_T

    def embed(self, embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([head(e) for head, e in zip(self.embed_list, embeddings)])

    def contrast(self, z: torch.Tensor, pos_idx: torch.Tensor, neg_idx: torch.Tensor):
        """The four losses from already-embedded (N, B, D) ``z``; the memory is not updated (the caller
        updates it with every rank's anchors, :meth:`ContrastMemory.update`)."""
        return memory_mcl_losses(z, self.contrast_memory.memory, pos_idx, neg_idx, self.tau, self.kd_T)

    def forward(self, embeddings: Sequence[torch.Tensor], pos_idx: torch.Tensor, neg_idx: torch.Tensor):
        z = self.embed(embeddings)
        losses = self.contrast(z, pos_idx, neg_idx)
        if self.training:
            self.contrast_memory.update(z, pos_idx[:, 0])
        return losses


Sup_MCL_Loss = SupMCLLoss
