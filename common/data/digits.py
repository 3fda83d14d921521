"""The embedded default dataset: scikit-learn's ``load_digits`` served like CIFAR.

* 1,797 grey 8×8 images with values 0..16 are rescaled to 0..255 (``v * 255 / 16``), **bilinearly** upsampled to
  32×32 (``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)``, i.e. pixel-centre aligned,
  before rounding to uint8 so there is one rounding only), and repeated on 3 identical channels.
  Bilinear (not nearest) so that random-resized crops and blurs see smooth strokes rather than 4×4 blocks.
* Fixed stratified split: ``StratifiedShuffleSplit(n_splits=1, test_size=450, random_state=0)`` →
  1,347 train / 450 test images; both index lists are sorted so the order follows ``load_digits``.
* ``.data`` N×32×32×3 uint8, ``.targets`` list[int], ``.classes`` = ['0', …, '9']; items are PIL RGB images.
Nothing is downloaded: the data ships inside scikit-learn.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from common.data.base import ArrayImageDataset
from common.utils import UserError

DIGITS_SIZE = 32
DIGITS_TEST_SIZE = 450
DIGITS_SPLIT_SEED = 0
DIGITS_CLASSES = [str(i) for i in range(10)]


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedShuffleSplit

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float64) * (255.0 / 16.0)).unsqueeze(1)  # N×1×8×8
    up = F.interpolate(images, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    up = up.round().clamp_(0, 255).to(torch.uint8).squeeze(1).numpy()                          # N×32×32
    data = np.ascontiguousarray(np.repeat(up[..., None], 3, axis=3))                           # N×32×32×3
    targets = bunch.target.astype(np.int64)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SPLIT_SEED)
    train_idx, test_idx = next(splitter.split(np.zeros(len(targets)), targets))
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    for a in (data, targets):
        a.setflags(write=False)
    return data, targets, train_idx, test_idx


def digits_split_indices(split: str) -> np.ndarray:
    """Indices into ``load_digits()`` of the fixed ``train`` (1,347) or ``test`` (450) split."""
    _, _, train_idx, test_idx = _digits_arrays()
    if split == "train":
        return train_idx.copy()
    if split in ("test", "val"):
        return test_idx.copy()
    raise UserError(f"digits: unknown split '{split}'; use 'train' or 'test'")


class Digits(ArrayImageDataset):
    """scikit-learn digits as 32×32 RGB uint8 images (see the module docstring for the exact recipe)."""

    def __init__(self, root=None, split: str = "train", transform=None, target_transform=None):
        data, targets, _, _ = _digits_arrays()
        idx = digits_split_indices(split)
        self.split = split
        super().__init__(data[idx], targets[idx].tolist(), DIGITS_CLASSES, transform, target_transform)


def digits_mean_std(split: str = "train"):
    """Per-channel mean and std (population, over all pixels of the split, in [0, 1]) of the digits images."""
    data, _, _, _ = _digits_arrays()
    x = data[digits_split_indices(split)].astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
