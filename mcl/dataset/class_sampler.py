"""``MPerClassSampler`` (spec §d.2): every batch holds batch_size/m distinct classes with m samples each.

Consumes numpy's global RNG exactly like the original (pytorch-metric-learning), so a seeded run draws the
same index stream (pinned by the ``sampler_*.pt`` golden fixture).
"""
from __future__ import annotations

import numpy as np
from torch.utils.data.sampler import Sampler

from common.utils import UserError
from mcl.dataset import common_functions as c_f


class MPerClassSampler(Sampler):
    """At every iteration, shuffle the label list in place and take m samples of each of the first
    batch_size/m labels. ``len(sampler)`` = length_before_new_iter rounded down to a multiple of batch_size.
    """

    def __init__(self, labels, m: int, batch_size: int | None = None, length_before_new_iter: int = 100000):
        self.m_per_class = int(m)
        self.batch_size = int(batch_size) if batch_size is not None else batch_size
        self.labels_to_indices = c_f.get_labels_to_indices(labels)
        self.labels = list(self.labels_to_indices.keys())
        self.length_of_single_pass = self.m_per_class * len(self.labels)
        self.list_size = length_before_new_iter
        if self.batch_size is None:
            if self.length_of_single_pass < self.list_size:
                self.list_size -= self.list_size % self.length_of_single_pass
        else:
            if self.list_size < self.batch_size:
                raise UserError(f"MPerClassSampler: length_before_new_iter ({self.list_size}) must be >= "
                                f"batch_size ({self.batch_size})")
            if self.length_of_single_pass < self.batch_size:
                raise UserError(f"MPerClassSampler: m * (number of classes) = {self.length_of_single_pass} "
                                f"must be >= batch_size ({self.batch_size}); lower --batch-size")
            if self.batch_size % self.m_per_class != 0:
                raise UserError(f"MPerClassSampler: batch_size ({self.batch_size}) must be divisible by "
                                f"m ({self.m_per_class}); use an even --batch-size")
            self.list_size -= self.list_size % self.batch_size

    def __len__(self):
        return self.list_size

    def calculate_num_iters(self) -> int:
        divisor = self.length_of_single_pass if self.batch_size is None else self.batch_size
        return self.list_size // divisor if divisor < self.list_size else 1

    def __iter__(self):
        idx_list = np.zeros(self.list_size, dtype=np.int64)
        i = 0
        for _ in range(self.calculate_num_iters()):
            c_f.NUMPY_RANDOM.shuffle(self.labels)
            if self.batch_size is None:
                current_labels = self.labels
            else:
                current_labels = self.labels[: self.batch_size // self.m_per_class]
            # one draw per label, in order: the RNG stream must match the original's
            for label in current_labels:
                idx_list[i:i + self.m_per_class] = c_f.safe_random_choice(self.labels_to_indices[label],
                                                                          size=self.m_per_class)
                i += self.m_per_class
        return iter(idx_list.tolist())
