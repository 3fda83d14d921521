"""Normalisation constants, each spec's exact numbers (they differ between the originals; pick by name).

``NORMALIZE[name]`` is a ``NormStats(mean, std)`` named tuple (``mean, std = NORMALIZE['cifar10']``).
"""
from __future__ import annotations

from typing import NamedTuple

import torchvision.transforms as T


class NormStats(NamedTuple):
    mean: tuple
    std: tuple


_IMAGENET = NormStats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CIFAR10 = NormStats((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
_CIFAR100 = NormStats((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))

NORMALIZE: dict[str, NormStats] = {
    # torchvision / MoCo ImageNet statistics: ImageNet(-1K/-100/-LT/-22K), Places-LT, WebVision (all specs).
    "imagenet": _IMAGENET,
    # The usual (slightly wrong-std) CIFAR-10 numbers. PaCo d.1 uses them for CIFAR-100-LT too, AttentioNCE d for
    # every dataset (its quirk 3), ASCL / CACR for CIFAR-10.
    "cifar10": _CIFAR10,
    "cifar100": _CIFAR100,                      # CACR d.1, ASCL d, MCL d.1
    "cifar100_lt_paco": _CIFAR10,               # PaCo d.1: CIFAR-100-LT normalised with the CIFAR-10 numbers
    # STL-10: CACR d.1 full precision vs ASCL d truncated to 4 decimals (not rounded: 0.44087… → 0.4408).
    "stl10_cacr": NormStats((0.44087801806139126, 0.42790631331699347, 0.3867879370752931),
                            (0.26826768628079806, 0.2610450402318512, 0.26866836876860795)),
    "stl10_ascl": NormStats((0.4408, 0.4279, 0.3867), (0.2682, 0.2610, 0.2686)),
    "tinyimagenet_ascl": NormStats((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),   # ASCL d
    "inat2018": NormStats((0.466, 0.471, 0.380), (0.195, 0.194, 0.192)),                 # PaCo d.1
    "places_lt": _IMAGENET,                                                                # PaCo d.1
    # Embedded default: population mean / std over every pixel of the digits train split (1,347 images), measured
    # with ``common.data.digits.digits_mean_std('train')`` (tests/common/test_augment.py re-computes them).
    "digits": NormStats((0.30519538869470436,) * 3, (0.3235514898795468,) * 3),
}


def get_normalize_stats(name: str) -> NormStats:
    try:
        return NORMALIZE[name]
    except KeyError:
        raise ValueError(f"unknown normalisation {name!r}; known: {', '.join(sorted(NORMALIZE))}") from None


def normalize_transform(name_or_stats) -> T.Normalize:
    """``transforms.Normalize`` for a ``NORMALIZE`` key or a ``(mean, std)`` pair."""
    stats = get_normalize_stats(name_or_stats) if isinstance(name_or_stats, str) else NormStats(*name_or_stats)
    return T.Normalize(mean=stats.mean, std=stats.std)
