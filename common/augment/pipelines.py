"""Augmentation pipelines that recur in two or more of the five methods (spec §d of each).

Every builder returns a ``torchvision.transforms.Compose`` over a PIL image ending in ToTensor + Normalize;
``normalize`` is a ``NORMALIZE`` key or a ``(mean, std)`` pair. Method-specific pipelines (PaCo's ``randncls``,
CACR's MoCo-v3 views, …) are composed in the method folder from these pieces.
"""
from __future__ import annotations

import torchvision.transforms as T

from common.augment.filters import GaussianBlur
from common.augment.normalize import normalize_transform


def to_tensor_normalize(normalize="imagenet") -> list:
    return [T.ToTensor(), normalize_transform(normalize)]


def test_transform(normalize="cifar10") -> T.Compose:
    """ToTensor + Normalize only, no resize (CIFAR test sets; ASCL / AttentioNCE evaluate STL / Tiny at native size)."""
    return T.Compose(to_tensor_normalize(normalize))


def moco_v1_transform(size: int = 224, normalize="imagenet", scale=(0.2, 1.0)) -> T.Compose:
    """MoCo v1: RandomResizedCrop(scale 0.2–1) → RandomGrayscale(0.2) → ColorJitter(0.4, 0.4, 0.4, 0.4) → flip
    (CACR d.2 without --aug-plus, MCL d.4 default, PaCo ``mocov1``)."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=scale),
        T.RandomGrayscale(p=0.2),
        T.ColorJitter(0.4, 0.4, 0.4, 0.4),
        T.RandomHorizontalFlip(),
        *to_tensor_normalize(normalize),
    ])


def moco_v2_transform(size: int = 224, normalize="imagenet", scale=(0.2, 1.0), blur_p: float = 0.5) -> T.Compose:
    """MoCo v2 (``--aug-plus``): RandomResizedCrop(scale 0.2–1) → ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8 →
    RandomGrayscale(0.2) → PIL GaussianBlur(σ ~ U[0.1, 2]) p 0.5 → flip (CACR d.2, MCL d.4, PaCo ``mocov2``)."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=scale),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([GaussianBlur((0.1, 2.0))], p=blur_p),
        T.RandomHorizontalFlip(),
        *to_tensor_normalize(normalize),
    ])


def _blur(blur):
    if blur is None:
        return None
    if blur == "pil":
        return GaussianBlur((0.1, 2.0))
    if isinstance(blur, int):  # torchvision tensor-free blur with a fixed kernel (AttentioNCE's 3×3 OpenCV blur)
        return T.GaussianBlur(kernel_size=blur, sigma=(0.1, 2.0))
    raise ValueError(f"blur must be None, 'pil' or an odd kernel size, got {blur!r}")


def simclr_transform(size: int, normalize, scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), jitter_p: float = 0.8,
                     grayscale_p: float = 0.2, blur="pil", blur_p: float = 0.5) -> T.Compose:
    """SimCLR order: RandomResizedCrop → flip → ColorJitter (p ``jitter_p``; 1 = always) → RandomGrayscale →
    blur (p ``blur_p``) → ToTensor → Normalize.

    ASCL ``strong_augment``: ``simclr_transform(S, norm, scale=(0.2, 1))``; PaCo ``cifar_sim``:
    ``simclr_transform(32, 'cifar100_lt_paco', scale=(0.2, 1))``; AttentioNCE: ``simclr_transform(32, 'cifar10',
    blur=3)`` (3×3 kernel, σ ~ U[0.1, 2]); ``blur=None`` drops the blur.
    """
    steps = [T.RandomResizedCrop(size, scale=scale), T.RandomHorizontalFlip(p=0.5)]
    cj = T.ColorJitter(*jitter)
    steps.append(cj if jitter_p >= 1 else T.RandomApply([cj], p=jitter_p))
    if grayscale_p > 0:
        steps.append(T.RandomGrayscale(p=grayscale_p))
    b = _blur(blur)
    if b is not None and blur_p > 0:
        steps.append(b if blur_p >= 1 else T.RandomApply([b], p=blur_p))
    return T.Compose(steps + to_tensor_normalize(normalize))


def weak_transform(size: int, normalize, scale=(0.2, 1.0)) -> T.Compose:
    """RandomResizedCrop(scale 0.2–1) → flip (ASCL ``weak_augment``)."""
    return T.Compose([T.RandomResizedCrop(size, scale=scale), T.RandomHorizontalFlip(),
                      *to_tensor_normalize(normalize)])


def linear_train_transform(size: int = 224, normalize="imagenet", scale=(0.08, 1.0)) -> T.Compose:
    """Linear-eval training: RandomResizedCrop(size, scale) → flip (MoCo lincls; CACR small: 32 / 64 px, 0.2–1)."""
    return T.Compose([T.RandomResizedCrop(size, scale=scale), T.RandomHorizontalFlip(),
                      *to_tensor_normalize(normalize)])


def linear_val_transform(size: int = 224, resize: int | None = 256, normalize="imagenet",
                         interpolation=T.InterpolationMode.BILINEAR) -> T.Compose:
    """Evaluation: Resize(resize) → CenterCrop(size) (ImageNet 256/224; CACR small 32/32, STL 70/64);
    ``resize=None`` → ToTensor + Normalize only."""
    if resize is None:
        return test_transform(normalize)
    return T.Compose([T.Resize(resize, interpolation=interpolation), T.CenterCrop(size),
                      *to_tensor_normalize(normalize)])


def cifar_train_transform(normalize="cifar100", size: int = 32, padding: int = 4) -> T.Compose:
    """Supervised CIFAR: RandomCrop(32, padding 4) → flip (MCL d.1; also PaCo ``cifar_regular`` before AutoAugment)."""
    return T.Compose([T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip(), *to_tensor_normalize(normalize)])


def byol_transforms(size: int = 224, normalize="imagenet", scale=(0.08, 1.0)) -> tuple[T.Compose, T.Compose]:
    """The asymmetric BYOL / MoCo-v3 pair (CACR d.3): RandomResizedCrop(scale) → ColorJitter(0.4, 0.4, 0.2, 0.1)
    p 0.8 → RandomGrayscale(0.2) → blur (view 1: p 1.0; view 2: p 0.1) → [view 2: Solarize(128) p 0.2] → flip.
    Use as ``TwoCropsTransform(*byol_transforms(224, 'imagenet', (crop_min, 1)))``."""
    from common.augment.filters import Solarize

    def view(blur_p: float, solarize_p: float) -> T.Compose:
        steps = [T.RandomResizedCrop(size, scale=scale),
                 T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                 T.RandomGrayscale(p=0.2),
                 T.RandomApply([GaussianBlur((0.1, 2.0))], p=blur_p)]
        if solarize_p > 0:
            steps.append(T.RandomApply([Solarize(128)], p=solarize_p))
        return T.Compose(steps + [T.RandomHorizontalFlip(), *to_tensor_normalize(normalize)])

    return view(1.0, 0.0), view(0.1, 0.2)
