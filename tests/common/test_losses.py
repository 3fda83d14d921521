"""common.losses.nt_xent against two independent computations: AttentioNCE's two-view SimCLR loss and a loop."""
import torch
import torch.nn.functional as F

from attentionce.losses import simclr_loss
from common.losses import nt_xent


def test_nt_xent_is_simclr_for_two_views_and_the_multi_positive_form_beyond():
    generator = torch.Generator().manual_seed(0)
    two = F.normalize(torch.randn(2, 8, 5, generator=generator, dtype=torch.float64), dim=-1)
    assert torch.allclose(nt_xent(two, 0.5), simclr_loss(two, 0.5))

    views, batch, temperature = 3, 4, 0.3
    z = F.normalize(torch.randn(views, batch, 5, generator=generator, dtype=torch.float64), dim=-1)
    z.requires_grad_(True)
    flat = z.detach().reshape(views * batch, 5)
    terms = []
    for n in range(views * batch):
        denominator = sum(torch.exp(flat[n] @ flat[m] / temperature) for m in range(views * batch) if m != n)
        terms += [-torch.log(torch.exp(flat[n] @ flat[p] / temperature) / denominator)
                  for p in range(views * batch) if p != n and p % batch == n % batch]
    loss, attraction, repulsion = nt_xent(z, temperature, return_terms=True)
    assert torch.allclose(loss, torch.stack(terms).mean())
    assert torch.allclose(loss, attraction + repulsion)
    loss.backward()  # the -inf self-similarities must not leak NaN into the gradient
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
