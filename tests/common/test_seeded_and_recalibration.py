"""common.data.seeded (per-sample reproducible augmentation) and common.eval.recalibrated_copy."""
import random

import torch
import torchvision.transforms as T

from common.backbones import SplitBatchNorm
from common.data import build_dataset
from common.data.seeded import SeededTransformDataset
from common.eval import recalibrated_copy


def _aug():
    return T.Compose([T.RandomResizedCrop(16), T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                      T.ToTensor()])


def test_views_depend_only_on_seed_epoch_index():
    base = build_dataset("digits", None, "train")
    data = SeededTransformDataset(base, _aug(), seed=3)
    a = data[5][0]
    random.random(), torch.rand(3)           # other consumers of the global RNGs change nothing
    assert torch.equal(a, data[5][0])
    data.set_epoch(1)
    assert not torch.equal(a, data[5][0])    # a new epoch draws new views
    data.set_epoch(0)
    assert torch.equal(a, data[5][0])
    assert data.targets == base.targets and len(data) == len(base)


def test_seeding_restores_the_callers_rng_and_unseeded_mode_uses_it():
    base = build_dataset("digits", None, "train")
    torch.manual_seed(0), random.seed(0)
    expected = (torch.rand(2), random.random())
    torch.manual_seed(0), random.seed(0)
    SeededTransformDataset(base, _aug(), seed=1)[0]
    assert torch.equal(torch.rand(2), expected[0]) and random.random() == expected[1]
    unseeded = SeededTransformDataset(base, _aug(), seed=None)
    torch.manual_seed(0)
    first = unseeded[0][0]
    assert not torch.equal(first, unseeded[0][0])


def test_recalibrated_copy_matches_the_data_statistics():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), SplitBatchNorm(4, 2))
    data = [(torch.randn(8, 3, 5, 5) * 3 + 2,) for _ in range(4)]
    copy = recalibrated_copy(net, data, "cpu")
    assert not copy.training and net[1].running_mean.abs().sum() == 0   # the original is untouched
    with torch.no_grad():
        conv_out = torch.cat([net[0](b[0]) for b in data])
    batch_means = torch.stack([net[0](b[0]).mean(dim=(0, 2, 3)) for b in data]).detach()
    torch.testing.assert_close(copy[1].running_mean, batch_means.mean(0))   # average over batches
    torch.testing.assert_close(copy[1].running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    assert copy[2].running_var.sub(1).abs().max() < 0.5                     # the second BN sees normalised input
