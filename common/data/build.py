"""``build_dataset(name, root, split, transform)``: one entry point for every single-root reader."""
from __future__ import annotations

import os

from common.utils import UserError

DATASET_NAMES = ("digits", "cifar10", "cifar100", "stl10", "tinyimagenet", "imagefolder")

SPLITS = {
    "digits": ("train", "test"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": ("train", "test", "unlabeled", "train+unlabeled"),
    "tinyimagenet": ("train", "val"),
}


def build_dataset(name: str, root, split: str, transform=None, target_transform=None):
    """Dataset ``name`` (one of ``DATASET_NAMES``) at ``root``; items are ``(transform(PIL RGB image), target)``.

    ``split``: train / test (digits, CIFAR), train / test / unlabeled / train+unlabeled (STL-10), train / val
    (Tiny-ImageNet), a sub-folder name of ``root`` for ``imagefolder``. ``digits`` ignores ``root``.
    Missing or malformed data raises ``common.utils.UserError``; nothing is downloaded.
    """
    name = name.lower().replace("-", "").replace("_", "")
    if name == "tinyimagenet200":
        name = "tinyimagenet"
    if name not in DATASET_NAMES:
        raise UserError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_NAMES)} "
                        f"(list-file datasets: common.data.ListFileDataset, WebVision: common.data.WebVision)")
    if name in SPLITS and split not in SPLITS[name]:
        raise UserError(f"{name}: unknown split '{split}'; use one of {', '.join(SPLITS[name])}")
    if name == "digits":
        from common.data.digits import Digits
        return Digits(root, split, transform, target_transform)
    if name in ("cifar10", "cifar100"):
        from common.data.cifar import CIFAR10, CIFAR100
        return (CIFAR10 if name == "cifar10" else CIFAR100)(root, split, transform, target_transform)
    if name == "stl10":
        from common.data.stl10 import STL10
        return STL10(root, split, transform, target_transform)
    if name == "tinyimagenet":
        from common.data.folder import TinyImageNet
        return TinyImageNet(root, split, transform, target_transform)
    from common.data.folder import ImageFolder
    if root is None:
        raise UserError("imagefolder: no data root given; pass the folder holding the split folders (train/, val/)")
    return ImageFolder(os.path.join(os.path.expanduser(str(root)), split), transform, target_transform)


def num_classes_of(dataset) -> int:
    return len(dataset.classes)
