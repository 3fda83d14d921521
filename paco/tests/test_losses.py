"""The fused PaCo loss (hand-written backward) against autograd through the dense transcription of the original."""
import pytest
import torch
import torch.nn.functional as F

from paco.losses import log_class_prior, paco_intermediates, paco_loss

CONFIGS = [
    # anchors, queue K, classes C, alpha, beta, gamma, T, T_b, supt, prior, smooth, gpaco
    dict(B=6, K=12, C=5, alpha=0.05, beta=1.0, gamma=1.0, T=0.2, Tb=None, supt=1.0, prior=True, smooth=0.0),
    dict(B=5, K=10, C=4, alpha=0.2, beta=0.5, gamma=0.5, T=0.1, Tb=0.07, supt=2.0, prior=False, smooth=0.0),
    dict(B=4, K=8, C=6, alpha=1.0, beta=1.0, gamma=0.0, T=0.5, Tb=None, supt=1.0, prior=True, smooth=0.1,
         gpaco=True),
    dict(B=7, K=7, C=30, alpha=0.0, beta=1.0, gamma=1.0, T=0.05, Tb=None, supt=1.0, prior=True, smooth=0.0),
]


def _inputs(cfg, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    n = 2 * cfg["B"] + cfg["K"]
    feats = F.normalize(torch.randn(n, 8, generator=g, dtype=dtype), dim=1)
    labels = torch.randint(0, min(cfg["C"], 3), (n,), generator=g)   # few classes: many positives per row
    labels[cfg["B"]:2 * cfg["B"]] = labels[:cfg["B"]]
    anchors = n - cfg["K"] if cfg.get("gpaco") else cfg["B"]
    sup = 3 * torch.randn(anchors, cfg["C"], generator=g, dtype=dtype)
    counts = torch.randint(0, 50, (cfg["C"],), generator=g)
    prior = log_class_prior(counts, dtype=dtype) if cfg["prior"] else None
    return feats, labels, sup, prior, anchors


def _loss_and_grads(loss_fn, feats, sup, upstream=None):
    """``loss_fn(feats, sup)`` and the gradients w.r.t. feats and sup of it (a scalar) or of ``(it * upstream).sum()``."""
    f, s = feats.clone().requires_grad_(True), sup.clone().requires_grad_(True)
    loss = loss_fn(f, s)
    (loss * upstream).sum().backward() if loss.dim() else loss.backward()
    return loss, f.grad, s.grad


def _assert_matches(fused, reference, loss_tol: dict, grad_tol: dict):
    """(loss, feats grad, sup grad) of the fused loss against those of the transcription."""
    for got, want, tol in zip(fused, reference, (loss_tol, grad_tol, grad_tol)):
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_fused_loss_and_gradients_match_autograd_of_the_transcription(cfg, reduction):
    feats, labels, sup, prior, anchors = _inputs(cfg)
    hp = dict(alpha=cfg["alpha"], beta=cfg["beta"], gamma=cfg["gamma"], temperature=cfg["T"],
              base_temperature=cfg["Tb"], supt=cfg["supt"], log_prior=prior, smooth=cfg["smooth"])
    upstream = torch.linspace(0.5, 2.0, anchors, dtype=torch.float64)
    fused = _loss_and_grads(
        lambda f, s: paco_loss(f, labels, s, cfg["K"], num_anchors=anchors if cfg.get("gpaco") else None,
                               reduction=reduction, **hp), feats, sup, upstream)

    def transcription(f, s):
        per_anchor = paco_intermediates(f, labels, s, anchors, **hp)["per_anchor_loss"]
        return per_anchor.mean() if reduction == "mean" else per_anchor
    _assert_matches(fused, _loss_and_grads(transcription, feats, sup, upstream), dict(rtol=1e-12, atol=1e-12),
                    dict(rtol=1e-10, atol=1e-12))


def test_fused_loss_gradcheck():
    cfg = CONFIGS[0]
    feats, labels, sup, prior, _ = _inputs(cfg)
    feats.requires_grad_(True)
    sup.requires_grad_(True)
    fn = lambda f, s: paco_loss(f, labels, s, cfg["K"], 0.05, log_prior=prior, reduction="none")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (feats, sup))


def test_fused_loss_float32_close_to_the_transcription_and_keeps_dtypes():
    cfg = CONFIGS[0]
    feats, labels, sup, prior, anchors = _inputs(cfg, dtype=torch.float32)
    fused = _loss_and_grads(lambda f, s: paco_loss(f, labels, s, cfg["K"], 0.05, log_prior=prior), feats, sup)
    reference = _loss_and_grads(
        lambda f, s: paco_intermediates(f, labels, s, anchors, 0.05, log_prior=prior)["per_anchor_loss"].mean(),
        feats, sup)
    assert all(t.dtype == torch.float32 for t in fused)
    _assert_matches(fused, reference, dict(rtol=1e-5, atol=1e-6), dict(rtol=1e-4, atol=1e-6))


def test_only_sup_logits_require_grad():
    cfg = CONFIGS[0]
    feats, labels, sup, prior, _ = _inputs(cfg)
    sup.requires_grad_(True)
    paco_loss(feats, labels, sup, cfg["K"], 0.05, log_prior=prior).backward()
    assert sup.grad is not None and torch.isfinite(sup.grad).all()


def test_half_precision_inputs_computed_in_float32_and_gradients_keep_their_dtype():
    cfg = CONFIGS[0]
    feats, labels, sup, prior, anchors = _inputs(cfg, dtype=torch.float32)
    ref = paco_intermediates(feats, labels, sup, anchors, 0.05, log_prior=prior)["per_anchor_loss"].mean()
    f, s = feats.bfloat16().requires_grad_(True), sup.bfloat16().requires_grad_(True)
    loss = paco_loss(f, labels, s, cfg["K"], 0.05, log_prior=prior)
    loss.backward()
    assert loss.dtype == f.grad.dtype == s.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.float(), ref, rtol=2e-2, atol=0)
