"""The hand-written AttentioNCE gradient (attentionce.losses._AttentioNCERows) against autograd through the
spec's formula written out with masked_select / cat, float64, small sizes."""
import pytest
import torch
import torch.nn.functional as F

from attentionce.losses import BETA_EPSILON, attentionce_loss, negative_mask


def literal_per_anchor(anchors, positives, T, d_pos, d_neg, all_anchors=None, offset=0):
    """Spec §f as the original writes it (masked_select of the negatives, cat, -log(pos / (pos + Σ neg)))."""
    V, b, _ = anchors.shape
    columns = anchors if all_anchors is None else all_anchors
    pos_sim = torch.einsum("aid,kid->aik", anchors, positives).reshape(V * b, -1)
    alpha = torch.softmax(pos_sim.detach() / d_pos, dim=1)
    pos_score = torch.exp((alpha * pos_sim).sum(1) / T)
    sim = anchors.reshape(V * b, -1) @ columns.reshape(V * columns.shape[1], -1).t()
    mask = negative_mask(b, V, columns.shape[1], offset)
    neg_sim = sim.masked_select(mask).view(V * b, -1)
    beta = (torch.softmax(neg_sim.detach() / d_neg, dim=1) + BETA_EPSILON) * neg_sim.shape[1]
    neg_score = torch.exp(neg_sim * beta / T)
    return -torch.log(pos_score / (pos_score + neg_score.sum(1)))


def views(seed, n_views=6, b=5, d=7):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n_views, b, d, generator=g, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("T,d_pos,d_neg,n_anchor", [(0.5, 1.0, 10.0, 2), (0.2, 2.0, 0.5, 2), (0.5, 1.0, float("inf"), 2),
                                                    (0.3, 1.0, 1.0, 3)])
def test_hand_written_gradient_matches_autograd(T, d_pos, d_neg, n_anchor):
    z = views(int(T * 10) + n_anchor).requires_grad_(True)
    upstream = torch.rand(n_anchor * z.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = attentionce_loss(z[:n_anchor], z[n_anchor:], T, d_pos, d_neg, reduction="none")
    ref = literal_per_anchor(z[:n_anchor], z[n_anchor:], T, d_pos, d_neg)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(ours, z, upstream)[0], torch.autograd.grad(ref, z, upstream)[0],
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T,d_pos,d_neg", [(0.5, 1.0, 10.0), (0.5, 1.0, float("inf"))])
def test_mean_reduction_gradient_matches_autograd(T, d_pos, d_neg):
    """reduction='mean' returns the mean from inside the autograd function, whose backward then folds the one
    upstream number into the GEMM operand: same value and gradient as the literal formula, twice in a row."""
    z = views(7, b=6).requires_grad_(True)
    ours = attentionce_loss(z[:2], z[2:], T, d_pos, d_neg)
    ref = literal_per_anchor(z[:2], z[2:], T, d_pos, d_neg).mean()
    assert ours.dim() == 0
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    expected = torch.autograd.grad(3.0 * ref, z)[0]
    first = torch.autograd.grad(3.0 * ours, z, retain_graph=True)[0]
    torch.testing.assert_close(first, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(3.0 * ours, z)[0], expected, rtol=1e-10, atol=1e-12)


def test_gradient_into_gathered_anchors_and_offset():
    """Distributed form: local anchors are images 4..7 of the gathered batch, which gets its own gradient."""
    z = views(3, b=8)
    local = z[:, 4:].clone().requires_grad_(True)
    gathered = z[:2].clone().requires_grad_(True)
    ours = attentionce_loss(local[:2], local[2:], 0.5, 1.0, 10.0, all_anchors=gathered, offset=4)
    ref = literal_per_anchor(local[:2], local[2:], 0.5, 1.0, 10.0, all_anchors=gathered, offset=4).mean()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, (local, gathered)), torch.autograd.grad(ref, (local, gathered))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_float32_close_to_float64_and_no_grad_path():
    z = views(5, b=32, d=16)
    exact = attentionce_loss(z[:2], z[2:], 0.5, 1.0, 10.0)
    with torch.no_grad():
        single = attentionce_loss(z[:2].float(), z[2:].float(), 0.5, 1.0, 10.0)
    assert single.dtype == torch.float32 and not single.requires_grad
    torch.testing.assert_close(single.double(), exact, rtol=1e-6, atol=0)


def test_large_loss_stays_finite_in_float32():
    """Quirk §k.17: where exp(ℓ⁺) / Σ exp ℓ underflows in float32 (a loss near 200 at T = 0.01, positives opposite
    to their anchors, negatives equal to them) the literal -log(pos / (pos + Σ neg)) is inf; ours stays the
    float64 value, and so does its gradient."""
    b, d = 4, 8
    anchor = F.normalize(torch.randn(b, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64), dim=1)
    anchor[1:] = anchor[0]                                   # every negative equals the anchor: s⁻ = 1
    exact_views = torch.stack([anchor, anchor, -anchor, -anchor]).requires_grad_(True)   # s⁺ = -1
    exact = attentionce_loss(exact_views[:2], exact_views[2:], 0.01, 1.0, 10.0, reduction="none")
    assert exact.min() > 150
    single_views = exact_views.detach().float().requires_grad_(True)
    assert not torch.isfinite(literal_per_anchor(single_views[:2], single_views[2:], 0.01, 1.0, 10.0)).all()
    single = attentionce_loss(single_views[:2], single_views[2:], 0.01, 1.0, 10.0, reduction="none")
    torch.testing.assert_close(single.double(), exact.detach(), rtol=1e-6, atol=0)
    grad_exact = torch.autograd.grad(exact.sum(), exact_views)[0]
    grad_single = torch.autograd.grad(single.sum(), single_views)[0]
    torch.testing.assert_close(grad_single.double(), grad_exact, rtol=1e-5, atol=1e-5 * grad_exact.abs().max().item())
