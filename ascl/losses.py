"""ASCL losses: adaptive soft relabeling of the MoCo queue (and of the batch, BYOL path).

The math is in ``shared/reference/ascl.md`` section f. Pure functions of tensors do the work; the small
``ASCLLoss`` module holds the state (queue of teacher keys, label buffer, pointer) and the distributed gather.

Notation: N batch, C embedding dim, Q queue size, ``nn_num`` = number of neighbours k_nn,
T1 student temperature, T2 teacher temperature.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.moco import QueueSnapshot


RELATION_TYPES = ("ascl", "ahcl", "hard", "normal")


class RelabelOutput(NamedTuple):
    """Intermediates of one ASCL step (all detached except ``loss`` and ``logits``)."""
    loss: torch.Tensor              # scalar (MoCo) / scalar batch mean (BYOL)
    logits: torch.Tensor | None     # N×(1+Q) student logits (MoCo) or None (BYOL)
    soft_labels: torch.Tensor       # N×(1+Q) (MoCo) or N×N (BYOL) row-normalised targets
    neighbor_weights: torch.Tensor | None  # N×Q (MoCo) or N×(N−1) (BYOL) un-normalised weights w
    logits_pd: torch.Tensor | None  # teacher neighbour logits
    p: torch.Tensor | None          # neighbour distribution (ascl / ahcl)
    entropy: torch.Tensor | None    # N×1
    confidence: torch.Tensor | None  # N×1, c = 1 − H / max_entropy
    loss_per_sample: torch.Tensor | None = None  # N (BYOL only)


def neighbor_weights(logits_pd: torch.Tensor, relation: str, nn_num: int, max_entropy: float,
                     out: torch.Tensor | None = None, consume_logits: bool = False):
    """Adaptive relabeling weights (no gradient).

    Args:
        logits_pd: N×M teacher neighbour logits (already divided by T2), M = candidates (queue entries).
        relation: ``ascl`` (soft, min(k·c·p, 1)), ``ahcl`` (c on the top-k), ``hard`` (1 on the top-k),
            ``normal`` (all zero: plain InfoNCE).
        nn_num: k_nn, number of neighbours.
        max_entropy: ln(M) normaliser of the confidence.
        out: optional N×M tensor (may be a strided view) the weights are written into (also used as scratch).
        consume_logits: let ``p`` be computed in place of ``logits_pd`` (which is then overwritten).
    Returns:
        (w N×M, p N×M | None, entropy N×1 | None, confidence N×1 | None)
    """
    if relation not in RELATION_TYPES:
        raise ValueError(f"unknown relation type {relation!r}; expected one of {RELATION_TYPES}")
    with torch.no_grad():
        if out is None:
            out = torch.empty_like(logits_pd)
        top = logits_pd.topk(nn_num, dim=1).indices if relation in ("ahcl", "hard") else None
        p = entropy = confidence = None
        if relation in ("ascl", "ahcl"):
            # p = exp(a − max) / Σ and H = −Σ p log p = log Σ − Σ p·(a − max) (log p = a − max − log Σ, Σ p = 1):
            # two non-negative terms, so no cancellation when p is peaked, and no log-softmax tensor; the
            # shifted logits and their product with p live in ``out`` until the weights overwrite it
            shifted = torch.sub(logits_pd, logits_pd.amax(dim=1, keepdim=True), out=out)
            p = torch.exp(shifted, out=logits_pd) if consume_logits else torch.exp(shifted)
            total = p.sum(dim=1, keepdim=True)
            p.div_(total)
            entropy = total.log() - shifted.mul_(p).sum(dim=1, keepdim=True)
            confidence = 1 - entropy / max_entropy
        if relation == "ascl":
            w = torch.mul(p, nn_num * confidence, out=out).clamp_(max=1.0)
        elif relation in ("ahcl", "hard"):
            value = confidence.expand(-1, nn_num) if relation == "ahcl" else torch.ones_like(top, dtype=out.dtype)
            w = out.zero_().scatter_(1, top, value)
        else:
            w = out.zero_()
    return w, p, entropy, confidence


def soft_cross_entropy(logits: torch.Tensor, soft_labels: torch.Tensor) -> torch.Tensor:
    """Batch mean of −Σ_c y_c log softmax(logits)_c.  logits, soft_labels: N×K → scalar.

    Fused (:class:`_SoftCrossEntropy`): −Σ y (l − lse) = lse·Σy − Σ y·l, gradient (softmax·Σy − y)/N, without
    the log-softmax and product tensors autograd would keep."""
    return _SoftCrossEntropy.apply(logits, soft_labels.detach())


class _SoftCrossEntropy(torch.autograd.Function):
    """Batch-mean soft cross-entropy; saves exp(l − max) and the targets, gradient only for the logits."""

    @staticmethod
    def forward(ctx, logits, soft_labels):
        # float32 at least, as autocast runs log_softmax: a 1+Q-way log-sum-exp in half precision is too coarse
        ctx.logits_dtype = logits.dtype
        dtype = torch.promote_types(logits.dtype, torch.float32)
        logits, soft_labels = logits.to(dtype), soft_labels.to(dtype)
        row_max = logits.amax(dim=1, keepdim=True)
        exp_shifted = torch.sub(logits, row_max).exp_()
        total = exp_shifted.sum(dim=1, keepdim=True)
        lse = (row_max + total.log()).squeeze(1)
        label_mass = soft_labels.sum(dim=1)
        per_sample = lse * label_mass - torch.linalg.vecdot(soft_labels, logits)
        ctx.save_for_backward(exp_shifted, total, label_mass, soft_labels)
        return per_sample.mean()

    @staticmethod
    def backward(ctx, grad_out):
        exp_shifted, total, label_mass, soft_labels = ctx.saved_tensors
        scale = grad_out / exp_shifted.shape[0]
        grad = exp_shifted * (label_mass[:, None] * scale / total)                 # softmax · Σy / N
        grad.addcmul_(soft_labels, -scale)                                          # − y / N
        return grad.to(ctx.logits_dtype), None


class Relabeling(NamedTuple):
    soft_labels: torch.Tensor        # N×(1+Q), rows sum to 1, column 0 = own key
    neighbor_weights: torch.Tensor | None  # N×Q (None unless ``keep_intermediates``)
    logits_pd: torch.Tensor | None   # N×Q = k·queue / T2 (None for ``normal`` or unless ``keep_intermediates``)
    p: torch.Tensor | None           # (None unless ``keep_intermediates``)
    entropy: torch.Tensor | None
    confidence: torch.Tensor | None
    max_weight: torch.Tensor | None = None  # N, max_j w_ij


@torch.no_grad()
def relabel(k: torch.Tensor, queue: torch.Tensor, T2: float, relation: str = "ascl", nn_num: int = 1,
            max_entropy: float | None = None, keep_intermediates: bool = True) -> Relabeling:
    """Adaptive relabeling: soft targets over [own key, queue entries] from the teacher's neighbours.

    Args:
        k: N×C L2-normalised teacher keys.  queue: C×Q unit columns (before this step's enqueue).
        T2: teacher temperature.  relation: ascl | ahcl | hard | normal.  nn_num: k_nn.
        max_entropy: confidence normaliser, default ln(Q).
        keep_intermediates: also return logits_pd, p and w (N×Q each). Without them the whole computation runs
            in two N×Q buffers (the teacher logits, turned into p in place, and the soft labels, whose queue
            columns hold the scratch and then w), which the training step does not need more than.
    Returns:
        Relabeling; soft_labels y_i = [1, w_i] / (1 + Σ_j w_ij).
    """
    if max_entropy is None:
        max_entropy = math.log(queue.shape[1])
    logits_pd = None if relation == "normal" else torch.mm(k, queue).div_(T2)
    if logits_pd is not None and logits_pd.dtype in (torch.float16, torch.bfloat16):
        logits_pd = logits_pd.float()  # the softmax over the queue in float32, as autocast runs softmax
    scores = logits_pd if logits_pd is not None else k.new_zeros(k.shape[0], queue.shape[1])
    unnormalised = scores.new_empty(scores.shape[0], 1 + scores.shape[1])     # [1, w] in one buffer
    w, p, entropy, confidence = neighbor_weights(scores, relation, nn_num, max_entropy, out=unnormalised[:, 1:],
                                                 consume_logits=not keep_intermediates)
    max_weight = w.amax(dim=1)
    w = w.clone() if keep_intermediates else None
    unnormalised[:, 0] = 1
    soft_labels = unnormalised.div_(unnormalised.sum(dim=1, keepdim=True))
    if not keep_intermediates:
        logits_pd = p = None
    return Relabeling(soft_labels, w, logits_pd, p, entropy, confidence, max_weight)


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T1: float) -> torch.Tensor:
    """Student logits N×(1+Q): [q_i·k_i, q_i·u_1 .. q_i·u_Q] / T1 (k and queue constant).

    Written straight into one N×(1+Q) buffer by :class:`_MoCoLogits` (no concatenation, no division pass)."""
    return _MoCoLogits.apply(q, k.detach(), queue.detach(), float(T1))


def _aligned_logits_buffer(like: torch.Tensor, queue_size: int) -> torch.Tensor:
    """An uninitialised N×(1+Q) logits tensor whose queue columns start every row on a 64-byte boundary.

    A contiguous N×(1+Q) buffer puts column 1 one element past the boundary in every row; the GEMM writing
    the N×Q queue block there ran at about half its speed (9.5 against 5.3 ms for N 256, C 128, Q 4096 on
    this project's CPU). Here each row is padded to a multiple of 64 bytes and the positive column sits just
    before the aligned queue block: a strided view, which every consumer reads like the contiguous tensor."""
    step = max(1, 64 // like.element_size())
    width = step + -(-queue_size // step) * step
    buffer = like.new_empty(like.shape[0], width)
    return buffer[:, step - 1:step + queue_size]


class _MoCoLogits(torch.autograd.Function):
    """[q·k, q·queue] / T1 with the GEMM writing the queue columns in place; gradient for q only."""

    @staticmethod
    def forward(ctx, q, k, queue, T1):
        k, queue = k.to(q.dtype), queue.to(q.dtype)
        logits = _aligned_logits_buffer(q, queue.shape[1])
        q_scaled = q / T1                  # 1/T1 on the N×C operand rather than on the N×(1+Q) product
        torch.linalg.vecdot(q_scaled, k, out=logits[:, 0])
        torch.mm(q_scaled, queue, out=logits[:, 1:])
        ctx.save_for_backward(k, queue)
        ctx.T1 = T1
        return logits

    @staticmethod
    def backward(ctx, grad_logits):
        k, queue = ctx.saved_tensors
        grad_q = torch.mm(grad_logits[:, 1:], queue.t())
        grad_q.addcmul_(grad_logits[:, :1], k)
        return grad_q.div_(ctx.T1), None, None, None


def moco_ascl_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T1: float, T2: float,
                   relation: str = "ascl", nn_num: int = 1, max_entropy: float | None = None,
                   keep_intermediates: bool = True) -> RelabelOutput:
    """MoCo-path ASCL loss for one step.

    Args:
        q: N×C L2-normalised student embeddings (differentiable).
        k: N×C L2-normalised teacher keys (treated as constants).
        queue: C×Q unit-column queue *before* this step's enqueue (constant).
        T1, T2: student / teacher temperatures.
        relation: ascl | ahcl | hard | normal.  nn_num: k_nn.  max_entropy: default ln(Q).
        keep_intermediates: also return the N×Q logits_pd, p and neighbor_weights (else None; see relabel).
    Returns:
        RelabelOutput with the scalar soft cross-entropy over the 1+Q classes (positive = own key, column 0).
    """
    k, queue = k.detach(), queue.detach()
    target = relabel(k, queue, T2, relation, nn_num, max_entropy, keep_intermediates)
    logits = moco_logits(q, k, queue, T1)
    loss = soft_cross_entropy(logits, target.soft_labels)
    return RelabelOutput(loss, logits, target.soft_labels, target.neighbor_weights, target.logits_pd, target.p,
                         target.entropy, target.confidence)


def byol_ascl_loss(h: torch.Tensor, k: torch.Tensor, T2: float, relation: str = "ascl",
                   nn_num: int = 1, k_all: torch.Tensor | None = None, offset: int = 0) -> RelabelOutput:
    """BYOL-path loss: neighbours are the other keys of the batch (no queue).

    Args:
        h: N×C L2-normalised predictor outputs of the student (differentiable).
        k: N×C L2-normalised teacher keys (constant).
        T2: teacher temperature of the neighbour distribution.  relation: ``ascl`` or anything else
            (plain BYOL regression 2 − 2 h·k).  nn_num: k_nn.
        k_all: M×C keys of the whole (multi-process) batch, rows ``offset … offset+N−1`` being ``k``;
            None → ``k``. Across processes the neighbours are the other keys of the *global* batch, as on one
            device.
    Returns:
        RelabelOutput whose ``loss`` is the batch mean (the original returned the per-sample vector, quirk 4;
        it is kept in ``loss_per_sample``).  For ``ascl``: logits_pd N×(M−1) = k_i·k_j, j ≠ i (row-major,
        own key removed, *not* divided by T2), entropy normalised by ln(M−1).
    """
    k = k.detach()
    n = k.shape[0]
    if relation == "ascl":
        with torch.no_grad():
            k_all = k if k_all is None else k_all.detach()
            m = k_all.shape[0]
            rows = torch.arange(n, device=k.device)
            own = torch.zeros(n, m, dtype=torch.bool, device=k.device)
            own[rows, rows + offset] = True
            others = ~own
            logits_pd = (k @ k_all.t()).masked_select(others).view(n, m - 1)
            w, p, entropy, confidence = neighbor_weights(logits_pd / T2, "ascl", nn_num, math.log(m - 1))
            targets = own.to(k.dtype).masked_scatter(others, w)
            targets = targets / targets.sum(dim=1, keepdim=True)
        loss_per_sample = 2 - 2 * (targets * (h @ k_all.t())).sum(dim=1)
    else:
        logits_pd = p = entropy = confidence = None
        w = targets = torch.eye(n, dtype=k.dtype, device=k.device)
        loss_per_sample = 2 - 2 * (h * k).sum(dim=1)
    return RelabelOutput(loss_per_sample.mean(), None, targets, w, logits_pd, p, entropy, confidence,
                         loss_per_sample)


class ASCLLoss(nn.Module):
    """Queue of teacher keys + adaptive soft relabeling loss.

    Buffers (original names, kept for checkpoint compatibility): ``queue`` C×Q (unit columns, random init),
    ``labels`` Q (class labels of the enqueued keys, −1 = empty; bookkeeping only, quirk 18),
    ``queue_ptr`` (1,).  ``forward(q, k, targets)`` takes *normalised* embeddings, returns a
    :class:`RelabelOutput` and then enqueues the (all-gathered) keys.  ``keep_intermediates`` (MoCo path) also
    fills its N×Q inspection tensors (logits_pd, p, neighbor_weights); training leaves it off.
    """

    def __init__(self, dim: int = 128, mem_size: int = 4096, T1: float = 0.1, T2: float = 0.05,
                 type: str = "ascl", nn_num: int = 1, model: str = "moco", keep_intermediates: bool = False):
        super().__init__()
        self.keep_intermediates = keep_intermediates    # MoCo path: also return logits_pd, p, w (inspection)
        if type not in RELATION_TYPES:
            raise ValueError(f"--type must be one of {RELATION_TYPES}, got {type!r}")
        if model not in ("moco", "byol"):
            raise ValueError(f"--model must be moco or byol, got {model!r}")
        if model == "moco" and type in ("ahcl", "hard") and nn_num > mem_size:
            raise ValueError(f"k_nn ({nn_num}) must not exceed the queue size ({mem_size}) for --type {type}")
        self.K = mem_size
        self.T1, self.T2 = T1, T2
        self.type, self.nn_num, self.model = type, nn_num, model
        self.max_entropy = math.log(mem_size)
        self.register_buffer("queue", F.normalize(torch.randn(dim, mem_size), dim=0))
        self.register_buffer("labels", torch.full((mem_size,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.queue_snapshot = QueueSnapshot()

    def forward(self, q: torch.Tensor, k: torch.Tensor, targets: torch.Tensor | None = None) -> RelabelOutput:
        if self.model == "moco":
            # the logits' backward needs the queue before this step's enqueue (the original's clone)
            out = moco_ascl_loss(q, k, self.queue_snapshot.copy_of(self.queue), self.T1, self.T2, self.type,
                                 self.nn_num, self.max_entropy, self.keep_intermediates)
            self.queue_snapshot.keep_until_backward(out.logits)
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            # neighbours among the keys of every process, as on one device with the global batch
            from common.distributed import concat_all_gather, get_rank
            out = byol_ascl_loss(q, k, self.T2, self.type, self.nn_num, k_all=concat_all_gather(k.detach()),
                                 offset=get_rank() * k.shape[0])
        else:
            out = byol_ascl_loss(q, k, self.T2, self.type, self.nn_num)
        if targets is None:
            targets = torch.full((k.shape[0],), -1, dtype=torch.long, device=k.device)
        self.dequeue_and_enqueue(k, targets)
        return out

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Write the (globally gathered) keys N×C and labels N at the pointer; ptr ← (ptr + N) mod Q."""
        keys = keys.detach()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from common.distributed import concat_all_gather
            keys = concat_all_gather(keys.contiguous())
            labels = concat_all_gather(labels.contiguous())
        batch_size = keys.shape[0]
        if self.K % batch_size != 0:
            raise ValueError(f"queue size {self.K} is not a multiple of the (global) batch size {batch_size}")
        ptr = int(self.queue_ptr)
        self.queue[:, ptr:ptr + batch_size] = keys.t().to(self.queue.dtype)
        self.labels[ptr:ptr + batch_size] = labels
        self.queue_ptr[0] = (ptr + batch_size) % self.K
