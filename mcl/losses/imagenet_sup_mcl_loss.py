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
                      neg_idx: torch.Tensor, tau: float, kd_T: float, chunk_bytes: int = 1 << 21):
    """The four memory-bank MCL losses.

    Args:
        embeddings: (N, B, D) normalised embeddings z_i (receive the gradient).
        memory: (N, n_data, D) memory banks V_i (no gradient is taken through them).
        pos_idx: (B, 1+pos_k) int64; column 0 = the anchor's own dataset index, then same-class indices.
        neg_idx: (B, neg_k) int64 other-class indices.
        chunk_bytes: about how many bytes of gathered bank rows are processed at once.
    With idx = [pos_idx, neg_idx] (K₁ columns) and A^{ij}_{bk} = ⟨V_i[idx_bk], z_j[b]⟩/τ:
        icl      = Σ_{i≠j} n_{1+pos_k}(A^{ij})
        soft_icl = Σ_{i≠j} KL_T(A^{ij} ‖ detach A^{ji})
        vcl      = Σ_i n_{pos_k}(C^i),   C^i = A^{ii} without column 0 (own instance dropped)
        soft_vcl = Σ_{i≠j} KL_T(C^i ‖ detach C^j)
    Returns: (vcl, soft_vcl, icl, soft_icl), () tensors.

    Every term is a sum over anchors b of a function of row b of the N² blocks, so the rows of all banks are
    gathered a few anchors at a time into one cache-sized buffer, and each term's value *and* its gradient
    with respect to z are formed from that buffer before the next anchors are read. Gathering all B·K₁ rows
    of every bank first (and the reordered copy a batched einsum makes of them) wrote and page-faulted about
    2·N·B·K₁·D floats per call (268 MB at neg_k 8192), and re-reading the bank in the backward pass would see
    the anchors' rows after ``update_memory`` (which runs between forward and backward).
    """
    index = torch.cat([pos_idx, neg_idx], dim=1)                                 # (B, K1)
    need_grad = torch.is_grad_enabled() and embeddings.requires_grad
    return _MemoryMCLLoss.apply(embeddings, memory.detach(), index, pos_idx.shape[1], float(tau), float(kd_T),
                                int(chunk_bytes), need_grad)


