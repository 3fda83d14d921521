"""Queue-MoCo with the CACR loss (spec §e.2, §f.2; original ``large_scale_shift_experiments/*/ours/builder.py``)."""
from __future__ import annotations

from collections import namedtuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from cacr.softmax_moments import softmax_moments
from common.moco import moco_encoder_pair
from common.utils import UserError

MoCoLosses = namedtuple("MoCoLosses", ["loss1", "loss2"])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _attraction_loss(q: torch.Tensor, k: torch.Tensor, alpha: float, tau_pos: float, with_terms: bool = False):
    """loss1 = α·mean_x mean_i Σ_{y≠x} w1·d1, d1[x,i,y'] = ‖q_x[i] − k_y[i]‖², w1 = softmax_y(τ₊·d1) detached.

    q, k: V×B×D → scalar (and d1, w1: V×B×(V−1) when ``with_terms``).  Small: V²·B·D.
    """
    n_views, batch, _ = q.shape
    off_views = ~torch.eye(n_views, dtype=torch.bool, device=q.device)
    # difference form: its gradient 2(q − k) is the original's (2 − 2⟨q,k⟩ would give −2k)
    d_all = (q.unsqueeze(1) - k.unsqueeze(0)).pow(2).sum(-1)                       # Vx×Vy×B
    d1 = d_all[off_views].reshape(n_views, n_views - 1, batch).transpose(1, 2)     # V×B×(V−1)
    w1 = torch.softmax(tau_pos * d1.detach(), dim=-1)
    loss1 = alpha * (w1 * d1).sum(-1).mean()
    return (loss1, d1, w1) if with_terms else loss1


def _intra_batch_distances(q: torch.Tensor) -> torch.Tensor:
    """d_in[x, i, j'] = ‖q_x[i] − q_x[j]‖² for j ≠ i (row-major off-diagonal): V×B×D → V×B×(B−1).

    ‖a‖² + ‖b‖² − 2⟨a,b⟩ has the difference form's gradient without a V×B×B×D intermediate."""
    n_views, batch, _ = q.shape
    sq = q.pow(2).sum(-1)
    d_in = sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * q @ q.transpose(1, 2)            # V×B×B
    off_batch = ~torch.eye(batch, dtype=torch.bool, device=q.device)
    return d_in[:, off_batch].reshape(n_views, batch, batch - 1)


def cacr_queue_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, alpha: float = 1.0, beta: float = 1.0,
                    tau_pos: float = 1.0, tau_neg: float = 1.0, intra_batch: bool = True,
                    per_view_queue: bool = False):
    """CACR loss of the queue MoCo (spec §f.2) for V views of a local batch.

    q: V×B×D normalised queries (with gradient); k: V×B×D normalised keys (no gradient);
    queue: D×K unit-norm columns (read only, not kept for the backward: it may be updated in place after).
    Returns (loss1, loss2).  ``cacr_queue_terms`` gives the same quantities element by element.

    * attraction: d1[x,i,y'] = ‖q_x[i] − k_y[i]‖² (y ≠ x), w1 = softmax_y(τ₊·d1) detached,
      loss1 = α·mean_x mean_i Σ_y w1·d1;
    * repulsion: D_x = [2 − 2·q·Q ‖ ‖q_x[i] − q_x[j]‖² (j ≠ i)], w2 = softmax(−τ₋·D̃) with the queue part
      detached and the intra-batch part not (quirk §k.2), loss2 = β·mean_x mean_i Σ_m w2·(−D).
      ``per_view_queue=False`` reproduces the original, which caches q_0·Q and reuses it for every view
      (quirk §k.1); True uses each view's own q_x·Q.

    How the V×B×(K+B−1) softmax is avoided: the queue weights are detached, so the queue columns only enter
    through three row statistics of softmax_m(2τ₋·q·Q) — its log-partition lse_q, its weighted mean of the queue
    columns μ (both constants) and the weighted mean distance 2 − 2⟨q, μ⟩, whose gradient −2μ is exactly that of
    Σ_m w2·(2 − 2⟨q, Q_m⟩) with w2 detached.  The queue part's softmax mass exp(lse_q − 2τ₋) is then merged with
    the (small, differentiable) intra-batch logits.
    """
    n_views, batch, dim = q.shape
    loss1 = _attraction_loss(q, k, alpha, tau_pos)

    queue_queries = q if per_view_queue else q[:1]                                  # U×B×D, U ∈ {V, 1}
    # logits of the queue part: −τ₋·(2 − 2⟨q, Q_m⟩) = 2τ₋⟨q, Q_m⟩ − 2τ₋
    lse_q, mean_q = softmax_moments(queue_queries.detach().reshape(-1, dim), queue.t(), 2 * tau_neg)
    lse_q = (lse_q - 2 * tau_neg).reshape(-1, batch)                                # U×B
    # Σ_m w·d_queue / Σ_m w over the queue alone (gradient through q only, the weights being constants)
    mean_dist_q = 2 - 2 * (queue_queries * mean_q.reshape(queue_queries.shape)).sum(-1)   # U×B
    if not intra_batch:
        loss2 = -beta * mean_dist_q.mean()
        return loss1, loss2

    d_in = _intra_batch_distances(q)                                                # V×B×(B−1)
    logits_in = -tau_neg * d_in
    # shift by the row maximum of all K + B − 1 logits (a constant: the expression is shift invariant)
    shift = torch.maximum(lse_q, logits_in.detach().amax(-1))                      # V×B
    mass_q = torch.exp(lse_q - shift)                                               # Σ_m exp(logit − shift)
    mass_in = torch.exp(logits_in - shift.unsqueeze(-1))                            # with gradient (quirk §k.2)
    weighted_distance = (mass_q * mean_dist_q + (mass_in * d_in).sum(-1)) / (mass_q + mass_in.sum(-1))
    loss2 = -beta * weighted_distance.mean()
    return loss1, loss2


