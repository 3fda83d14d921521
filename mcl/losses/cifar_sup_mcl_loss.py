"""In-batch supervised Mutual Contrastive Learning for CIFAR (spec §f.1, original
``losses/cifar_sup_mcl_loss.py``): vanilla (VCL), soft vanilla, interactive (ICL) and soft interactive
contrastive losses between N networks, plus the per-network embedding heads (§e.6)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from common.utils import UserError


class _RowNormalize(torch.autograd.Function):
    """z = x / ‖x‖₂ per row with the gradient dx = (g − z ⟨z, g⟩) / ‖x‖₂ written out (5 ops instead of the ~10
    autograd records for pow / sum / sqrt / div)."""

    @staticmethod
    def forward(ctx, x):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt()
        z = x / norm
        ctx.save_for_backward(z, norm)
        return z

    @staticmethod
    def backward(ctx, grad):
        z, norm = ctx.saved_tensors
        return (grad - z * (z * grad).sum(dim=1, keepdim=True)) / norm


class Normalize(nn.Module):
    """Row-wise L2 normalisation x / ‖x‖₂ without an epsilon, like the original (quirk 4); input (B, D)."""

    def forward(self, x):
        return _RowNormalize.apply(x)


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

    def project(self, x):
        """The head before the L2 normalisation: (B, ...) → (B, D)."""
        if self.flatten:
            x = x.reshape(x.shape[0], -1)
        return self.proj_head(x)

    def forward(self, x):
        return self.l2norm(self.project(x))


def _same_class_partners(labels: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: b ≠ a has the label of a (the positives P of anchor a)."""
    positive = labels[:, None] == labels[None, :]
    return positive.fill_diagonal_(False)


def check_same_class_partner(labels: torch.Tensor, positive: torch.Tensor | None = None) -> None:
    """Raise a ``UserError`` if some anchor has no other sample of its class in the batch (quirk 3).

    The original silently returns NaN (0/0) there. Call it on CPU labels (no device sync); ``positive`` is
    ``_same_class_partners(labels)`` when the caller has it already.
    """
    if positive is None:
        positive = _same_class_partners(labels)
    lonely = ~positive.any(dim=1)
    if bool(lonely.any()):
        raise UserError(
            f"{int(lonely.sum())} sample(s) of the batch have no other sample of the same class "
            f"(labels {sorted(set(labels[lonely].tolist()))[:10]}), so the supervised contrastive loss is "
            "undefined (NaN in the original). Use the MPerClassSampler (m=2, the default of main_cifar.py) "
            "and a batch size that is a multiple of 2.")


def sup_mcl_losses(embeddings: torch.Tensor, labels: torch.Tensor, tau: float, kd_T: float,
                   check_partners: bool = False):
    """The four in-batch MCL losses.

    Args:
        embeddings: (N, B, D) L2-normalised embeddings z_i of the N networks (N ≥ 2).
        labels: (B,) int class labels; every label must occur at least twice.
        tau: contrastive temperature τ; kd_T: KL temperature T of the soft losses.
        check_partners: raise ``check_same_class_partner``'s error for CPU labels (from the same mask).
    With S^{ij} = z_i z_jᵀ/τ (anchor rows of network i against network j) and
        ℓ(L) = −(1/B) Σ_a (1/|P_a|) Σ_b P_ab (L_ab − log Σ_{c≠a} exp L_ac)
    (P: same class, diagonal excluded; the original exponentiates without max-subtraction, a log-sum-exp
    over the row is the same number computed stably, quirk 4):
        vcl      = Σ_i ℓ(S^{ii})
        soft_vcl = Σ_{i≠j} KL_T(S^{ii} ‖ detach S^{jj})
        icl      = Σ_{i≠j} ℓ(S^{ij})   (same-image pair excluded from positives and denominator, quirk 2)
        soft_icl = Σ_{i≠j} KL_T(S^{ij} ‖ detach S^{ji})
    Returns: (vcl, soft_vcl, icl, soft_icl), each a () tensor (sums over networks, means over anchors).
    """
    number_net = embeddings.shape[0]
    if number_net < 2:
        raise ValueError("MCL needs at least two networks (quirk 21)")
    positive = _same_class_partners(labels)
    if check_partners and labels.device.type == "cpu":
        check_same_class_partner(labels, positive)
    need_grad = torch.is_grad_enabled() and embeddings.requires_grad
    return _SupMCLLoss.apply(embeddings, positive, float(tau), float(kd_T), need_grad)


