"""Loss math beyond the golden files: a direct per-pair re-implementation of spec §f (other sizes and
temperatures), the quirk-3 guard and the memory update."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from common.utils import UserError
from mcl.losses.cifar_sup_mcl_loss import SupMCLLoss, check_same_class_partner, sup_mcl_losses
from mcl.losses.imagenet_sup_mcl_loss import memory_mcl_losses, update_memory
from mcl.losses.kd import logit_distillation
from mcl.moco.losses import dequeue_and_enqueue, moco_mcl_loss


def kl(u, v, T):
    return F.kl_div(F.log_softmax(u / T, 1), F.softmax(v.detach() / T, 1), reduction="batchmean") * T * T


def supcon_rows(L, labels):
    B = L.shape[0]
    eye = torch.eye(B, dtype=torch.bool)
    pos = (labels[:, None] == labels[None]) & ~eye
    exp = torch.exp(L) * (~eye)
    log_prob = L - torch.log(exp.sum(1, keepdim=True))
    return -((pos * log_prob).sum(1) / pos.sum(1)).mean()


def reference_cifar(z, labels, tau, T):
    N = z.shape[0]
    S = lambda i, j: z[i] @ z[j].T / tau  # noqa: E731
    vcl = sum(supcon_rows(S(i, i), labels) for i in range(N))
    icl = sum(supcon_rows(S(i, j), labels) + supcon_rows(S(j, i), labels) for i, j in itertools.combinations(range(N), 2))
    soft_vcl = sum(kl(S(i, i), S(j, j), T) for i in range(N) for j in range(N) if i != j)
    soft_icl = sum(kl(S(i, j), S(j, i), T) + kl(S(j, i), S(i, j), T) for i, j in itertools.combinations(range(N), 2))
    return vcl, soft_vcl, icl, soft_icl


@pytest.mark.parametrize("N,B,D,tau,T", [(3, 12, 8, 0.2, 4.0), (2, 6, 5, 0.05, 1.0)])
def test_cifar_losses_match_per_pair_reference(N, B, D, tau, T):
    g = torch.Generator().manual_seed(N * 100 + B)
    z = F.normalize(torch.randn(N, B, D, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.arange(B // 2).repeat_interleave(2)[torch.randperm(B, generator=g)]
    ours = sup_mcl_losses(z, labels, tau, T)
    ref = reference_cifar(z, labels, tau, T)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("N,B,D,tau,T", [(2, 8, 5, 0.1, 3.0), (3, 12, 8, 0.2, 4.0), (4, 6, 4, 0.05, 1.0)])
def test_cifar_hand_written_gradient_matches_autograd(N, B, D, tau, T):
    """Per-term and weighted gradients of the fused loss against autograd through the per-pair reference."""
    g = torch.Generator().manual_seed(7 * N + B)
    z = F.normalize(torch.randn(N, B, D, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)
    labels = torch.arange(B // 2).repeat_interleave(2)[torch.randperm(B, generator=g)]
    ours = sup_mcl_losses(z, labels, tau, T)
    ref = reference_cifar(z, labels, tau, T)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(torch.autograd.grad(a, z, retain_graph=True)[0],
                                   torch.autograd.grad(b, z, retain_graph=True)[0], rtol=1e-9, atol=1e-12)
    weights = (0.1, 1.0, 0.3, 2.0)
    torch.testing.assert_close(torch.autograd.grad(sum(w * t for w, t in zip(weights, ours)), z)[0],
                               torch.autograd.grad(sum(w * t for w, t in zip(weights, ref)), z)[0],
                               rtol=1e-9, atol=1e-12)


def test_cifar_losses_low_precision_input_and_no_grad():
    """bfloat16 z: computed in float32, gradient returned in bfloat16; under no_grad nothing is saved."""
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(2, 8, 6, generator=g), dim=-1)
    labels = torch.arange(4).repeat_interleave(2)
    exact = sup_mcl_losses(z.double(), labels, 0.1, 3.0)
    low = z.bfloat16().requires_grad_(True)
    terms = sup_mcl_losses(low, labels, 0.1, 3.0)
    sum(terms).backward()
    assert low.grad.dtype == torch.bfloat16 and torch.isfinite(low.grad.float()).all()
    for a, b in zip(terms, exact):
        torch.testing.assert_close(a.double(), b, rtol=0.05, atol=0.05)
    with torch.no_grad():
        assert not any(t.requires_grad for t in sup_mcl_losses(z.requires_grad_(True), labels, 0.1, 3.0))


def test_normalize_hand_written_gradient():
    from mcl.losses.cifar_sup_mcl_loss import Normalize
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    upstream = torch.randn(6, 5, generator=g, dtype=torch.float64)
    ours = Normalize()(x)
    ref = x / x.pow(2).sum(dim=1, keepdim=True).sqrt()
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    torch.testing.assert_close(torch.autograd.grad(ours, x, upstream)[0], torch.autograd.grad(ref, x, upstream)[0],
                               rtol=1e-12, atol=1e-14)


def test_lonely_anchor_is_a_clear_error_not_nan():
    labels = torch.tensor([0, 0, 1, 2, 2])
    with pytest.raises(UserError, match="no other sample of the same class"):
        check_same_class_partner(labels)
    loss = SupMCLLoss([4, 4], feat_dim=3)
    with pytest.raises(UserError):
        loss([torch.randn(5, 4), torch.randn(5, 4)], labels)
    check_same_class_partner(torch.tensor([1, 1, 0, 0]))  # fine


def test_single_network_is_refused():
    with pytest.raises(UserError, match="at least two|≥ 2"):
        SupMCLLoss([4], feat_dim=3)


def test_memory_losses_against_loop_reference():
    g = torch.Generator().manual_seed(0)
    N, B, D, n_data, pos_k, neg_k, tau, T = 3, 5, 6, 40, 2, 7, 0.1, 3.0
    z = F.normalize(torch.randn(N, B, D, generator=g, dtype=torch.float64), dim=-1)
    memory = torch.randn(N, n_data, D, generator=g, dtype=torch.float64)
    pos_idx = torch.randint(0, n_data, (B, 1 + pos_k), generator=g)
    neg_idx = torch.randint(0, n_data, (B, neg_k), generator=g)
    ours = memory_mcl_losses(z, memory, pos_idx, neg_idx, tau, T)
    reference = reference_memory(z, memory, torch.cat([pos_idx, neg_idx], 1), pos_k, tau, T)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

    before = memory.clone()
    anchors = torch.tensor([3, 9, 1, 30, 22])
    update_memory(memory, z, anchors, 0.3)
    expected = F.normalize(0.3 * before[:, anchors] + 0.7 * z, dim=-1)
    torch.testing.assert_close(memory[:, anchors], expected)
    untouched = torch.ones(n_data, dtype=torch.bool)
    untouched[anchors] = False
    assert torch.equal(memory[:, untouched], before[:, untouched])


def reference_memory(z, memory, idx, pos_k, tau, T):
    """Per-pair autograd reference of the memory-bank losses (rows gathered per pair like the original)."""
    N = z.shape[0]

    def A(i, j, columns):  # memory of i, anchors of j
        return torch.einsum("bkd,bd->bk", memory[i][columns], z[j]) / tau

    def nce(L, P):
        return -(L[:, :P] - torch.logsumexp(L, 1, keepdim=True)).mean()

    icl = sum(nce(A(i, j, idx), 1 + pos_k) for i in range(N) for j in range(N) if i != j)
    soft_icl = sum(kl(A(i, j, idx), A(j, i, idx), T) for i in range(N) for j in range(N) if i != j)
    vcl = sum(nce(A(i, i, idx[:, 1:]), pos_k) for i in range(N))
    soft_vcl = sum(kl(A(i, i, idx[:, 1:]), A(j, j, idx[:, 1:]), T) for i in range(N) for j in range(N) if i != j)
    return vcl, soft_vcl, icl, soft_icl


@pytest.mark.parametrize("N,pos_k,chunk_bytes", [(2, 1, 1 << 21), (3, 2, 1), (2, 3, 3000)])
def test_memory_losses_hand_written_gradient(N, pos_k, chunk_bytes):
    """The fused forward (values + per-term gradients, anchors in chunks: one anchor per chunk with
    chunk_bytes=1, a ragged last chunk with 3000) against autograd through the per-pair reference, float64;
    the gradient is the one of the bank *before* update_memory, which runs between forward and backward."""
    g = torch.Generator().manual_seed(N + 10 * pos_k)
    B, D, n_data, neg_k, tau, T = 5, 6, 40, 7, 0.1, 3.0
    z = F.normalize(torch.randn(N, B, D, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)
    memory = torch.randn(N, n_data, D, generator=g, dtype=torch.float64)
    pos_idx = torch.cat([torch.randperm(n_data, generator=g)[:B, None],
                         torch.randint(0, n_data, (B, pos_k), generator=g)], 1)
    neg_idx = torch.randint(0, n_data, (B, neg_k), generator=g)
    idx = torch.cat([pos_idx, neg_idx], 1)
    ref = reference_memory(z, memory.clone(), idx, pos_k, tau, T)
    ours = memory_mcl_losses(z, memory, pos_idx, neg_idx, tau, T, chunk_bytes=chunk_bytes)
    update_memory(memory, z.detach(), pos_idx[:, 0], 0.5)
    weights = torch.tensor([0.1, 1.0, 0.3, 2.0], dtype=torch.float64)
    for k in range(4):
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(ours[k], z, retain_graph=True)[0],
                                   torch.autograd.grad(ref[k], z, retain_graph=True)[0], rtol=1e-9, atol=1e-12)
    weighted = torch.autograd.grad(sum(w * t for w, t in zip(weights, ours)), z)[0]
    expected = torch.autograd.grad(sum(w * t for w, t in zip(weights, ref)), z)[0]
    torch.testing.assert_close(weighted, expected, rtol=1e-9, atol=1e-12)
    with torch.no_grad():   # no gradient wanted: same values, no per-term gradients formed
        again = memory_mcl_losses(z, memory, pos_idx, neg_idx, tau, T, chunk_bytes=chunk_bytes)
    assert all(not t.requires_grad for t in again)


def test_memory_losses_float32_match_float64():
    g = torch.Generator().manual_seed(3)
    z = F.normalize(torch.randn(2, 4, 8, generator=g, dtype=torch.float64), dim=-1)
    memory = F.normalize(torch.randn(2, 50, 8, generator=g, dtype=torch.float64), dim=-1)
    pos_idx, neg_idx = torch.randint(0, 50, (4, 2), generator=g), torch.randint(0, 50, (4, 20), generator=g)
    exact = memory_mcl_losses(z, memory, pos_idx, neg_idx, 0.07, 3.0)
    single = memory_mcl_losses(z.float(), memory.float(), pos_idx, neg_idx, 0.07, 3.0)
    for a, b in zip(single, exact):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_bytes", [1 << 21, 1])
def test_moco_losses_gradients_and_queue(chunk_bytes):
    """The fused loss against per-pair autograd through G^{ab}: values, per-term gradients of q and k; chunk_bytes=1
    forces one row / one queue column per chunk (B = 5 and K = 13 are not multiples of any chunk)."""
    g = torch.Generator().manual_seed(1)
    N, B, C, K = 3, 5, 4, 13
    q = F.normalize(torch.randn(N, B, C, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(N, B, C, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    queue = F.normalize(torch.randn(N, C, K, generator=g, dtype=torch.float64), dim=1)
    intra, *terms = moco_mcl_loss(q, k, queue, 0.2, 3.0, chunk_bytes=chunk_bytes)

    def G(a, b):
        return torch.cat([(q[a] * k[b]).sum(1, keepdim=True), q[a] @ queue[b]], 1) / 0.2

    zeros = torch.zeros(B, dtype=torch.long)
    pairs = [(i, j) for i in range(N) for j in range(N) if i != j]
    reference = [sum(F.cross_entropy(G(i, i), zeros) for i in range(N)),
                 sum(kl(G(i, i), G(j, j), 3.0) for i, j in pairs),
                 sum(F.cross_entropy(G(i, j), zeros) for i, j in pairs),
                 sum(kl(G(i, j), G(j, i), 3.0) for i, j in pairs)]
    torch.testing.assert_close(intra, torch.stack([G(i, i) for i in range(N)]))
    assert not intra.requires_grad
    for ours, ref in zip(terms, reference):
        torch.testing.assert_close(ours, ref)
        for mine, expected in zip(torch.autograd.grad(ours, (q, k), retain_graph=True),
                                  torch.autograd.grad(ref, (q, k), retain_graph=True)):
            torch.testing.assert_close(mine, expected)
    keys, queue = k.detach()[:, :4], queue[:, :, :12].clone()
    ptr = torch.full((N,), 8, dtype=torch.long)
    dequeue_and_enqueue(queue, ptr, keys)
    assert torch.equal(queue[:, :, 8:12], keys.transpose(1, 2)) and ptr.tolist() == [0] * N
    with pytest.raises(ValueError, match="not divisible"):
        dequeue_and_enqueue(queue, ptr, k.detach())


def test_logit_distillation_rules():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 6, 5, generator=g, requires_grad=True)
    cifar = logit_distillation(logits, 3.0, "cifar")
    torch.testing.assert_close(cifar, kl(logits[3], logits.mean(0), 3.0))
    (grad,) = torch.autograd.grad(cifar, logits)
    assert grad[:3].abs().sum() == 0  # teacher detached, only the last network is distilled
    imagenet = logit_distillation(logits, 3.0, "imagenet")
    (grad,) = torch.autograd.grad(imagenet, logits)
    assert grad[:3].abs().sum() > 0  # teacher not detached (quirk 5)
    two = logits[:2].detach()
    torch.testing.assert_close(logit_distillation(two, 3.0, "cifar"),
                               kl(two[0], two.mean(0), 3.0) + kl(two[1], two.mean(0), 3.0))
