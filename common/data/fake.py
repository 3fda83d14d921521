"""Writers of tiny datasets in the exact real on-disk formats, for tests and smoke runs of every script.

Every writer is deterministic in ``seed`` and fast (a few KB per dataset). Images are a per-class colour plus noise
so that a classifier can learn something. Each returns the path to pass to the reader as its root
(``write_list_dataset`` also returns the list files).
"""
from __future__ import annotations

import os
import pickle

import numpy as np
from PIL import Image


def _class_images(rng: np.random.Generator, labels, size: int, n_classes: int) -> np.ndarray:
    """N×size×size×3 uint8 images: a class-dependent colour and stripe pattern plus noise."""
    labels = np.asarray(labels, dtype=np.int64)
    hues = np.linspace(0, 1, max(n_classes, 1), endpoint=False)
    base = np.stack([0.5 + 0.4 * np.cos(2 * np.pi * (hues + k / 3)) for k in range(3)], axis=1)  # C×3
    yy = np.arange(size)[None, :, None]
    stripes = 0.15 * np.sin(2 * np.pi * yy * (1 + labels[:, None, None] % 5) / size)               # N×size×1
    img = base[labels][:, None, None, :] + stripes[..., None] + 0.08 * rng.standard_normal((len(labels), size, size, 3))
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _balanced_labels(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    return labels


def _dump(obj, path: str) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_batch(images: np.ndarray, labels, label_key: str, batch_label: str, extra=None) -> dict:
    d = {"batch_label": batch_label,
         label_key: [int(x) for x in labels],
         "data": images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32).copy(),
         "filenames": [f"img_{i:05d}.png" for i in range(len(images))]}
    d.update(extra or {})
    return d


