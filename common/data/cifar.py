"""CIFAR-10 / CIFAR-100 from the standard python pickles (no download, no checksum: any well-formed files work).

Layout (``root`` may be the folder that contains the dataset directory, or the dataset directory itself)::

    cifar-10-batches-py/ data_batch_1 … data_batch_5, test_batch, batches.meta   (labels: 'labels')
    cifar-100-python/    train, test, meta                                        (labels: 'fine_labels')

Each batch is a pickled dict with ``data`` (N×3072 uint8, channel-major R, G, B planes of 32×32) and the labels;
read exactly as torchvision does (``pickle.load(encoding='latin1')``, reshape N×3×32×32, transpose to N×32×32×3).
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from common.data.base import ArrayImageDataset, one_line
from common.utils import UserError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

_SPECS = {
    "cifar10": dict(folder="cifar-10-batches-py",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta", meta_key="label_names", label_key="labels",
                    archive="cifar-10-python.tar.gz"),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test=["test"],
                     meta="meta", meta_key="fine_label_names", label_key="fine_labels",
                     archive="cifar-100-python.tar.gz"),
}


def _str_keys(d):
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def _load_pickle(path: str, name: str):
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except Exception as e:  # garbage bytes raise many kinds of errors from the unpickler
        raise UserError(f"{name}: '{path}' is not a CIFAR python pickle ({type(e).__name__}: {one_line(e)}); "
                        f"use the 'python version' archive from {CIFAR_URL}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{name}: '{path}' does not hold a dict as the CIFAR python batches do; "
                        f"use the 'python version' archive from {CIFAR_URL}")
    return _str_keys(obj)


def resolve_cifar_dir(name: str, root: str) -> str:
    """The ``cifar-10-batches-py`` / ``cifar-100-python`` directory for ``root`` (its parent or itself)."""
    spec = _SPECS[name]
    if root is None:
        raise UserError(f"{name}: no data root given; pass the folder that contains '{spec['folder']}'")
    root = os.path.expanduser(str(root))
    for cand in (os.path.join(root, spec["folder"]), root):
        if os.path.isfile(os.path.join(cand, spec["meta"])) or os.path.isfile(os.path.join(cand, spec["test"][0])):
            return cand
    if not os.path.exists(root):
        raise UserError(f"{name}: data root '{root}' does not exist. Download '{spec['archive']}' from {CIFAR_URL} "
                        f"and extract it there (expected '{os.path.join(root, spec['folder'])}'); "
                        f"nothing is downloaded automatically")
    raise UserError(f"{name}: '{root}' does not contain '{spec['folder']}/' with the python pickles "
                    f"({', '.join(spec['train'] + spec['test'] + [spec['meta']])}). Extract '{spec['archive']}' "
                    f"from {CIFAR_URL} into '{root}', or pass the '{spec['folder']}' folder itself")


def read_cifar_split(name: str, root: str, train: bool):
    """Return ``(data N×32×32×3 uint8, targets list[int], classes list[str])`` of one CIFAR split."""
    if name not in _SPECS:
        raise ValueError(f"unknown CIFAR variant {name!r}")
    spec = _SPECS[name]
    folder = resolve_cifar_dir(name, root)
    chunks, targets = [], []
    for fname in spec["train"] if train else spec["test"]:
        path = os.path.join(folder, fname)
        if not os.path.isfile(path):
            raise UserError(f"{name}: missing file '{path}' (expected {', '.join(spec['train'] + spec['test'])} "
                            f"in '{folder}'); re-extract '{spec['archive']}' from {CIFAR_URL}")
        entry = _load_pickle(path, name)
        if "data" not in entry or spec["label_key"] not in entry:
            raise UserError(f"{name}: '{path}' has keys {sorted(entry)} but needs 'data' and '{spec['label_key']}'"
                            + (" (this looks like a CIFAR-10 batch; use --dataset cifar10)"
                               if name == "cifar100" and "labels" in entry else "")
                            + (" (this looks like a CIFAR-100 file; use --dataset cifar100)"
                               if name == "cifar10" and "fine_labels" in entry else ""))
        data = np.asarray(entry["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise UserError(f"{name}: '{path}' holds data of shape {data.shape} / dtype {data.dtype}; "
                            f"expected Nx3072 uint8 (32x32x3 images)")
        labels = list(entry[spec["label_key"]])
        if len(labels) != len(data):
            raise UserError(f"{name}: '{path}' has {len(data)} images but {len(labels)} labels")
        chunks.append(data)
        targets.extend(int(t) for t in labels)
    data = np.concatenate(chunks).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    data = np.ascontiguousarray(data)
    meta_path = os.path.join(folder, spec["meta"])
    n_classes = 10 if name == "cifar10" else 100
    if os.path.isfile(meta_path):
        meta = _load_pickle(meta_path, name)
        if spec["meta_key"] not in meta:
            raise UserError(f"{name}: '{meta_path}' lacks '{spec['meta_key']}' (keys {sorted(meta)})")
        classes = [str(c) for c in meta[spec["meta_key"]]]
    else:
        classes = [str(i) for i in range(n_classes)]
    if targets and (min(targets) < 0 or max(targets) >= len(classes)):
        raise UserError(f"{name}: labels in '{folder}' range over [{min(targets)}, {max(targets)}] "
                        f"but there are {len(classes)} classes")
    return data, targets, classes


class CIFAR10(ArrayImageDataset):
    """CIFAR-10 python pickles; ``split`` is 'train' (50,000) or 'test' (10,000)."""

    variant = "cifar10"

    def __init__(self, root, split: str = "train", transform=None, target_transform=None):
        if split not in ("train", "test"):
            raise UserError(f"{self.variant}: unknown split '{split}'; use 'train' or 'test'")
        self.root, self.split = root, split
        data, targets, classes = read_cifar_split(self.variant, root, split == "train")
        super().__init__(data, targets, classes, transform, target_transform)


class CIFAR100(CIFAR10):
    """CIFAR-100 python pickles, fine labels (100 classes)."""

    variant = "cifar100"
