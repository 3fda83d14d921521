"""MPerClassSampler structure (beyond the golden stream) and the memory-efficient ImageNet index sampler."""
import numpy as np
import pytest

from common.utils import UserError
from mcl.dataset.class_sampler import MPerClassSampler
from mcl.dataset.imagenet import ClassRangeSampler


def test_mperclass_batches_have_distinct_class_pairs():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 13, size=300)
    np.random.seed(3)
    sampler = MPerClassSampler(labels, m=2, batch_size=12, length_before_new_iter=100)
    assert len(sampler) == 96
    indices = np.array(list(iter(sampler)))
    assert indices.shape == (96,)
    for batch in indices.reshape(-1, 12):
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == 6 and (counts == 2).all()
        assert len(set(batch.tolist())) == 12


def test_mperclass_bad_batch_size():
    labels = [0, 0, 1, 1, 2, 2]
    with pytest.raises(UserError, match="divisible"):
        MPerClassSampler(labels, m=2, batch_size=5, length_before_new_iter=10)
    with pytest.raises(UserError, match="must be >= batch_size"):
        MPerClassSampler(labels, m=2, batch_size=8, length_before_new_iter=10)


def test_class_range_sampler_distribution():
    targets = np.repeat(np.arange(4), [3, 5, 2, 6])  # sorted like ImageFolder
    sampler = ClassRangeSampler(targets, pos_k=2, neg_k=20000)
    np.random.seed(0)
    pos, neg = sampler.sample(4, 1)
    assert pos[0] == 4 and set(pos[1:]) <= {3, 4, 5, 6, 7} and len(set(pos[1:])) == 2
    assert not np.isin(neg, [3, 4, 5, 6, 7]).any()
    counts = np.bincount(neg, minlength=16)
    others = np.setdiff1d(np.arange(16), [3, 4, 5, 6, 7])
    # uniform over the 11 other-class indices (what choice(cls_negative[c], replace=True) draws)
    assert counts[others].min() > 20000 / 11 * 0.85 and counts[others].max() < 20000 / 11 * 1.15
    with pytest.raises(UserError, match="pos_k"):
        ClassRangeSampler(targets, pos_k=3, neg_k=4)
