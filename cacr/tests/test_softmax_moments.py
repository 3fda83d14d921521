"""The tiled softmax statistics (cacr.softmax_moments) against the dense formulas, in float64."""
import pytest
import torch

import cacr.softmax_moments as sm
from cacr.softmax_moments import logsumexp_of_projections, softmax_moments


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 3 rows × 5 columns, so every test crosses row and column tile boundaries (ragged last tiles)."""
    monkeypatch.setattr(sm, "_TILE_ROWS", 3)
    monkeypatch.setattr(sm, "_TILE_ELEMENTS", 15)      # 15 // 3 rows = 5 columns per tile


def _dense(x, y, scale, exclude=None):
    logits = scale * x @ y.t()
    if exclude is not None:
        logits[torch.arange(len(x)), exclude] = float("-inf")
    return torch.logsumexp(logits, 1), torch.softmax(logits, 1) @ y


@pytest.mark.parametrize("scale", [1.0, 7.5, -2.0, 0.0])
@pytest.mark.parametrize("with_exclude", [False, True])
def test_moments_match_dense(small_tiles, scale, with_exclude):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(17, 4, generator=g, dtype=torch.float64)
    exclude = torch.randint(0, 17, (8,), generator=g) if with_exclude else None
    lse, mean = softmax_moments(x, y, scale, exclude)
    ref_lse, ref_mean = _dense(x, y, scale, exclude)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-12, atol=1e-12)


def test_moments_large_logits_stay_finite(small_tiles):
    # logits up to ±1e4: any tile order must rescale without overflow
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(23, 3, generator=g, dtype=torch.float64)
    lse, mean = softmax_moments(x, y, 1e4)
    ref_lse, ref_mean = _dense(x, y, 1e4)
    assert torch.isfinite(lse).all() and torch.isfinite(mean).all()
    torch.testing.assert_close(lse, ref_lse, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-12, atol=1e-12)


def test_logsumexp_gradient_gradcheck(small_tiles):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(12, 4, generator=g, dtype=torch.float64)
    exclude = torch.randint(0, 12, (7,), generator=g)
    assert torch.autograd.gradcheck(lambda t: logsumexp_of_projections(t, y, 0.7, exclude), (x,))
    assert torch.autograd.gradcheck(lambda t: logsumexp_of_projections(t, y, 2.0), (x,))


def test_logsumexp_gradient_equals_autograd_of_dense(small_tiles):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(20, 6, generator=g, dtype=torch.float64)
    weights = torch.rand(9, generator=g, dtype=torch.float64)
    grad, = torch.autograd.grad((weights * logsumexp_of_projections(x, y, 1.3)).sum(), x)
    ref, = torch.autograd.grad((weights * _dense(x, y, 1.3)[0]).sum(), x)
    torch.testing.assert_close(grad, ref, rtol=1e-12, atol=1e-12)


def test_logsumexp_rejects_keys_with_gradient():
    x, y = torch.randn(2, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="must not require gradient"):
        logsumexp_of_projections(x, y)


def test_half_precision_inputs_are_reduced_in_float32():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 8, generator=g), torch.randn(300, 8, generator=g)
    lse, mean = softmax_moments(x.bfloat16(), y.bfloat16(), 1.0)
    assert lse.dtype == mean.dtype == torch.float32
    ref_lse, ref_mean = _dense(x.bfloat16().double(), y.bfloat16().double(), 1.0)
    torch.testing.assert_close(lse.double(), ref_lse, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-5, atol=1e-5)
    xb = x.bfloat16().requires_grad_(True)
    logsumexp_of_projections(xb, y.bfloat16()).sum().backward()
    assert xb.grad.dtype == torch.bfloat16
