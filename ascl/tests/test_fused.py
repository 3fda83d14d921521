"""The hand-written paths of the ASCL MoCo loss against plain autograd / the textbook formulas (float64)."""
import math

import pytest
import torch
import torch.nn.functional as F

from ascl.losses import ASCLLoss, moco_ascl_loss, moco_logits, neighbor_weights, relabel, soft_cross_entropy


def _inputs(n=6, c=8, q=20, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(n, c, generator=g, dtype=dtype), dim=1),
            F.normalize(torch.randn(n, c, generator=g, dtype=dtype), dim=1),
            F.normalize(torch.randn(c, q, generator=g, dtype=dtype), dim=0))


def test_moco_logits_and_soft_cross_entropy_match_autograd():
    q, k, queue = _inputs()
    g = torch.Generator().manual_seed(5)
    soft = torch.rand(q.shape[0], 1 + queue.shape[1], generator=g, dtype=torch.float64)
    soft = soft / soft.sum(1, keepdim=True)
    upstream = torch.tensor(1.7, dtype=torch.float64)

    q1 = q.clone().requires_grad_(True)
    logits = moco_logits(q1, k, queue, 0.1)
    logits.retain_grad()
    (soft_cross_entropy(logits, soft) * upstream).backward()

    q2 = q.clone().requires_grad_(True)
    ref_logits = torch.cat([(q2 * k).sum(1, keepdim=True), q2 @ queue], 1) / 0.1
    ref_logits.retain_grad()
    ref = -(soft * F.log_softmax(ref_logits, 1)).sum(1).mean()
    (ref * upstream).backward()

    torch.testing.assert_close(logits, ref_logits, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(soft_cross_entropy(logits.detach(), soft), ref.detach(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(logits.grad, ref_logits.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(q1.grad, q2.grad, rtol=1e-12, atol=1e-14)


def test_soft_cross_entropy_gradcheck():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 7, generator=g, dtype=torch.float64, requires_grad=True)
    soft = torch.rand(4, 7, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: soft_cross_entropy(x, soft), (logits,))
    q, k, queue = _inputs()
    assert torch.autograd.gradcheck(lambda x: moco_logits(x, k, queue, 0.2), (q.clone().requires_grad_(True),))


@pytest.mark.parametrize("relation", ["ascl", "ahcl"])
def test_entropy_and_p_match_the_log_softmax_formula(relation):
    g = torch.Generator().manual_seed(2)
    logits = 20 * torch.randn(5, 30, generator=g, dtype=torch.float64)
    logits[0, 3] = 400.0          # a peaked row: H ≈ 0, where −Σ p log p must not cancel
    w, p, entropy, confidence = neighbor_weights(logits.clone(), relation, 3, math.log(30))
    ref_p = F.softmax(logits, 1)
    ref_h = -(ref_p * F.log_softmax(logits, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(p, ref_p, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(entropy, ref_h, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(confidence, 1 - ref_h / math.log(30), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("relation", ["ascl", "ahcl", "hard", "normal"])
def test_relabel_without_intermediates_gives_the_same_targets(relation):
    _, k, queue = _inputs(seed=3)
    full = relabel(k, queue, 0.05, relation, nn_num=3, keep_intermediates=True)
    lean = relabel(k, queue, 0.05, relation, nn_num=3, keep_intermediates=False)
    assert torch.equal(full.soft_labels, lean.soft_labels)
    assert torch.equal(full.max_weight, full.neighbor_weights.amax(1))
    assert torch.equal(full.max_weight, lean.max_weight)
    assert lean.neighbor_weights is None and lean.p is None and lean.logits_pd is None
    if relation in ("ascl", "ahcl"):
        assert torch.equal(full.entropy, lean.entropy) and torch.equal(full.confidence, lean.confidence)
        # the kept intermediates are the textbook ones
        ref_pd = k @ queue / 0.05
        torch.testing.assert_close(full.logits_pd, ref_pd, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(full.p, F.softmax(ref_pd, 1), rtol=1e-12, atol=1e-15)


def test_module_with_and_without_intermediates_same_loss_and_gradient():
    q, k, _ = _inputs(n=4, c=8, q=16, seed=4)
    grads, losses = [], []
    for keep in (False, True):
        torch.manual_seed(0)
        mod = ASCLLoss(dim=8, mem_size=16, type="ascl", nn_num=2, keep_intermediates=keep).double()
        qq = q.clone().requires_grad_(True)
        out = mod(qq, k)
        out.loss.backward()
        losses.append(out.loss.detach())
        grads.append(qq.grad)
        assert (out.p is not None) == keep and (out.neighbor_weights is not None) == keep
    assert torch.equal(losses[0], losses[1]) and torch.equal(grads[0], grads[1])


def test_under_bfloat16_autocast_the_loss_stays_float32_and_close():
    q, k, queue = _inputs(n=8, c=16, q=64, seed=6, dtype=torch.float32)
    ref = moco_ascl_loss(q, k, queue, 0.1, 0.05, "ascl", 3).loss
    qq = q.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = moco_ascl_loss(qq, k, queue, 0.1, 0.05, "ascl", 3)
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and out.soft_labels.dtype == torch.float32
    assert qq.grad.dtype == torch.float32 and torch.isfinite(qq.grad).all()
    torch.testing.assert_close(out.loss, ref, rtol=2e-2, atol=0)
