"""Datasets and transforms of AttentioNCE (spec §d): six independently augmented views per image.

One code path for every dataset (the original's ``image/utils.py`` and ``tiny-Imagenet/utils.py`` differ only
in where the data comes from); readers come from ``common.data``, pipelines from ``common.augment``.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from common.augment.pipelines import simclr_transform, test_transform as _test_transform
from common.augment.views import MultiViewTransform
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


def build_split(dataset_name: str, root: str, role: str, transform=None):
    """``role``: 'pretrain' | 'linear_train' | 'test' → the dataset of that role with ``transform``."""
    from common.data import build_dataset
    name = canonical_dataset_name(dataset_name)
    common_name, pretrain_split, linear_split, test_split = DATASETS[name]
    split = {"pretrain": pretrain_split, "linear_train": linear_split, "test": test_split}[role]
    # Tiny-ImageNet: --root may be the tiny-imagenet-200 folder or its parent (the original hard-coded
    # ../tiny-imagenet-200 and ignored --root, quirk §k.12); the official val/ layout is read as well (§k.13)
    return build_dataset(common_name, root, split, transform=transform)


class SeededViews(Dataset):
    """``(views (V, 3, H, W), target)`` of ``base[index]`` with the multi-view ``transform``.

    With ``seed`` set, the random augmentation of an item is a function of ``(seed, epoch, index)`` only (the
    global torch RNG is forked around it), so a resumed run, a run with other worker counts and a 2-process
    run that splits the same global batch all see exactly the same views.  ``seed=None``: the original's
    unseeded behaviour.  Call :meth:`set_epoch` before each epoch (workers are re-created per epoch).
    """

    def __init__(self, base, transform, seed: int | None = None):
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.targets = getattr(base, "targets", None)
        self.classes = getattr(base, "classes", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, target = self.base[index]
        if self.seed is None:
            return torch.stack(self.transform(image)), target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(index))
            views = self.transform(image)
        return torch.stack(views), target


def get_pretrain_dataset(dataset_name: str, root: str, crop_size: int = 32, seed: int | None = None,
                         n_views: int = N_VIEWS) -> SeededViews:
    base = build_split(dataset_name, root, "pretrain")
    return SeededViews(base, MultiViewTransform(train_transform(crop_size), n_views), seed)
