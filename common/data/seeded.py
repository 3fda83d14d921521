"""Per-sample reproducible augmentation.

``SeededTransformDataset`` makes the random augmentation of item ``index`` a function of ``(seed, epoch,
index)`` only: the global Python, NumPy (timm's RandAugment op choice, Cutout) and torch RNGs are seeded for
the duration of the transform and restored afterwards. A resumed run, a run with another number of loader
workers, and a multi-process run that splits the same global batch therefore all see exactly the same views,
which is what the resume and distributed equivalence tests compare. ``seed=None`` keeps the usual unseeded
behaviour.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) * 10_000_019 + int(index)


class SeededTransformDataset(Dataset):
    """``(transform(base[index][0]), target)`` with the RNGs seeded from ``(seed, epoch, index)``.

    Call :meth:`set_epoch` before each epoch (loader workers are re-created every epoch, so they see it).
    ``.targets`` and ``.classes`` of ``base`` are kept.
    """

    def __init__(self, base: Dataset, transform, seed: int | None = None):
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0
        self.targets = getattr(base, "targets", None)
        self.classes = getattr(base, "classes", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def apply(self, image, index: int):
        if self.seed is None:
            return self.transform(image)
        seed = sample_seed(self.seed, self.epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                np.random.seed(seed % (2 ** 32))
                # the CPU generator only: torch.manual_seed would also reseed (and fork_rng not restore) CUDA's
                torch.default_generator.manual_seed(seed % (2 ** 63))
                return self.transform(image)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    def __getitem__(self, index: int):
        image, target = self.base[index]
        return self.apply(image, index), target
