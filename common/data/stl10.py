"""STL-10 from the binary release ``stl10_binary/`` (no download).

Files: ``train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin``, ``unlabeled_X.bin``, ``class_names.txt``.
Images are uint8 stored column-major per channel (read as torchvision does: reshape N×3×96×96 and swap the last two
axes); labels are 1..10 on disk and become 0..9; unlabeled images get target −1.
``.data`` is N×96×96×3 uint8 (H×W×C like CIFAR), a memory-mapped view for single-file splits so the 2.7 GB
unlabeled file is not read at construction. Split ``train+unlabeled`` = train (5,000) then unlabeled (100,000).
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from common.data.base import require_file, transformed_item
from common.utils import UserError

STL10_URL = "https://cs.stanford.edu/~acoates/stl10/"
STL10_SPLITS = ("train", "test", "unlabeled", "train+unlabeled")
_DEFAULT_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
_IMAGE_BYTES = 3 * 96 * 96


def resolve_stl10_dir(root: str) -> str:
    if root is None:
        raise UserError("stl10: no data root given; pass the folder that contains 'stl10_binary'")
    root = os.path.expanduser(str(root))
    for cand in (os.path.join(root, "stl10_binary"), root):
        if os.path.isfile(os.path.join(cand, "test_X.bin")) or os.path.isfile(os.path.join(cand, "train_X.bin")):
            return cand
    if not os.path.exists(root):
        raise UserError(f"stl10: data root '{root}' does not exist. Download 'stl10_binary.tar.gz' from {STL10_URL} "
                        f"and extract it there; nothing is downloaded automatically")
    raise UserError(f"stl10: '{root}' does not contain 'stl10_binary/' with train_X.bin, train_y.bin, test_X.bin, "
                    f"test_y.bin, unlabeled_X.bin. Extract 'stl10_binary.tar.gz' from {STL10_URL} into '{root}'")


def _read_images(path: str) -> np.ndarray:
    require_file(path, "stl10", f"re-extract 'stl10_binary.tar.gz' from {STL10_URL}")
    size = os.path.getsize(path)
    if size == 0 or size % _IMAGE_BYTES:
        raise UserError(f"stl10: '{path}' has {size} bytes, not a multiple of 3*96*96 = {_IMAGE_BYTES}; "
                        f"it is not an STL-10 image binary (truncated download?)")
    raw = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96)
    return raw.transpose(0, 3, 2, 1)  # stored (C, W, H) column-major → (H, W, C)


def _read_labels(path: str, n: int) -> list[int]:
    require_file(path, "stl10", f"re-extract 'stl10_binary.tar.gz' from {STL10_URL}")
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != n:
        raise UserError(f"stl10: '{path}' holds {len(labels)} labels for {n} images")
    if n and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"stl10: labels in '{path}' must be 1..10 on disk, "
                        f"found {labels.min() + 1}..{labels.max() + 1}")
    return labels.tolist()


class STL10(Dataset):
    """STL-10 binaries; ``split`` in ``train`` / ``test`` / ``unlabeled`` / ``train+unlabeled``."""

    def __init__(self, root, split: str = "train", transform=None, target_transform=None):
        if split not in STL10_SPLITS:
            raise UserError(f"stl10: unknown split '{split}'; use one of {', '.join(STL10_SPLITS)}")
        folder = resolve_stl10_dir(root)
        self.root, self.split = root, split
        self.transform, self.target_transform = transform, target_transform
        self._parts: list[np.ndarray] = []
        self.targets: list[int] = []
        for part in split.split("+"):
            images = _read_images(os.path.join(folder, f"{part}_X.bin"))
            if part == "unlabeled":
                labels = [-1] * len(images)
            else:
                labels = _read_labels(os.path.join(folder, f"{part}_y.bin"), len(images))
            self._parts.append(images)
            self.targets.extend(labels)
        self._offsets = np.cumsum([0] + [len(p) for p in self._parts])
        names_path = os.path.join(folder, "class_names.txt")
        if os.path.isfile(names_path):
            with open(names_path) as f:
                self.classes = [line.strip() for line in f if line.strip()]
        else:
            self.classes = list(_DEFAULT_CLASSES)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.labels = np.asarray(self.targets)  # torchvision's attribute name

    @property
    def data(self) -> np.ndarray:
        """N×96×96×3 uint8 (a lazy view for one-file splits; materialised for ``train+unlabeled``)."""
        return self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        part = int(np.searchsorted(self._offsets, index, side="right") - 1)
        img = Image.fromarray(np.ascontiguousarray(self._parts[part][index - self._offsets[part]]))
        return transformed_item(self, img, self.targets[index])

    def __repr__(self) -> str:
        return f"STL10(split={self.split!r}, n={len(self)})"
