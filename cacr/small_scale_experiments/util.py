"""Datasets and transforms of the small-scale experiments (spec §d.1).

``MultiAugUnsupervisedDataset``: the same random transform applied Ny+1 times, labels dropped.
``Imbalanced_CIFAR10`` / ``Imbalanced_CIFAR100``: the paper's imbalanced subsets (``common.data``).
"""
from __future__ import annotations

import torchvision.transforms as T
from torch.utils.data import Dataset

from common.augment import MultiViewTransform, normalize_transform
from common.data import build_dataset
from common.data.imbalance import TargetSubset, cacr_imbalanced_indices
from common.utils import UserError

DATASETS = ("cifar10", "cifar100", "stl10", "digits")
# the original per-dataset argparse defaults of τ₋ and β (spec §b.1); the README commands differ (§k.11), the
# sh/ scripts pass the README values explicitly
FLAG_DEFAULTS = {"cifar10": dict(tau_neg=1.0, beta=1.0), "cifar100": dict(tau_neg=2.0, beta=1.0),
                 "stl10": dict(tau_neg=1.0, beta=2.0), "digits": dict(tau_neg=1.0, beta=1.0)}
NORMALIZE_NAME = {"cifar10": "cifar10", "cifar100": "cifar100", "stl10": "stl10_cacr", "digits": "digits"}


def image_size(dataset: str, size: int | None = None) -> int:
    """The crop size: 64 for STL-10, 32 otherwise (``size`` overrides, for quick runs with small encoders)."""
    return size or (64 if dataset == "stl10" else 32)


def _crop_scale(dataset, crop_min=None):
    return (crop_min if crop_min is not None else (0.08 if dataset == "stl10" else 0.2), 1)


def _crop(dataset, size, crop_min=None):
    return T.RandomResizedCrop(image_size(dataset, size), scale=_crop_scale(dataset, crop_min))


def pretrain_transform(dataset: str, size: int | None = None, crop_min: float | None = None) -> T.Compose:
    """RandomResizedCrop(32, 0.2–1) [STL: (64, 0.08–1)] → flip → ColorJitter(0.4, 0.4, 0.4, 0.4) always →
    RandomGrayscale(0.2) → ToTensor → Normalize."""
    return T.Compose([_crop(dataset, size, crop_min), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0.4),
                      T.RandomGrayscale(p=0.2), T.ToTensor(), normalize_transform(NORMALIZE_NAME[dataset])])


def batched_pretrain_views(dataset: str, n_views: int, size: int | None = None, crop_min: float | None = None):
    """``n_views`` views of :func:`pretrain_transform` applied on the device to uint8 batches (``--augment
    batched``; ``common.augment.batched.batched_cacr_views``, the same distribution)."""
    from common.augment.batched import batched_cacr_views
    return batched_cacr_views(image_size(dataset, size), NORMALIZE_NAME[dataset], _crop_scale(dataset, crop_min),
                              n_views)


def linear_train_transform(dataset: str, size: int | None = None) -> T.Compose:
    return T.Compose([_crop(dataset, size), T.RandomHorizontalFlip(), T.ToTensor(),
                      normalize_transform(NORMALIZE_NAME[dataset])])


def val_transform(dataset: str, size: int | None = None) -> T.Compose:
    """Resize(32) + CenterCrop(32) [STL: Resize(70) + CenterCrop(64)]."""
    crop = image_size(dataset, size)
    resize = crop * 70 // 64 if dataset == "stl10" else crop
    return T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), normalize_transform(NORMALIZE_NAME[dataset])])


class MultiAugUnsupervisedDataset(Dataset):
    """Returns the list of ``n_views`` independently augmented views of an image (labels dropped)."""

    def __init__(self, dataset, transform, n_views: int):
        self.dataset = dataset
        self.transform = MultiViewTransform(transform, n_views)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, _ = self.dataset[index]
        return self.transform(image)


def imbalanced_subset(dataset, name: str):
    """Spec §d.1: per class the first n_c of sklearn.shuffle(idx_c, random_state=2021), class by class."""
    return TargetSubset(dataset, cacr_imbalanced_indices(dataset.targets, name))


def Imbalanced_CIFAR10(root, transform=None):  # noqa: N802 - the original's class name
    return imbalanced_subset(build_dataset("cifar10", root, "train", transform), "cifar10")


def Imbalanced_CIFAR100(root, transform=None):  # noqa: N802
    return imbalanced_subset(build_dataset("cifar100", root, "train", transform), "cifar100")


def pretrain_dataset(dataset: str, root: str, imbalanced: bool = False, transform=None):
    if dataset not in DATASETS:
        raise UserError(f"--dataset must be one of {DATASETS}, got {dataset!r}")
    if imbalanced and dataset not in ("cifar10", "cifar100"):
        raise UserError(f"--imbalanced is defined for cifar10 / cifar100 only (got --dataset {dataset})")
    split = "train+unlabeled" if dataset == "stl10" else "train"
    base = build_dataset(dataset, root, split, transform)
    return imbalanced_subset(base, dataset) if imbalanced else base