class _MemoryMCLLoss(torch.autograd.Function):
    """Forward: the four losses and, when z needs a gradient, the gradient of each one with respect to z
    (4, N, B, D); backward only weighs those four by the incoming scalars.

    Per row b and block (i, j) (A = A^{ij}_b, P positives; C = A^{ii}_b[1:], P − 1 positives):
        d n_P / dA       = (softmax(A) − 1[k<P]/P) / B
        d KL / dA^{ij}   = T (softmax(A^{ij}/T) − softmax(A^{ji}/T)) / B                 (soft ICL, i ≠ j)
        d KL / dC^i      = T (N softmax(C^i/T) − Σ_j softmax(C^j/T)) / B                 (soft VCL)
    and dA^{ij}_{bk} / dz_j[b] = V_i[idx_bk] / τ.
    """

    @staticmethod
    def forward(ctx, z, memory, index, num_positive, tau, kd_T, chunk_bytes, need_grad):
        with torch.autocast(z.device.type, enabled=False):
            dtype = torch.promote_types(z.dtype, memory.dtype)
            z_rows = z.to(dtype).transpose(0, 1)                                 # (B, N, D)
            n, batch, dim = z.shape
            width = index.shape[1]
            element = torch.empty((), dtype=dtype).element_size()
            step = max(1, min(batch, chunk_bytes // (n * width * dim * element)))
            rows_buffer = z.new_empty(n, step, width, dim, dtype=dtype)
            # per block (i, j): slot 0 = gradient of the NCE term (VCL on i = j, ICL otherwise), slot 1 = of
            # the KL term (soft VCL / soft ICL); one GEMM per bank then multiplies both slots of all j at once
            grad_buffer = z.new_empty(n, step, n, 2, width, dtype=dtype) if need_grad else None
            grad_blocks = z.new_zeros(n, batch, n, 2, dim, dtype=dtype) if need_grad else None
            sums = z.new_zeros(4, dtype=dtype)                                   # vcl, soft_vcl, icl, soft_icl
            eye = torch.eye(n, dtype=torch.bool, device=z.device)
            off_diagonal = ~eye
            student_index, teacher_index = off_diagonal.nonzero(as_tuple=True)
            for start in range(0, batch, step):
                anchors = slice(start, min(start + step, batch))
                c = anchors.stop - anchors.start
                flat_index = index[anchors].reshape(-1)
                rows = rows_buffer[:, :c]                                        # (N, c, K1, D)
                for i in range(n):
                    torch.index_select(memory[i], 0, flat_index, out=rows[i].view(c * width, dim))
                # products[i, b, j, k] = ⟨V_i[idx_bk], z_j[b]⟩; blocks[i, j] = A^{ij} of these anchors
                products = torch.matmul(z_rows[anchors], rows.transpose(-1, -2))  # (N, c, N, K1)
                blocks = products.div_(tau).permute(0, 2, 1, 3)                  # (N, N, c, K1)
                intra = blocks.diagonal(dim1=0, dim2=1).permute(2, 0, 1)[..., 1:]  # (N, c, K2) = C^i

                log_p = torch.log_softmax(blocks, dim=-1)
                sums[2] -= log_p[..., :num_positive].mean(dim=-1)[off_diagonal].sum()
                log_p_intra = torch.log_softmax(intra, dim=-1)
                sums[0] -= log_p_intra[..., :num_positive - 1].mean(dim=-1).sum()
                log_q = torch.log_softmax(blocks / kd_T, dim=-1)
                q = log_q.exp()
                q_t, log_q_t = q.transpose(0, 1), log_q.transpose(0, 1)         # block (i, j) → A^{ji}
                sums[3] += (q_t * (log_q_t - log_q)).sum(dim=-1)[off_diagonal].sum()
                log_r = torch.log_softmax(intra / kd_T, dim=-1)
                r = log_r.exp()
                sums[1] += (r[teacher_index] * (log_r[teacher_index] - log_r[student_index])).sum()

                if not need_grad:
                    continue
                grad = grad_buffer[:, :c].permute(0, 2, 3, 1, 4)                 # (N, N, 2, c, K1) view
                grad_nce, grad_kl = grad[:, :, 0], grad[:, :, 1]
                torch.exp(log_p, out=grad_nce)
                grad_nce[..., :num_positive] -= 1.0 / num_positive
                torch.sub(q, q_t, out=grad_kl).mul_(kd_T)
                intra_nce = grad_nce.diagonal(dim1=0, dim2=1).permute(2, 0, 1)   # (N, c, K1) views
                intra_kl = grad_kl.diagonal(dim1=0, dim2=1).permute(2, 0, 1)
                intra_nce[..., 0] = 0
                intra_kl[..., 0] = 0
                torch.exp(log_p_intra, out=intra_nce[..., 1:])
                intra_nce[..., 1:num_positive] -= 1.0 / (num_positive - 1)
                torch.mul(r, n, out=intra_kl[..., 1:]).sub_(r.sum(dim=0)).mul_(kd_T)
                # grad_blocks[i, b, j, s] = Σ_k grad[i, j, s, b, k] V_i[idx_bk]
                torch.matmul(grad_buffer[:, :c].view(n, c, 2 * n, width), rows,
                             out=grad_blocks[:, anchors].view(n, c, 2 * n, dim))
            losses = sums / batch
            losses[[1, 3]] *= kd_T * kd_T
            if need_grad:
                per_term = z.new_empty(4, n, batch, dim, dtype=dtype)
                diagonal = grad_blocks.diagonal(dim1=0, dim2=2).permute(3, 0, 1, 2)  # (N, B, 2, D): i = j
                total = grad_blocks.sum(dim=0).transpose(0, 1)                        # (N, B, 2, D): Σ_i
                per_term[0], per_term[1] = diagonal[:, :, 0], diagonal[:, :, 1]
                per_term[2], per_term[3] = total[:, :, 0] - per_term[0], total[:, :, 1] - per_term[1]
                ctx.save_for_backward(per_term.div_(batch * tau))
        ctx.z_dtype = z.dtype
        return tuple(losses)

    @staticmethod
    def backward(ctx, *grad_losses):
        (per_term,) = ctx.saved_tensors
        weights = torch.stack([g if g is not None else torch.zeros((), dtype=per_term.dtype, device=per_term.device)
                               for g in grad_losses]).to(per_term.dtype)
        grad_z = torch.tensordot(weights, per_term, dims=1).to(ctx.z_dtype)
        return grad_z, None, None, None, None, None, None, None


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
