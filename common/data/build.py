"""``build_dataset(name, root, split, transform)``: one entry point for every single-root reader."""
from __future__ import annotations

import os

from common.data.folder import class_names_of
from common.utils import UserError

DATASET_NAMES = ("digits", "cifar10", "cifar100", "stl10", "tinyimagenet", "imagefolder")

SPLITS = {
    "digits": ("train", "test"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": ("train", "test", "unlabeled", "train+unlabeled"),
    "tinyimagenet": ("train", "val"),
}


def build_dataset(name: str, root, split: str, transform=None, target_transform=None, classes=None):
    """Dataset ``name`` (one of ``DATASET_NAMES``) at ``root``; items are ``(transform(PIL RGB image), target)``.

    ``split``: train / test (digits, CIFAR), train / test / unlabeled / train+unlabeled (STL-10), train / val
    (Tiny-ImageNet), a sub-folder name of ``root`` for ``imagefolder``. ``digits`` ignores ``root``.
    Missing or malformed data raises ``common.utils.UserError``; nothing is downloaded.

    ``classes``: the training split (dataset, class list or ``class_to_idx``) when building an evaluation split.
    Folder datasets (``imagefolder``, ``tinyimagenet``) then label their images by class *name* with the training
    indices (an evaluation split may lack classes; a class the training split does not have is a ``UserError``);
    the fixed-class datasets check that the class lists agree.
    """
    name = name.lower().replace("-", "").replace("_", "")
    if name == "tinyimagenet200":
        name = "tinyimagenet"
    if name not in DATASET_NAMES:
        raise UserError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_NAMES)} "
                        f"(list-file datasets: common.data.ListFileDataset, WebVision: common.data.WebVision)")
    if name in SPLITS and split not in SPLITS[name]:
        raise UserError(f"{name}: unknown split '{split}'; use one of {', '.join(SPLITS[name])}")
    if name == "tinyimagenet":
        from common.data.folder import TinyImageNet
        return TinyImageNet(root, split, transform, target_transform, classes=classes)
    if name == "imagefolder":
        from common.data.folder import ImageFolder
        if root is None:
            raise UserError("imagefolder: no data root given; pass the folder holding the split folders "
                            "(train/, val/)")
        return ImageFolder(os.path.join(os.path.expanduser(str(root)), split), transform, target_transform,
                           classes=classes)
    if name == "digits":
        from common.data.digits import Digits
        dataset = Digits(root, split, transform, target_transform)
    elif name in ("cifar10", "cifar100"):
        from common.data.cifar import CIFAR10, CIFAR100
        dataset = (CIFAR10 if name == "cifar10" else CIFAR100)(root, split, transform, target_transform)
    else:
        from common.data.stl10 import STL10
        dataset = STL10(root, split, transform, target_transform)
    expected = class_names_of(classes)
    if expected is not None and list(map(str, dataset.classes)) != expected:
        raise UserError(f"{name} '{split}': its classes ({', '.join(map(str, dataset.classes[:3]))}, ...) are not the "
                        f"training split's ({', '.join(expected[:3])}, ...); evaluate on the dataset it was "
                        "trained on")
    return dataset


def num_classes_of(dataset) -> int:
    return len(dataset.classes)
