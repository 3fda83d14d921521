"""The two helpers of pytorch-metric-learning's ``common_functions`` that MCL uses (quirk 14: no
``np.int``, no scipy import). ``NUMPY_RANDOM`` is numpy's global RNG, as in the original, so the sampler
stream depends on ``np.random.seed``."""
from __future__ import annotations

import numpy as np
import torch

NUMPY_RANDOM = np.random


def get_labels_to_indices(labels) -> dict:
    """label → int64 array of the dataset indices with that label, keys in order of first appearance."""
    if torch.is_tensor(labels):
        labels = labels.cpu().numpy()
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    unique, first, counts = np.unique(labels[order], return_index=True, return_counts=True)
    groups = {label.item(): order[start:start + count].astype(np.int64)
              for label, start, count in zip(unique, first, counts)}
    return dict(sorted(groups.items(), key=lambda item: item[1][0]))


def safe_random_choice(input_data, size: int):
    """``size`` draws from ``input_data``, with replacement only when there are fewer than ``size`` items."""
    replace = len(input_data) < size
    return NUMPY_RANDOM.choice(input_data, size=size, replace=replace)
