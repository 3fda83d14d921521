"""MoCo + MCL self-supervised losses (spec §f.4), pure functions used by ``mcl.moco.builder_mcl``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mcl.losses.kd import kl_divergence

KL_T = 3.0  # the original's KLDiv temperature is hard-coded (quirk 6)


def moco_mcl_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T: float) -> torch.Tensor:
    """All pairwise (1+K)-way logits G^{ab} = [⟨q_a, k_b⟩, q_aᵀ Q_b] / T.

    Args: q (N, B, C) normalised queries; k (N, B, C) normalised keys; queue (N, C, K) per-network queues.
    Returns: (N, N, B, 1+K), positive in column 0; [a, b] = query of network a vs key/queue of network b.
    """
    positive = torch.einsum("abc,dbc->adb", q, k).unsqueeze(-1)
    negative = torch.einsum("abc,dck->adbk", q, queue.detach())
    return torch.cat([positive, negative], dim=-1) / T


def moco_mcl_losses(logits: torch.Tensor, kl_T: float = KL_T):
    """The four MoCo-MCL losses from all pairwise logits (see :func:`moco_mcl_logits`).

        vcl      = Σ_i CE(G^{ii}, 0)
        soft_vcl = Σ_{i≠j} KL_3(G^{ii} ‖ detach G^{jj})
        icl      = Σ_{i≠j} CE(G^{ij}, 0)
        soft_icl = Σ_{i≠j} KL_3(G^{ij} ‖ detach G^{ji})
    Args: logits (N, N, B, 1+K). Returns: (intra logits (N, B, 1+K), vcl, soft_vcl, icl, soft_icl).
    """
    number_net = logits.shape[0]
    intra = logits.diagonal(dim1=0, dim2=1).permute(2, 0, 1)
    off_diagonal = ~torch.eye(number_net, dtype=torch.bool, device=logits.device)
    inter = logits[off_diagonal]
    inter_transposed = logits.transpose(0, 1)[off_diagonal]

    def cross_entropy_to_first(x):  # CE(x, 0) averaged over the batch, summed over leading axes
        return -(x[..., 0] - torch.logsumexp(x, dim=-1)).mean(dim=-1).sum()

    vcl = cross_entropy_to_first(intra)
    icl = cross_entropy_to_first(inter)
    student_index, teacher_index = off_diagonal.nonzero(as_tuple=True)
    soft_vcl = kl_divergence(intra[student_index], intra.detach()[teacher_index], kl_T)
    soft_icl = kl_divergence(inter, inter_transposed.detach(), kl_T)
    return intra, vcl, soft_vcl, icl, soft_icl


@torch.no_grad()
def dequeue_and_enqueue(queue: torch.Tensor, queue_ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Write keys (N, B_total, C) as columns [ptr, ptr+B_total) of every queue (N, C, K); ptr += B_total mod K.

    All networks share the same pointer value (they enqueue the same number of keys every step).
    """
    batch = keys.shape[1]
    capacity = queue.shape[2]
    ptr = int(queue_ptr[0])
    if capacity % batch != 0:
        raise ValueError(f"queue size {capacity} is not divisible by the global batch {batch}")
    queue[:, :, ptr:ptr + batch] = keys.transpose(1, 2).to(queue.dtype)
    queue_ptr.fill_((ptr + batch) % capacity)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)
