"""The ImageNet CACR losses (queue MoCo, MoCo-v3) against dense re-statements of the original formulas, float64.

The project computes the queue / key softmaxes tile by tile (cacr.softmax_moments); the references below build
the full matrices like the original, so loss values and gradients must agree to float64 rounding.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cacr.imagenet_pretraining.moco.builder as v3
import cacr.softmax_moments as sm
from cacr.large_scale_shift_experiments.imagenet.ours.builder import MoCo, cacr_queue_loss, cacr_queue_terms

F64 = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(sm, "_TILE_ROWS", 4)
    monkeypatch.setattr(sm, "_TILE_ELEMENTS", 28)       # 7 columns per tile: ragged tiles over K / M


def _unit(*shape, g):
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def _queue_loss_reference(q, k, queue, alpha, beta, tau_pos, tau_neg, intra, per_view):
    """The original's per-view loop (dense V×B×(K+B−1) softmax, q_0·Q reused unless ``per_view``)."""
    n_views, batch, _ = q.shape
    off_batch = ~torch.eye(batch, dtype=torch.bool)
    cached = q[0] @ queue
    loss1 = loss2 = 0.0
    for x in range(n_views):
        others = [y for y in range(n_views) if y != x]
        d1 = (q[x] - k[others]).pow(2).sum(-1).t()
        w1 = torch.softmax(tau_pos * d1.detach(), dim=1)
        loss1 = loss1 + alpha * (d1 * w1).sum(1).mean()
        cost = 2 - 2 * (q[x] @ queue if per_view else cached)
        for_weights = cost.detach()
        if intra:
            d_in = (q[x][:, None] - q[x]).pow(2).sum(-1)[off_batch].view(batch, batch - 1)
            cost, for_weights = torch.cat([cost, d_in], 1), torch.cat([for_weights, d_in], 1)
        w2 = torch.softmax(-tau_neg * for_weights, dim=1)
        loss2 = loss2 + beta * (-cost * w2).sum(1).mean()
    return loss1 / n_views, loss2 / n_views


@pytest.mark.parametrize("intra", [True, False])
@pytest.mark.parametrize("per_view", [False, True])
@pytest.mark.parametrize("tau_neg", [2.0, 0.0, -0.5])
def test_queue_loss_matches_dense_original(small_tiles, intra, per_view, tau_neg):
    g = torch.Generator().manual_seed(0)
    n_views, batch, dim, K = 4, 6, 5, 31
    q = _unit(n_views, batch, dim, g=g).requires_grad_(True)
    k = _unit(n_views, batch, dim, g=g)
    queue = _unit(K, dim, g=g).t()
    hp = (1.5, 0.7, 0.8, tau_neg, intra, per_view)
    loss1, loss2 = cacr_queue_loss(q, k, queue, *hp)
    ref1, ref2 = _queue_loss_reference(q, k, queue, *hp)
    torch.testing.assert_close(loss1, ref1, **F64)
    torch.testing.assert_close(loss2, ref2, **F64)
    grad, = torch.autograd.grad(loss1 + loss2, q)
    ref_grad, = torch.autograd.grad(ref1 + ref2, q)
    torch.testing.assert_close(grad, ref_grad, **F64)


def test_queue_terms_are_the_dense_matrices():
    g = torch.Generator().manual_seed(1)
    q, k, queue = _unit(3, 4, 5, g=g), _unit(3, 4, 5, g=g), _unit(9, 5, g=g).t()
    terms = cacr_queue_terms(q, k, queue, tau_pos=1.0, tau_neg=2.0)
    assert terms["w2"].shape == (3, 4, 9 + 3) and terms["d_queue"].shape == (3, 4, 9)
    torch.testing.assert_close(terms["d_queue"][2], 2 - 2 * q[0] @ queue, **F64)     # q_0·Q reused (quirk §k.1)
    torch.testing.assert_close(terms["w2"].sum(-1), torch.ones(3, 4, dtype=torch.float64), **F64)


def test_moco_forward_backward_after_enqueue_uses_the_queue_before(small_tiles):
    """The loss keeps no reference to the queue: the in-place enqueue in forward must not alter the gradient."""
    torch.manual_seed(0)
    din, dim, K, batch = 6, 5, 24, 4
    model = MoCo(lambda num_classes: nn.Linear(din, num_classes, bias=False), dim=dim, K=K, m=0.9, Ny=2,
                 tau_pos=1.0, tau_neg=2.0, alpha=1.0, beta=1.0).double()
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(batch, din, generator=g, dtype=torch.float64) for _ in range(3)]
    queue_before = model.queue.clone()
    losses, info = model(xs, epoch=0, return_info=True)
    (losses.loss1 + losses.loss2).backward()
    assert not torch.equal(model.queue, queue_before)                 # the enqueue happened before backward
    w_q = model.encoder_q.weight.detach().clone().requires_grad_(True)
    q = torch.stack([F.normalize(x @ w_q.t(), dim=1) for x in xs])
    ref1, ref2 = _queue_loss_reference(q, info["k"], queue_before, 1.0, 1.0, 1.0, 2.0, True, False)
    torch.testing.assert_close(losses.loss1 + losses.loss2, ref1 + ref2, **F64)
    ref_grad, = torch.autograd.grad(ref1 + ref2, w_q)
    torch.testing.assert_close(model.encoder_q.weight.grad, ref_grad, **F64)


def _v3_reference(queries, k, k_all, rank, T, cost):
    """The original cacr_rbfloss / cacr_euclideanloss with the gathered keys ``k_all`` and process ``rank``."""
    qs = [F.normalize(q, dim=1) for q in queries]
    k = F.normalize(k, dim=1)
    with torch.no_grad():
        p = torch.softmax(torch.stack([((q - k) ** 2).sum(-1) for q in qs]) / T, dim=0)
    batch, n_all = k.shape[0], k_all.shape[0]
    labels = torch.arange(batch) + batch * rank
    loss = 0.0
    for j, q in enumerate(qs):
        if cost == "rbf":
            loss = loss + (F.cross_entropy(q @ k_all.t() / T, labels, reduction="none") * p[j]).mean() * (2 * T)
        else:
            c = 1 - q @ k_all.t()
            mask = torch.ones(batch, n_all, dtype=torch.bool)
            mask[torch.arange(batch), labels] = False
            neg = -c[mask].view(batch, n_all - 1)
            rho = torch.softmax(neg.detach() / T, dim=1)
            loss = loss + ((c[torch.arange(batch), labels] + (neg * rho).sum(1)) * p[j]).sum()
    return loss


@pytest.mark.parametrize("cost", ["rbf", "euclidean"])
@pytest.mark.parametrize("n_queries,T", [(1, 1.0), (3, 0.2)])
def test_v3_loss_matches_dense_original(small_tiles, monkeypatch, cost, n_queries, T):
    g = torch.Generator().manual_seed(3)
    batch, dim = 5, 6
    queries = [torch.randn(batch, dim, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(n_queries)]
    k = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    before, after = _unit(batch, dim, g=g), _unit(2 * batch, dim, g=g)
    # process 1 of 4: its keys sit at columns batch … 2·batch − 1 of the gathered keys
    monkeypatch.setattr(v3, "_gather_keys", lambda kh: (torch.cat([before, kh, after]), 1))
    loss = v3.LOSSES[cost](queries, k, T)
    ref = _v3_reference(queries, k, torch.cat([before, F.normalize(k, dim=1), after]), 1, T, cost)
    torch.testing.assert_close(loss, ref, **F64)
    grads = torch.autograd.grad(loss, queries)
    ref_grads = torch.autograd.grad(ref, queries)
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad, **F64)
