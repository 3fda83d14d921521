"""MoCo + MCL self-supervised losses (spec §f.4), pure functions used by ``mcl.moco.builder_mcl``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

KL_T = 3.0  # the original's KLDiv temperature is hard-coded (quirk 6)


def moco_mcl_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T: float, kl_T: float = KL_T,
                  chunk_bytes: int = 1 << 21):
    """The four MoCo-MCL losses over all pairwise (1+K)-way logits G^{ab} = [⟨q_a, k_b⟩, q_aᵀ Q_b] / T:

        vcl      = Σ_i CE(G^{ii}, 0)
        soft_vcl = Σ_{i≠j} KL_3(G^{ii} ‖ detach G^{jj})
        icl      = Σ_{i≠j} CE(G^{ij}, 0)
        soft_icl = Σ_{i≠j} KL_3(G^{ij} ‖ detach G^{ji})

    (CE averaged over the batch, KL_τ = τ² · batchmean KL(softmax(teacher/τ) ‖ softmax(student/τ)), τ = ``kl_T``.)

    Args: q (N, B, C) normalised queries (receive the gradient); k (N, B, C) normalised keys (a gradient too if
    they require one); queue (N, C, K) per-network queues, never differentiated and saved for the backward pass,
    so pass a copy if it is overwritten before ``backward`` (the builder enqueues in its forward).
    Returns: (intra logits (N, B, 1+K) = G^{ii} without gradient, positive in column 0; vcl, soft_vcl, icl,
    soft_icl).

    The N²·B·(1+K) logits are written once by N² GEMMs; the losses are read from them in chunks of about
    ``chunk_bytes`` that stay in cache (rows forward, queue columns backward), and the gradient is written
    analytically (CE: softmax − one-hot; KL: τ·(p_student − p_teacher)), because autograd over the masked
    full-size logits kept a dozen full-size intermediates and cost 13–18× a plain InfoNCE (``ci/bench.py``).
    """
    return _MoCoMCLLoss.apply(q, k, queue.detach(), float(T), float(kl_T), int(chunk_bytes))


def _chunks(length: int, bytes_per_item: int, chunk_bytes: int) -> tuple[int, list[slice]]:
    """Slices of ``range(length)`` of about ``chunk_bytes`` each, and the largest slice length."""
    step = min(length, max(1, chunk_bytes // max(bytes_per_item, 1)))
    return step, [slice(i, min(i + step, length)) for i in range(0, length, step)]


def _blocks_by_row(t: torch.Tensor) -> torch.Tensor:
    """(N, N, c, M) → (c, N², M) view: the N² blocks of each row, for batched Gram products over the rows."""
    n, _, c, m = t.shape
    return t.permute(2, 0, 1, 3).reshape(c, n * n, m)


class _MoCoMCLLoss(torch.autograd.Function):
    """Logits ``L`` (N_query, N_key, B, 1+K), saved; per row and block the log-partition functions at T and at
    the KL temperature (``lse1``, ``lse_kl``) are all the backward pass needs to rebuild both softmaxes."""

    @staticmethod
    def forward(ctx, q, k, queue, T, kl_T, chunk_bytes):
        # float32 whatever the surrounding autocast: logits of 1/T ≈ 14 and 65k-way softmaxes need it
        with torch.autocast(q.device.type, enabled=False):
            if q.dtype in (torch.float16, torch.bfloat16):
                q = q.float()
            k, queue = k.to(q.dtype), queue.to(q.dtype)
            n, batch, _ = q.shape
            width = 1 + queue.shape[2]
            q_scaled = q / T
            logits = q.new_empty(n, n, batch, width)
            logits[..., 0] = torch.einsum("abc,dbc->adb", q_scaled, k)
            for a in range(n):           # N² GEMMs written straight into the strided logits (no concatenation)
                for d in range(n):
                    torch.mm(q_scaled[a], queue[d], out=logits[a, d, :, 1:])
            lse1 = q.new_empty(n, n, batch)
            lse_kl = q.new_empty(n, n, batch)
            step, chunks = _chunks(batch, n * n * width * logits.element_size(), chunk_bytes)
            shifted_buffer = q.new_empty(n, n, step, width)
            exp_buffer = q.new_empty(n, n, step, width)
            gram_sum = q.new_zeros(n * n, n * n)
            for rows in chunks:
                x = logits[:, :, rows]                                    # (N, N, c, 1+K)
                c = x.shape[2]
                peak = x.amax(-1, keepdim=True)
                shifted = torch.sub(x, peak, out=shifted_buffer[:, :, :c])
                lse1[:, :, rows] = peak.squeeze(-1) + torch.exp(shifted, out=exp_buffer[:, :, :c]).sum(-1).log()
                unnormalised = shifted.mul_(1.0 / kl_T).exp_()            # softmax(x / τ) · total
                total = unnormalised.sum(-1)
                lse_kl[:, :, rows] = peak.squeeze(-1) / kl_T + total.log()
                # gram[r, u, v] = ⟨softmax(x^u_r / τ), x^v_r⟩ for every pair of blocks u, v: one batched GEMM
                gram = torch.bmm(_blocks_by_row(unnormalised), _blocks_by_row(x).transpose(1, 2))
                gram_sum += (gram / total.permute(2, 0, 1).reshape(c, n * n, 1)).sum(0)
            # KL(p^t ‖ p^s) = Σ_k p^t·(x^t − x^s)/τ + lse_τ^s − lse_τ^t; the lse terms cancel in both sums over
            # ordered pairs, so each sum is Σ_pairs (⟨p^t, x^t⟩ − ⟨p^t, x^s⟩)/τ, entries of the summed Gram matrix
            blocks = torch.arange(n * n, device=q.device)
            diagonal = blocks[:: n + 1]                                   # blocks (i, i)
            transposed = (blocks % n) * n + blocks // n                   # block (a, d) → (d, a)
            self_products = gram_sum.diagonal()
            soft_icl = (self_products - gram_sum[blocks, transposed]).sum() * kl_T / batch
            soft_vcl = (n * self_products[diagonal].sum() - gram_sum[diagonal][:, diagonal].sum()) * kl_T / batch
            ce = lse1 - logits[..., 0]
            is_diagonal = torch.eye(n, dtype=torch.bool, device=q.device)
            vcl = ce[is_diagonal].sum() / batch
            icl = ce[~is_diagonal].sum() / batch
        ctx.save_for_backward(q, k, queue, logits, lse1, lse_kl)
        ctx.T, ctx.kl_T, ctx.chunk_bytes = T, kl_T, chunk_bytes
        intra = logits.diagonal(dim1=0, dim2=1).permute(2, 0, 1)
        ctx.mark_non_differentiable(intra)
        return intra, vcl, soft_vcl, icl, soft_icl

    @staticmethod
    def backward(ctx, _grad_intra, grad_vcl, grad_soft_vcl, grad_icl, grad_soft_icl):
        q, k, queue, logits, lse1, lse_kl = ctx.saved_tensors
        T, kl_T = ctx.T, ctx.kl_T
        n, batch, _ = q.shape
        width = logits.shape[-1]

        def weight(g):
            return torch.zeros((), dtype=q.dtype, device=q.device) if g is None else g.to(q.dtype) / batch

        w_vcl, w_soft_vcl, w_icl, w_soft_icl = map(weight, (grad_vcl, grad_soft_vcl, grad_icl, grad_soft_icl))
        # dLoss/dlogits of block (a, d) = w_ce·(softmax(x) − e₀) + τ·w_kl·(n_teachers·p − Σ_teachers p_teacher),
        # p = softmax(x / τ); teachers: block (d, a) for a ≠ d (soft ICL), every other (j, j) for a = d (soft VCL)
        is_diagonal = torch.eye(n, dtype=torch.bool, device=q.device)
        w_ce = torch.where(is_diagonal, w_vcl, w_icl).view(n, n, 1, 1)
        w_student = (kl_T * torch.where(is_diagonal, n * w_soft_vcl, w_soft_icl)).view(n, n, 1, 1)
        w_teacher_icl = (-kl_T * w_soft_icl * ~is_diagonal).view(n, n, 1, 1)
        w_teacher_vcl = (-kl_T * w_soft_vcl).view(1, 1)

        def grad_of(x, lse1_, lse_kl_, out, scratch):
            """dLoss/dx of logits ``x`` (N, N, R, M) into ``out``; ``scratch`` is a buffer of the same shape."""
            prob = torch.sub(x, (kl_T * lse_kl_).unsqueeze(-1), out=scratch).mul_(1.0 / kl_T).exp_()
            g = torch.mul(prob, w_student, out=out)
            g.addcmul_(prob.transpose(0, 1), w_teacher_icl)
            teachers_vcl = prob.diagonal(dim1=0, dim2=1).sum(-1)             # Σ_j p^{jj}, (R, M)
            for a in range(n):
                g[a, a].addcmul_(teachers_vcl, w_teacher_vcl)
            return g.addcmul_(torch.sub(x, lse1_.unsqueeze(-1), out=scratch).exp_(), w_ce)

        # the gradient is formed chunk by chunk over the K queue columns (all rows: the row statistics are known),
        # each chunk multiplied into grad_q at once, so no full-size gradient of the logits is ever allocated
        with torch.autocast(q.device.type, enabled=False):
            positive = logits[..., :1]
            grad_positive = grad_of(positive, lse1, lse_kl, torch.empty_like(positive),
                                    torch.empty_like(positive)).squeeze(-1)
            grad_positive -= w_ce.view(n, n, 1)
            grad_q = grad_k = None
            if ctx.needs_input_grad[0]:
                grad_q = torch.einsum("adb,dbc->abc", grad_positive, k)
                step, chunks = _chunks(width - 1, n * n * batch * logits.element_size(), ctx.chunk_bytes)
                grad_buffer, scratch = q.new_empty(2, n, n, batch, step)
                for columns in chunks:
                    x = logits[:, :, :, 1 + columns.start: 1 + columns.stop]
                    m = x.shape[-1]
                    g = grad_of(x, lse1, lse_kl, grad_buffer[..., :m], scratch[..., :m])
                    for a in range(n):
                        for d in range(n):
                            grad_q[a].addmm_(g[a, d], queue[d, :, columns].t())
                grad_q /= T
            if ctx.needs_input_grad[1]:
                grad_k = torch.einsum("adb,abc->dbc", grad_positive, q) / T
        return grad_q, grad_k, None, None, None, None


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
