"""Imbalanced / long-tailed training subsets and a ``Subset`` that keeps ``.targets``."""
from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Dataset


def long_tailed_counts(n_max: float, num_classes: int, imb_factor: float, imb_type: str = "exp") -> list[int]:
    """PaCo / LDAM ``get_img_num_per_cls``: ``exp`` → int(n_max · f^(c/(C−1))); ``step`` → first C//2 classes
    int(n_max), next C//2 int(n_max · f) (for odd C the last class gets none, as in the original's ``zip``)."""
    if imb_type == "exp":
        return [int(n_max * (imb_factor ** (c / (num_classes - 1.0)))) for c in range(num_classes)]
    if imb_type == "step":
        return [int(n_max)] * (num_classes // 2) + [int(n_max * imb_factor)] * (num_classes // 2)
    raise ValueError(f"imb_type must be 'exp' or 'step', got {imb_type!r}")


def cifar_long_tailed_indices(targets, imb_factor: float, imb_type: str = "exp", seed: int = 0,
                              num_classes: int | None = None) -> np.ndarray:
    """Indices of the CIFAR-LT subset exactly as PaCo's ``ImbalanceCIFAR100`` (spec paco.md §d.2).

    n_max = len(targets) / C; counts from :func:`long_tailed_counts`; a NumPy RNG seeded ``seed`` (the legacy
    ``RandomState``, i.e. the stream of ``np.random.seed(seed)`` without touching the global state) shuffles, class by
    class in increasing label order, the indices of that class (dataset order) and keeps the first n_c.
    Returns the concatenation, class 0 first. ``num_classes`` defaults to the number of distinct labels.
    """
    targets_np = np.asarray(targets, dtype=np.int64)
    classes = np.unique(targets_np)
    c = len(classes) if num_classes is None else num_classes
    counts = long_tailed_counts(len(targets_np) / c, c, imb_factor, imb_type)
    rng = np.random.RandomState(seed)
    selected = []
    for the_class, n in zip(classes, counts):
        idx = np.where(targets_np == the_class)[0]
        rng.shuffle(idx)
        selected.append(idx[:n])
    return np.concatenate(selected) if selected else np.zeros(0, dtype=np.int64)


CACR_RANDOM_STATE = 2021


def cacr_imbalanced_counts(dataset: str, num_classes: int | None = None) -> list[int]:
    """CACR ``Imbalanced_CIFAR10`` (linear: int((c+1)/10 · 5000)) / ``Imbalanced_CIFAR100`` (exponential by groups
    of ten: int(exp(c//10 + 1)/exp(10) · 500)) per-class counts (cacr.md §d.1)."""
    if dataset == "cifar10":
        return [int((c + 1) / 10 * 5000) for c in range(num_classes or 10)]
    if dataset == "cifar100":
        return [int(math.exp(c // 10 + 1) / math.exp(10) * 500) for c in range(num_classes or 100)]
    raise ValueError(f"CACR imbalanced subsets exist for 'cifar10' and 'cifar100', not {dataset!r}")


def cacr_imbalanced_indices(targets, dataset: str) -> np.ndarray:
    """Indices of CACR's imbalanced CIFAR subset (cacr.md §d.1): for every class c in order, the indices of class c in
    dataset order permuted by ``sklearn.utils.shuffle(idx, random_state=2021)``, first n_c kept, concatenated."""
    from sklearn.utils import shuffle

    targets_np = np.asarray(targets, dtype=np.int64)
    counts = cacr_imbalanced_counts(dataset)
    selected = []
    for c, n in enumerate(counts):
        idx = np.where(targets_np == c)[0]
        selected.append(shuffle(idx, random_state=CACR_RANDOM_STATE)[:n])
    return np.concatenate(selected)


def class_counts(targets, num_classes: int | None = None) -> list[int]:
    """Per-class counts (index = class id); negative targets (unlabeled) are ignored."""
    t = np.asarray(targets, dtype=np.int64)
    t = t[t >= 0]
    return np.bincount(t, minlength=num_classes or 0).tolist()


class TargetSubset(Dataset):
    """``torch.utils.data.Subset`` that re-indexes ``.targets`` (and ``.data`` / ``.samples`` when the base has them)
    and keeps ``.classes``; items come from the base dataset (its transform applies)."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        base_targets = np.asarray(dataset.targets)
        self.targets = base_targets[self.indices].tolist()
        self.classes = list(getattr(dataset, "classes", []))
        self.class_to_idx = getattr(dataset, "class_to_idx", {c: i for i, c in enumerate(self.classes)})
        if hasattr(dataset, "samples"):
            self.samples = [dataset.samples[i] for i in self.indices]

    @property
    def data(self):
        return self.dataset.data[self.indices]

    @property
    def transform(self):
        return getattr(self.dataset, "transform", None)

    @transform.setter
    def transform(self, t):
        self.dataset.transform = t

    @property
    def cls_num_list(self) -> list[int]:
        return class_counts(self.targets, len(self.classes))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[int(self.indices[index])]

    def __repr__(self) -> str:
        return f"TargetSubset(n={len(self)}, of={self.dataset!r})"