def write_cifar10(root, n_train: int = 50, n_test: int = 20, seed: int = 0) -> str:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``; returns ``root``.

    The training images are spread over the five batches (``np.array_split``), labels are balanced over 10 classes.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(str(root), "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for split, n in (("train", n_train), ("test", n_test)):
        labels = _balanced_labels(rng, n, 10)
        images = _class_images(rng, labels, 32, 10)
        if split == "train":
            for i, idx in enumerate(np.array_split(np.arange(n), 5)):
                _dump(_cifar_batch(images[idx], labels[idx], "labels", f"training batch {i + 1} of 5"),
                      os.path.join(folder, f"data_batch_{i + 1}"))
        else:
            _dump(_cifar_batch(images, labels, "labels", "testing batch 1 of 1"), os.path.join(folder, "test_batch"))
    _dump({"num_cases_per_batch": max(1, n_train // 5), "label_names": names, "num_vis": 3072},
          os.path.join(folder, "batches.meta"))
    return str(root)


def write_cifar100(root, n_train: int = 200, n_test: int = 100, seed: int = 0) -> str:
    """``root/cifar-100-python/{train, test, meta}`` with fine and coarse labels; returns ``root``."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(str(root), "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = _balanced_labels(rng, n, 100)
        images = _class_images(rng, labels, 32, 100)
        _dump(_cifar_batch(images, labels, "fine_labels", f"{split}ing batch 1 of 1",
                           {"coarse_labels": [int(x) // 5 for x in labels]}), os.path.join(folder, split))
    _dump({"fine_label_names": [f"fine_class_{i:02d}" for i in range(100)],
           "coarse_label_names": [f"coarse_class_{i:02d}" for i in range(20)]}, os.path.join(folder, "meta"))
    return str(root)


def write_stl10(root, n_train: int = 20, n_test: int = 20, n_unlabeled: int = 20, seed: int = 0) -> str:
    """``root/stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin, class_names.txt, fold_indices.txt``.

    Images are written column-major per channel (the inverse of torchvision's reader); labels 1..10 on disk.
    Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(str(root), "stl10_binary")
    os.makedirs(folder, exist_ok=True)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        labels = _balanced_labels(rng, n, 10)
        images = _class_images(rng, labels, 96, 10)            # N×H×W×C
        images.transpose(0, 3, 2, 1).tofile(os.path.join(folder, f"{split}_X.bin"))  # → N×C×W×H bytes
        if split != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(os.path.join(folder, f"{split}_y.bin"))
    with open(os.path.join(folder, "class_names.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    with open(os.path.join(folder, "fold_indices.txt"), "w") as f:
        for k in range(10):
            f.write(" ".join(str(i) for i in range(k, n_train, 10)) + " \n")
    return str(root)


def _save_images(rng, labels, paths, size: int, n_classes: int, quality: int = 90) -> None:
    images = _class_images(rng, labels, size, n_classes)
    for img, path in zip(images, paths):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fmt = "JPEG" if path.lower().endswith((".jpeg", ".jpg")) else None
        Image.fromarray(img).save(path, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))


def write_tinyimagenet(root, n_classes: int = 4, n_train_per_class: int = 3, n_val_per_class: int = 2,
                       n_test: int = 2, size: int = 64, layout: str = "official", seed: int = 0) -> str:
    """``root/tiny-imagenet-200`` in the official layout: ``wnids.txt``, ``words.txt``,
    ``train/<wnid>/images/<wnid>_<i>.JPEG`` + ``<wnid>_boxes.txt``, ``val/images/val_<i>.JPEG`` +
    ``val/val_annotations.txt`` (tab-separated), ``test/images/test_<i>.JPEG``.
    ``layout='rearranged'`` writes ``val/<wnid>/images/val_<i>.JPEG`` instead (what AttentioNCE expects).
    Returns ``root``."""
    if layout not in ("official", "rearranged"):
        raise ValueError("layout must be 'official' or 'rearranged'")
    rng = np.random.default_rng(seed)
    folder = os.path.join(str(root), "tiny-imagenet-200")
    os.makedirs(folder, exist_ok=True)
    wnids = [f"n{1440764 + 1000 * i:08d}" for i in range(n_classes)]
    order = list(rng.permutation(n_classes))                   # wnids.txt is not sorted in the release
    with open(os.path.join(folder, "wnids.txt"), "w") as f:
        f.write("".join(wnids[i] + "\n" for i in order))
    with open(os.path.join(folder, "words.txt"), "w") as f:
        f.write("".join(f"{w}\tfake class {i}\n" for i, w in enumerate(wnids)))
    for c, w in enumerate(wnids):
        d = os.path.join(folder, "train", w)
        paths = [os.path.join(d, "images", f"{w}_{i}.JPEG") for i in range(n_train_per_class)]
        _save_images(rng, [c] * n_train_per_class, paths, size, n_classes)
        with open(os.path.join(d, f"{w}_boxes.txt"), "w") as f:
            f.write("".join(f"{w}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}\n" for i in range(n_train_per_class)))
    val_labels = _balanced_labels(rng, n_classes * n_val_per_class, n_classes)
    names = [f"val_{i}.JPEG" for i in range(len(val_labels))]
    if layout == "official":
        _save_images(rng, val_labels, [os.path.join(folder, "val", "images", n) for n in names], size, n_classes)
        with open(os.path.join(folder, "val", "val_annotations.txt"), "w") as f:
            f.write("".join(f"{n}\t{wnids[c]}\t0\t0\t{size - 1}\t{size - 1}\n" for n, c in zip(names, val_labels)))
    else:
        _save_images(rng, val_labels, [os.path.join(folder, "val", wnids[c], "images", n)
                                       for n, c in zip(names, val_labels)], size, n_classes)
    _save_images(rng, [0] * n_test, [os.path.join(folder, "test", "images", f"test_{i}.JPEG") for i in range(n_test)],
                 size, n_classes)
    return str(root)


def write_imagefolder(root, n_classes: int = 3, n_per_class: int = 4, splits=("train", "val"), size: int = 32,
                      seed: int = 0, ext: str = ".JPEG") -> str:
    """``root/<split>/<class>/<i><ext>`` (ImageNet-style ``n0…`` class folder names); returns ``root``."""
    rng = np.random.default_rng(seed)
    classes = [f"n{1440764 + 1000 * i:08d}" for i in range(n_classes)]
    for split in splits:
        n = n_per_class if isinstance(n_per_class, int) else n_per_class[split]
        paths, labels = [], []
        for c, name in enumerate(classes):
            for i in range(n):
                paths.append(os.path.join(str(root), split, name, f"{name}_{split}_{i}{ext}"))
                labels.append(c)
        _save_images(rng, labels, paths, size, n_classes)
    return str(root)


_LIST_STYLES = {
    # style: (list-file prefix, splits, train path, test path)
    "imagenet_lt": ("ImageNet_LT", ("train", "val", "test"),
                    "train/{wnid}/{wnid}_{i}.JPEG", "val/{wnid}/ILSVRC2012_val_{k:08d}.JPEG"),
    "places_lt": ("Places_LT", ("train", "val", "test"),
                  "data_256/{letter}/{name}/{i:08d}.jpg", "val_256/Places365_val_{k:08d}.jpg"),
    "inat2018": ("iNaturalist18", ("train", "val"),
                 "train_val2018/Plantae/{label}/{hash}.jpg", "train_val2018/Plantae/{label}/{hash}.jpg"),
}


def write_list_dataset(root, style: str = "imagenet_lt", n_classes: int = 5, train_counts=None,
                       n_eval_per_class: int = 2, size: int = 32, seed: int = 0, list_dir=None) -> dict:
    """A list-file dataset: images under ``root`` and ``<prefix>_<split>.txt`` list files (``relative/path label``)
    in ``list_dir`` (default ``root``), with the real path shapes of ``style``: ``imagenet_lt`` (ImageNet_LT_train /
    val / test), ``places_lt`` (Places_LT_train / val / test), ``inat2018`` (iNaturalist18_train / val).
    ``train_counts`` (per class) defaults to a long tail ``max(1, 2·n_classes − 2·c)``.
    Returns ``{'root': root, '<split>': list path, ...}``."""
    if style not in _LIST_STYLES:
        raise ValueError(f"style must be one of {sorted(_LIST_STYLES)}")
    prefix, splits, train_pat, eval_pat = _LIST_STYLES[style]
    rng = np.random.default_rng(seed)
    root = str(root)
    list_dir = str(list_dir) if list_dir is not None else root
    os.makedirs(list_dir, exist_ok=True)
    if train_counts is None:
        train_counts = [max(1, 2 * n_classes - 2 * c) for c in range(n_classes)]
    out, k = {"root": root}, 0
    for split in splits:
        rel, labels = [], []
        for c in range(n_classes):
            n = train_counts[c] if split == "train" else n_eval_per_class
            for i in range(n):
                k += 1
                fields = dict(wnid=f"n{1440764 + 1000 * c:08d}", i=i, k=k, label=c, name=f"scene{c}",
                              letter="abcdefghijklmnopqrstuvwxyz"[c % 26], hash=f"{k:032x}")
                rel.append((train_pat if split == "train" else eval_pat).format(**fields))
                labels.append(c)
        _save_images(rng, labels, [os.path.join(root, r) for r in rel], size, n_classes)
        path = os.path.join(list_dir, f"{prefix}_{split}.txt")
        with open(path, "w") as f:
            f.write("".join(f"{r} {t}\n" for r, t in zip(rel, labels)))
        out[split] = path
    return out


def write_webvision(root, n_classes: int = 3, n_google_per_class: int = 2, n_flickr_per_class: int = 2,
                    n_val_per_class: int = 1, size: int = 32, seed: int = 0) -> str:
    """WebVision-v1 layout: ``info/train_filelist_{google,flickr}.txt`` (``google/q0001/000000.jpg 0``),
    ``info/val_filelist.txt`` + ``val_images_256/``, images as JPEG; returns ``root``."""
    rng = np.random.default_rng(seed)
    root = str(root)
    os.makedirs(os.path.join(root, "info"), exist_ok=True)
    for source, n in (("google", n_google_per_class), ("flickr", n_flickr_per_class)):
        rel = [f"{source}/q{c + 1:04d}/{i:06d}.jpg" for c in range(n_classes) for i in range(n)]
        labels = [c for c in range(n_classes) for _ in range(n)]
        _save_images(rng, labels, [os.path.join(root, r) for r in rel], size, n_classes)
        with open(os.path.join(root, "info", f"train_filelist_{source}.txt"), "w") as f:
            f.write("".join(f"{r} {t}\n" for r, t in zip(rel, labels)))
    labels = [c for c in range(n_classes) for _ in range(n_val_per_class)]
    rel = [f"val{i + 1:06d}.jpg" for i in range(len(labels))]
    _save_images(rng, labels, [os.path.join(root, "val_images_256", r) for r in rel], size, n_classes)
    with open(os.path.join(root, "info", "val_filelist.txt"), "w") as f:
        f.write("".join(f"{r} {t}\n" for r, t in zip(rel, labels)))
    return root
