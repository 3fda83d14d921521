"""Golden fixtures recorded from the original AttentioNCE loss: every file must pass ``ci/golden.py``."""

import pytest
import torch

from ci.smoke import run_golden
from common.golden import golden_file


def test_golden_fixtures_pass():
    run_golden("attentionce")


def test_golden_check_is_not_vacuous():
    """Perturbing the recorded loss by 1e-6 relative, or beta by dropping the 1e-6 term, fails the check;
    a fixture of another family is not silently accepted."""
    from attentionce.golden_checks import check_fixture
    from common.golden import UnrecognisedFixture
    path = str(golden_file("attentionce", "cifar10_b8_d16_t0.5.pt"))
    fixture = torch.load(path, weights_only=False)
    assert all(r.ok for r in check_fixture(path, fixture))
    bad = {**fixture, "tensors": dict(fixture["tensors"])}
    bad["tensors"]["loss"] = fixture["tensors"]["loss"] * (1 + 1e-6)
    bad["tensors"]["beta"] = fixture["tensors"]["beta"] - 14 * 1e-6
    failed = {r.key for r in check_fixture(path, bad) if not r.ok}
    assert failed == {"loss", "beta"}, failed
    with pytest.raises(UnrecognisedFixture):
        check_fixture("other.pt", {"tensors": {}, "meta": {"source": "paco"}, "hparams": {}})


def test_loss_matches_literal_formula_and_simclr():
    """The log-sum-exp form equals the original literal -log(pos/(pos+sum neg)); SimCLR = NT-Xent."""
    from attentionce.losses import attentionce_loss, simclr_loss, negative_mask
    torch.manual_seed(0)
    b, d = 5, 7
    z = torch.nn.functional.normalize(torch.randn(6, b, d, dtype=torch.float64), dim=-1)
    loss, inter = attentionce_loss(z[:2], z[2:], 0.5, 2.0, 0.5, return_intermediates=True)
    literal = -torch.log(inter["pos_score"] / (inter["pos_score"] + inter["neg_score_sum"])).mean()
    torch.testing.assert_close(loss, literal)
    # the mask: no self, no other anchor view of the same image, 2B-2 negatives per row
    mask = negative_mask(b)
    assert mask.sum(1).eq(2 * b - 2).all() and not mask.diagonal().any()
    assert not mask[torch.arange(b), torch.arange(b) + b].any()
    # simclr: plain NT-Xent written out
    a = torch.cat([z[0], z[1]])
    sim = a @ a.t() / 0.5
    pos = (z[0] * z[1]).sum(1).repeat(2) / 0.5
    neg = sim.masked_fill(~mask, float("-inf"))
    expected = (torch.logsumexp(torch.cat([pos[:, None], neg], 1), 1) - pos).mean()
    torch.testing.assert_close(simclr_loss(z[:2], 0.5), expected)


def test_distributed_split_equals_full_batch():
    """Scoring each process's anchors against the gathered batch (offset) and averaging = the full loss."""
    from attentionce.losses import attentionce_loss
    torch.manual_seed(1)
    z = torch.nn.functional.normalize(torch.randn(6, 8, 5, dtype=torch.float64), dim=-1)
    full = attentionce_loss(z[:2], z[2:], 0.5, 1.0, 10.0)
    parts = [attentionce_loss(z[:2, s:s + 4], z[2:, s:s + 4], 0.5, 1.0, 10.0, all_anchors=z[:2], offset=s)
             for s in (0, 4)]
    torch.testing.assert_close(torch.stack(parts).mean(), full)
