"""Properties of the ASCL loss functions and the queue module (the exact values are covered by the golden test)."""
import math

import pytest
import torch
import torch.nn.functional as F

from ascl.losses import ASCLLoss, byol_ascl_loss, moco_ascl_loss, neighbor_weights, relabel


def _inputs(n=8, c=16, q=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(n, c, generator=g), dim=1), F.normalize(torch.randn(n, c, generator=g), dim=1),
            F.normalize(torch.randn(c, q, generator=g), dim=0))


def test_normal_type_is_infonce():
    q, k, queue = _inputs()
    out = moco_ascl_loss(q, k, queue, T1=0.2, T2=0.05, relation="normal")
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue], 1) / 0.2
    ref = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))
    assert torch.allclose(out.loss, ref, atol=1e-6)


@pytest.mark.parametrize("relation", ["ascl", "ahcl", "hard", "normal"])
def test_soft_labels_rows_sum_to_one_and_positive_dominates(relation):
    q, k, queue = _inputs(seed=1)
    target = relabel(k, queue, 0.05, relation, nn_num=3)
    assert torch.allclose(target.soft_labels.sum(1), torch.ones(q.shape[0]), atol=1e-6)
    assert (target.soft_labels[:, :1] >= target.soft_labels[:, 1:]).all()
    if relation == "hard":
        assert torch.allclose(target.soft_labels[:, 0], torch.full((q.shape[0],), 1 / 4))


def test_ascl_weights_clip_at_one_and_confidence_range():
    logits = torch.tensor([[50.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    w, p, entropy, confidence = neighbor_weights(logits, "ascl", nn_num=5, max_entropy=math.log(4))
    assert w.max() <= 1.0 and torch.isclose(w[0, 0], torch.tensor(1.0))
    assert torch.isclose(confidence[1, 0], torch.tensor(0.0), atol=1e-6)   # uniform → no neighbours
    assert torch.allclose(w[1], torch.zeros(4), atol=1e-6)


def test_gradient_is_softmax_minus_target():
    q, k, queue = _inputs(seed=2)
    q = q.clone().requires_grad_(True)
    out = moco_ascl_loss(q, k, queue, 0.1, 0.05, "ascl", 5)
    out.logits.retain_grad()
    out.loss.backward()
    expected = (out.logits.softmax(1) - out.soft_labels) / q.shape[0]
    assert torch.allclose(out.logits.grad, expected, atol=1e-6)


def test_byol_loss_is_batch_mean_and_normal_matches_byol():
    q, k, _ = _inputs(seed=3)
    out = byol_ascl_loss(q, k, 0.05, "normal")
    assert out.loss.dim() == 0
    assert torch.allclose(out.loss, (2 - 2 * (q * k).sum(1)).mean())
    soft = byol_ascl_loss(q, k, 0.05, "ascl", 2)
    assert soft.soft_labels.shape == (8, 8) and torch.allclose(soft.soft_labels.sum(1), torch.ones(8), atol=1e-6)


def test_queue_enqueue_wraps_and_rejects_bad_batch():
    module = ASCLLoss(dim=16, mem_size=24, type="ascl", nn_num=2)
    for step in range(4):
        q, k, _ = _inputs(n=8, seed=10 + step)
        module(q, k, torch.arange(8) + step)
        assert int(module.queue_ptr) == (step + 1) * 8 % 24
    assert torch.allclose(module.queue[:, 0:8], k.t())
    assert (module.labels[0:8] == torch.arange(8) + 3).all()
    with pytest.raises(ValueError, match="multiple"):
        module(*_inputs(n=5)[:2])