_SELF_PAIRS: dict = {}


def _self_pair_mask(batch: int, device, dtype) -> torch.Tensor:
    """(B, 1, B) additive mask, −inf where b = a (the anchor itself), cached per (B, device, dtype)."""
    key = (batch, str(device), dtype)
    mask = _SELF_PAIRS.get(key)
    if mask is None:
        mask = torch.zeros(batch, batch, dtype=dtype, device=device).fill_diagonal_(float("-inf"))
        mask = mask.view(batch, 1, batch)
        if len(_SELF_PAIRS) > 16:
            _SELF_PAIRS.clear()
        _SELF_PAIRS[key] = mask
    return mask


class _SupMCLLoss(torch.autograd.Function):
    """The four losses from one Gram matrix S = Z Zᵀ/τ of all N·B embeddings, with the gradient written by
    hand: autograd over the N² blocks recorded ~60 small nodes whose dispatch cost more than the arithmetic
    at B = 128.

    Layout: the (N·B, N·B) Gram matrix viewed as s (N, B, N, B), s[i, a, j, b] = S^{ij}_ab, so every row
    softmax runs over a contiguous last dimension, block (i, j) is s[i, :, j, :], block weights broadcast as
    (N, 1, N, 1), the teacher S^{ji} of block (i, j) is s.transpose(0, 2) (rows of B stay contiguous), and
    G = dLoss/dS is a (N·B, N·B) matrix again without a copy.

    Per row a of block (i, j) (weights 1/B):
        dℓ/dS^{ij}_a        = softmax_{c≠a}(S^{ij}_a) − P_a/|P_a|
        d soft_icl/dS^{ij}  = T (softmax(S^{ij}/T) − softmax(S^{ji}/T))              (i ≠ j)
        d soft_vcl/dS^{ii}  = T (N softmax(S^{ii}/T) − Σ_j softmax(S^{jj}/T))
    and dZ = (G + Gᵀ) Z / τ. The forward keeps the NCE-type and the KL-type gradient (diagonal blocks: VCL
    terms, the others: ICL terms), the backward weighs them blockwise.
    """

    @staticmethod
    def forward(ctx, z, positive, tau, kd_T, need_grad):
        ctx.z_dtype = z.dtype
        with torch.autocast(z.device.type, enabled=False):
            if z.dtype in (torch.float16, torch.bfloat16):
                z = z.float()
            n, batch, dim = z.shape
            flat = z.reshape(n * batch, dim)
            s = torch.mm(flat, flat.t()).div_(tau).view(n, batch, n, batch)           # s[i, a, j, b] = S^{ij}_ab
            positive = positive.to(z.dtype)
            positive_weight = (positive / positive.sum(dim=1, keepdim=True)).view(batch, 1, batch)  # P_a/|P_a|

            # ℓ: log-sum-exp over c ≠ a (the diagonal of every block is the same image)
            scores = s + _self_pair_mask(batch, z.device, z.dtype)
            peak = scores.amax(dim=-1, keepdim=True)
            scores.sub_(peak).exp_()
            normaliser = scores.sum(dim=-1, keepdim=True)
            nce_rows = (peak + normaliser.log()).squeeze(-1) - (s * positive_weight).sum(dim=-1)   # (N, B, N)
            nce_blocks = nce_rows.sum(dim=1)                                            # (N, N)
            vcl_sum = nce_blocks.trace()
            vcl = vcl_sum / batch
            icl = (nce_blocks.sum() - vcl_sum) / batch

            log_q = torch.log_softmax(s / kd_T, dim=-1)                                 # log softmax(S^{ij}/T)
            q = log_q.exp()
            q_teacher, log_q_teacher = q.transpose(0, 2), log_q.transpose(0, 2)         # block (i, j) → S^{ji}
            soft_icl = (q_teacher * (log_q_teacher - log_q)).sum() * (kd_T * kd_T / batch)  # i = j adds 0
            q_intra = q.diagonal(dim1=0, dim2=2).permute(2, 0, 1)                       # (N, B, B) softmax(S^{ii}/T)
            log_q_intra = log_q.diagonal(dim1=0, dim2=2).permute(2, 0, 1)
            # [i, j] = KL(S^{ii} ‖ S^{jj}) summands for every pair at once by broadcasting (i = j adds 0)
            soft_vcl = (q_intra[None] * (log_q_intra[None] - log_q_intra[:, None])).sum() * (kd_T * kd_T / batch)

            if need_grad:
                grad_nce = scores.div_(normaliser).sub_(positive_weight)
                grad_kl = torch.sub(q, q_teacher).mul_(kd_T)
                grad_kl.diagonal(dim1=0, dim2=2).copy_(
                    (q_intra * n - q_intra.sum(dim=0)).mul_(kd_T).permute(1, 2, 0))
                ctx.save_for_backward(flat, grad_nce, grad_kl)
        ctx.tau, ctx.z_shape = tau, z.shape
        return vcl, soft_vcl, icl, soft_icl

    @staticmethod
    def backward(ctx, grad_vcl, grad_soft_vcl, grad_icl, grad_soft_icl):
        flat, grad_nce, grad_kl = ctx.saved_tensors
        n, batch, _ = ctx.z_shape
        eye = torch.eye(n, dtype=torch.bool, device=flat.device)
        zero = torch.zeros((), dtype=flat.dtype, device=flat.device)

        def weights(on_diagonal, off_diagonal):
            """(N, 1, N, 1) weight of each block: the VCL-type term's on the diagonal, the ICL-type's off it."""
            on_diagonal = zero if on_diagonal is None else on_diagonal.to(flat.dtype)
            off_diagonal = zero if off_diagonal is None else off_diagonal.to(flat.dtype)
            return torch.where(eye, on_diagonal, off_diagonal).div_(batch).view(n, 1, n, 1)

        grad_blocks = grad_nce * weights(grad_vcl, grad_icl)
        grad_blocks.addcmul_(grad_kl, weights(grad_soft_vcl, grad_soft_icl))
        grad_gram = grad_blocks.view(n * batch, n * batch)
        # G + Gᵀ: ``copy_`` of a transposed matrix takes a blocked path, faster than an add that reads one
        # operand column by column
        grad_sym = torch.empty_like(grad_gram).copy_(grad_gram.t()).add_(grad_gram)
        grad_flat = torch.mm(grad_sym, flat).div_(ctx.tau)
        return grad_flat.view(ctx.z_shape).to(ctx.z_dtype), None, None, None, None


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
        """(N, B, D) normalised head outputs: the N heads' projections stacked, then one row normalisation of
        all N·B rows (one op per step instead of N)."""
        projected = torch.stack([head.project(e) for head, e in zip(self.embed_list, embeddings)])
        return _RowNormalize.apply(projected.flatten(0, 1)).view(projected.shape)

    def contrast(self, z: torch.Tensor, labels: torch.Tensor):
        """The four losses from already-embedded (N, B, D) ``z`` (heads run inside the DDP model)."""
        return sup_mcl_losses(z, labels, self.tau, self.kd_T, check_partners=self.check_partners)

    def forward(self, embeddings: Sequence[torch.Tensor], labels: torch.Tensor):
        return self.contrast(self.embed(embeddings), labels)


Sup_MCL_Loss = SupMCLLoss