@torch.no_grad()
def cacr_queue_terms(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau_pos: float = 1.0,
                     tau_neg: float = 1.0, intra_batch: bool = True, per_view_queue: bool = False):
    """The element-wise terms of ``cacr_queue_loss`` (for inspection and the golden checks; O(V·B·K) memory).

    → {d1, w1: V×B×(V−1), d_queue: V×B×K, w2: V×B×(K[+B−1])}.
    """
    n_views = q.shape[0]
    _, d1, w1 = _attraction_loss(q, k, 1.0, tau_pos, with_terms=True)
    if per_view_queue:
        d_queue = 2 - 2 * q @ queue                                                 # V×B×K
    else:
        d_queue = (2 - 2 * q[0] @ queue).unsqueeze(0).expand(n_views, -1, -1)
    distances = torch.cat([d_queue, _intra_batch_distances(q)], dim=-1) if intra_batch else d_queue
    return {"d1": d1, "w1": w1, "d_queue": d_queue, "w2": torch.softmax(-tau_neg * distances, dim=-1)}


class MoCo(nn.Module):
    """Query / momentum key encoders, a queue of keys, shuffle-BN, and the CACR loss over V views.

    forward(im_list: list of V tensors b×C×H×W, epoch) → MoCoLosses(loss1, loss2); the loop minimises their sum.
    ``tau_plus`` / ``with_debiased`` are accepted and unused, like in the original (quirk §k.5).
    """

    def __init__(self, base_encoder, dim=128, K=65536, m=0.999, mlp=False, Ny=4, tau_pos=1.0, tau_neg=1.0,
                 alpha=3.0, beta=3.0, tau_plus=0.1, with_debiased=False, unif_intra_batch=True,
                 per_view_queue=False):
        super().__init__()
        self.K, self.m, self.Ny = K, m, Ny
        self.tau_pos, self.tau_neg, self.alpha, self.beta = tau_pos, tau_neg, alpha, beta
        self.tau_plus, self.with_debiased = tau_plus, with_debiased
        self.unif_intra_batch, self.per_view_queue = unif_intra_batch, per_view_queue

        self.encoder_q, self.encoder_k = moco_encoder_pair(base_encoder, dim, mlp)

        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        params_k = list(self.encoder_k.parameters())
        params_q = [p.detach() for p in self.encoder_q.parameters()]
        torch._foreach_mul_(params_k, self.m)
        torch._foreach_add_(params_k, params_q, alpha=1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        if _distributed():
            from common.distributed import concat_all_gather
            keys = concat_all_gather(keys)
        batch_size = keys.shape[0]
        if self.K % batch_size != 0:
            raise UserError(f"the queue length --moco-k {self.K} is not a multiple of the global batch "
                            f"{batch_size}; choose --moco-k divisible by the batch size")
        ptr = int(self.queue_ptr)
        self.queue[:, ptr:ptr + batch_size] = keys.t().to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + batch_size) % self.K

    @torch.no_grad()
    def _keys(self, im):
        """Momentum-encoder keys with shuffle-BN across processes (a no-op shuffle on one process)."""
        if _distributed():
            from common.distributed import batch_shuffle_ddp, batch_unshuffle_ddp
            im, idx_unshuffle = batch_shuffle_ddp(im)
            k = F.normalize(self.encoder_k(im), dim=1)
            return batch_unshuffle_ddp(k, idx_unshuffle)
        return F.normalize(self.encoder_k(im), dim=1)

    def forward(self, im_list, epoch=None, return_info=False):
        # each view is a separate encoder pass so BN statistics stay per view (as in the original)
        q = torch.stack([F.normalize(self.encoder_q(im), dim=1) for im in im_list])
        self._momentum_update_key_encoder()
        with torch.no_grad():
            k = torch.stack([self._keys(im) for im in im_list])
        with torch.autocast(q.device.type, enabled=False):   # --amp: the encoders in half precision, the loss not
            # the queue's precision (float32, or float64 in the golden checks), never the autocast dtype
            q_loss, k_loss = q.to(self.queue.dtype), k.to(self.queue.dtype)
            # the loss keeps no reference to the queue, so the in-place enqueue below needs no copy of it
            loss1, loss2 = cacr_queue_loss(q_loss, k_loss, self.queue, self.alpha, self.beta, self.tau_pos,
                                           self.tau_neg, self.unif_intra_batch, self.per_view_queue)
            info = cacr_queue_terms(q_loss, k_loss, self.queue, self.tau_pos, self.tau_neg, self.unif_intra_batch,
                                    self.per_view_queue) if return_info else None
        self._dequeue_and_enqueue(k[-1])
        losses = MoCoLosses(loss1, loss2)
        if return_info:
            info.update(q=q, k=k)
            return losses, info
        return losses
