"""Shared pieces of the dataset readers: the error helper, PIL loading and the in-memory array dataset."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from common.utils import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DataFileError(UserError):
    """A ``UserError`` raised while loading one sample (missing / unreadable image file).

    A DataLoader worker's exception is re-raised in the main process as
    ``type(e)("Caught DataFileError in DataLoader worker process 0.\nOriginal Traceback …\n…DataFileError: <msg>")``;
    keeping only ``<msg>`` lets ``run_main`` print one clear line instead of a traceback.
    """

    def __init__(self, message: str = ""):
        text = str(message)
        if text.startswith("Caught ") and "Original Traceback" in text:
            last = text.rstrip().splitlines()[-1]
            text = last.split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(text)


def one_line(error) -> str:
    """An exception's message on one line (``run_main`` prints ``error: <message>`` as the last line)."""
    return " ".join(str(error).split())


def require_dir(path: str, what: str, fix: str) -> str:
    """Return ``path`` if it is a directory, else raise a ``UserError`` saying what was expected and how to fix it."""
    if not os.path.isdir(path):
        raise UserError(f"{what}: directory '{path}' does not exist. {fix}")
    return path


def require_file(path: str, what: str, fix: str) -> str:
    if not os.path.isfile(path):
        raise UserError(f"{what}: file '{path}' does not exist. {fix}")
    return path


def pil_rgb_loader(path: str) -> Image.Image:
    """Open an image file as RGB; a missing or unreadable file becomes a ``UserError`` naming it."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataFileError(f"image file '{path}' listed in the dataset does not exist; "
                        f"check the data root and the list file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # UnidentifiedImageError: OSError
        raise DataFileError(f"cannot read image file '{path}': {one_line(e)}; the file is not a valid image") from None


def transformed_item(dataset, img, target):
    """``(transform(img), target_transform(target))`` with the dataset's optional torchvision-style transforms."""
    if dataset.transform is not None:
        img = dataset.transform(img)
    if dataset.target_transform is not None:
        target = dataset.target_transform(target)
    return img, target


class ArrayImageDataset(Dataset):
    """Images held in one uint8 array ``data`` (N×H×W×3) with integer ``targets``, served as PIL RGB images.

    The common interface of CIFAR, STL-10 and digits: ``dataset.data``, ``dataset.targets`` (list[int]),
    ``dataset.classes``; ``dataset[i]`` is ``(transform(PIL image), target)``.
    """

    def __init__(self, data: np.ndarray, targets: Sequence[int], classes: Sequence[str],
                 transform: Callable | None = None, target_transform: Callable | None = None):
        self.data = data
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.transform = transform
        self.target_transform = target_transform
        if len(self.data) != len(self.targets):
            raise UserError(f"{type(self).__name__}: {len(self.data)} images but {len(self.targets)} labels")

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def cls_num_list(self) -> list[int]:
        """Per-class sample counts (index = class id)."""
        return np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.classes)).tolist()

    def __getitem__(self, index: int):
        return transformed_item(self, Image.fromarray(np.asarray(self.data[index])), self.targets[index])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)})"
