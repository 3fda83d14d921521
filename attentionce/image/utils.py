"""Datasets and transforms of AttentioNCE (spec §d): six independently augmented views per image.

One code path for every dataset (the original's ``image/utils.py`` and ``tiny-Imagenet/utils.py`` differ only
in where the data comes from); readers come from ``common.data``, pipelines from ``common.augment``.
"""
from __future__ import annotations

import torch

from common.augment.pipelines import simclr_transform, test_transform as _test_transform
from common.augment.views import MultiViewTransform
from common.data.seeded import SeededTransformDataset
from common.utils import UserError

N_VIEWS = 6  # v1, v2 anchors; v3 ... v6 positives (hard-coded in the original)

# --dataset_name -> (common.data name, pretraining split, linear-train split, test split)
DATASETS = {
    "cifar10": ("cifar10", "train", "train", "test"),
    "cifar100": ("cifar100", "train", "train", "test"),
    "stl10": ("stl10", "train+unlabeled", "train", "test"),
    "tinyImageNet": ("tinyimagenet", "train", "train", "val"),
    "digits": ("digits", "train", "train", "test"),
}
ALIASES = {"tinyimagenet": "tinyImageNet", "tiny-imagenet": "tinyImageNet", "tiny": "tinyImageNet"}


def canonical_dataset_name(name: str) -> str:
    name = ALIASES.get(name, ALIASES.get(name.lower(), name))
    if name not in DATASETS:
        raise UserError(f"Invalid dataset name '{name}': choose one of {', '.join(DATASETS)}")
    return name


def train_transform(crop_size: int = 32):
    """The pretraining (and linear-eval training) pipeline, identical for every dataset: RandomResizedCrop(32)
    → flip → ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8 → grayscale p 0.2 → 3×3 Gaussian blur σ ~ U[0.1, 2] p 0.5 →
    ToTensor → CIFAR-10 Normalize (quirk §k.3: the CIFAR-10 statistics for every dataset, reproduced; the
    OpenCV blur of the original is replaced by torchvision's, quirk §k.14)."""
    return simclr_transform(crop_size, "cifar10", blur=3)


def test_transform():
    """ToTensor + CIFAR-10 Normalize at native resolution (no resize: STL-10 at 96, Tiny-ImageNet at 64,
    quirk §k.2 reproduced)."""
    return _test_transform("cifar10")


def build_split(dataset_name: str, root: str, role: str, transform=None, classes=None):
    """``role``: 'pretrain' | 'linear_train' | 'test' → the dataset of that role with ``transform``."""
    from common.data import build_dataset
    name = canonical_dataset_name(dataset_name)
    common_name, pretrain_split, linear_split, test_split = DATASETS[name]
    split = {"pretrain": pretrain_split, "linear_train": linear_split, "test": test_split}[role]
    # Tiny-ImageNet: --root may be the tiny-imagenet-200 folder or its parent (the original hard-coded
    # ../tiny-imagenet-200 and ignored --root, quirk §k.12); the official val/ layout is read as well (§k.13)
    # classes: the training split, so an evaluation split is labelled by class name with its indices
    return build_dataset(common_name, root, split, transform=transform, classes=classes)


class SeededViews(SeededTransformDataset):
    """``(views (V, 3, H, W), target)`` of ``base[index]`` with the multi-view ``transform``; with ``seed`` set
    the views are a function of ``(seed, epoch, index)`` only (``common.data.seeded``), so resumed, re-workered
    and 2-process runs see the same views. ``seed=None``: the original's unseeded behaviour."""

    def __getitem__(self, index: int):
        image, target = self.base[index]
        return torch.stack(self.apply(image, index)), target


def get_pretrain_dataset(dataset_name: str, root: str, crop_size: int = 32, seed: int | None = None,
                         n_views: int = N_VIEWS) -> SeededViews:
    base = build_split(dataset_name, root, "pretrain")
    return SeededViews(base, MultiViewTransform(train_transform(crop_size), n_views), seed)
