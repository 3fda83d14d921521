"""File-based datasets: ImageFolder trees, Tiny-ImageNet, list files (ImageNet-LT, Places-LT, iNat 2018), WebVision."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torchvision
from PIL import ImageFile
from torch.utils.data import Dataset

from common.data.base import IMAGE_EXTENSIONS, one_line, pil_rgb_loader, require_dir, require_file
from common.utils import UserError


class FileListDataset(Dataset):
    """``samples`` = [(path, label)], images opened lazily as PIL RGB (missing file → ``UserError`` naming it)."""

    def __init__(self, samples, classes, transform: Callable | None = None, target_transform: Callable | None = None):
        self.samples = [(p, int(t)) for p, t in samples]
        self.imgs = self.samples
        self.targets = [t for _, t in self.samples]
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.transform, self.target_transform = transform, target_transform
        self.loader = pil_rgb_loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        img = self.loader(path)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    @property
    def cls_num_list(self) -> list[int]:
        """Per-class sample counts (index = class id), as PaCo's list datasets compute them."""
        return np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.classes)).tolist()

    def verify_files(self) -> None:
        """Check every listed file exists (eager; the readers otherwise check lazily at load time)."""
        for path, _ in self.samples:
            if not os.path.isfile(path):
                raise UserError(f"image file '{path}' listed in the dataset does not exist; "
                                f"check the data root and the list file")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)})"


def class_names_of(classes) -> list[str] | None:
    """``classes`` given as a dataset (its ``.classes``), a ``{name: index}`` dict or a list of names → list."""
    if classes is None:
        return None
    if hasattr(classes, "classes"):
        classes = classes.classes
    if isinstance(classes, dict):
        return [name for name, _ in sorted(classes.items(), key=lambda item: item[1])]
    return [str(c) for c in classes]


def folder_classes(directory: str) -> list[str] | None:
    """Sorted class-folder names of an ImageFolder split (``None`` if ``directory`` does not exist): the training
    classes an evaluation split is labelled with, without listing the training images."""
    try:
        return torchvision.datasets.folder.find_classes(directory)[0]
    except (FileNotFoundError, NotADirectoryError):  # reported by the reader of that split
        return None


def unknown_classes_error(dataset: str, split_dir: str, unknown, train_classes) -> UserError:
    shown = ", ".join(repr(c) for c in sorted(unknown)[:5]) + (" ..." if len(unknown) > 5 else "")
    return UserError(f"{dataset}: class folder(s) {shown} of '{split_dir}' are not classes of the training split "
                     f"({len(train_classes)} classes, e.g. {', '.join(list(train_classes)[:3])}); a classifier "
                     "trained on it cannot predict them. Remove those folders from the evaluation split or add "
                     "them to the training split")


class ImageFolder(torchvision.datasets.ImageFolder):
    """``torchvision.datasets.ImageFolder`` (same class order, samples, ``targets``) with clear errors for a missing
    directory, a directory without class folders, and an empty class folder; images are PIL RGB.

    ``classes`` (the training split's dataset, class list or ``class_to_idx``): label the folders *by name* with the
    training split's indices, so an evaluation split lacking one of the training classes keeps every other label
    (plain ImageFolder would renumber them and shift every label after the gap). ``self.classes`` is then the
    training class list; a folder that is not a training class is a ``UserError`` naming it.
    """

    def __init__(self, root, transform=None, target_transform=None, classes=None):
        root = os.path.expanduser(str(root))
        self._train_classes = class_names_of(classes)
        require_dir(root, "imagefolder", "Expected one sub-folder per class holding the images "
                                         "(<root>/<class>/<image>); check --data and the split name")
        try:
            super().__init__(root, transform=transform, target_transform=target_transform, loader=pil_rgb_loader)
        except FileNotFoundError as e:
            raise UserError(f"imagefolder: '{root}' is not a class-per-folder image tree: {one_line(e)}. Expected "
                            f"<root>/<class>/<image>{IMAGE_EXTENSIONS[0]} with at least one image per class") from None
        if self._train_classes is not None:
            self.class_to_idx = {c: i for i, c in enumerate(self._train_classes)}

    def find_classes(self, directory):
        present, class_to_idx = super().find_classes(directory)
        if self._train_classes is None:
            return present, class_to_idx
        train_index = {c: i for i, c in enumerate(self._train_classes)}
        unknown = [c for c in present if c not in train_index]
        if unknown:
            raise unknown_classes_error("imagefolder", directory, unknown, self._train_classes)
        # only the folders present: torchvision then requires images in each of them, not in absent classes
        return list(self._train_classes), {c: train_index[c] for c in present}


# ----------------------------------------------------------------------------------------------------- Tiny-ImageNet
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def resolve_tiny_dir(root: str) -> str:
    if root is None:
        raise UserError("tinyimagenet: no data root given; pass the folder that contains 'tiny-imagenet-200'")
    root = os.path.expanduser(str(root))
    for cand in (os.path.join(root, "tiny-imagenet-200"), root):
        if os.path.isfile(os.path.join(cand, "wnids.txt")):
            return cand
    if not os.path.exists(root):
        raise UserError(f"tinyimagenet: data root '{root}' does not exist. Download {TINY_URL} and unzip it there; "
                        f"nothing is downloaded automatically")
    raise UserError(f"tinyimagenet: '{root}' does not contain 'tiny-imagenet-200/wnids.txt'. Unzip {TINY_URL} into "
                    f"'{root}' (or pass the 'tiny-imagenet-200' folder itself)")


def _images_under(folder: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS))
    return out


class TinyImageNet(FileListDataset):
    """Tiny-ImageNet-200: ``wnids.txt`` sorted → label (= ImageFolder's order); ``train/<wnid>/images/*.JPEG``;
    ``val`` in the official layout (``val/images`` + ``val_annotations.txt``) or re-arranged into ``val/<wnid>/…``.

    Labels are given by class *name*: ``classes`` (the training split's dataset or class list; default the sorted
    ``wnids.txt``) fixes the index of every wnid. A re-arranged ``val/`` may lack class folders (the other labels
    are unchanged); a val folder or annotation whose wnid is not a training class is a ``UserError`` naming it.
    """

    def __init__(self, root, split: str = "train", transform=None, target_transform=None, classes=None):
        if split not in ("train", "val"):
            raise UserError(f"tinyimagenet: unknown split '{split}'; use 'train' or 'val' (the test set has no labels)")
        folder = resolve_tiny_dir(root)
        with open(os.path.join(folder, "wnids.txt")) as f:
            wnids = sorted({line.strip() for line in f if line.strip()})
        if not wnids:
            raise UserError(f"tinyimagenet: '{os.path.join(folder, 'wnids.txt')}' is empty")
        names = class_names_of(classes) or wnids
        to_idx = {w: i for i, w in enumerate(names)}
        fix = f"re-extract {TINY_URL}"
        split_dir = require_dir(os.path.join(folder, split), "tinyimagenet", fix)
        samples = []
        annotations = os.path.join(split_dir, "val_annotations.txt")
        if split == "val" and os.path.isfile(annotations) and os.path.isdir(os.path.join(split_dir, "images")):
            with open(annotations) as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    parts = line.split("\t") if "\t" in line else line.split()
                    if len(parts) < 2:
                        raise UserError(f"tinyimagenet: line {lineno} of '{annotations}' is not "
                                        f"'<file>\\t<wnid>\\t...': {line.strip()!r}")
                    if parts[1].strip() not in to_idx:
                        raise unknown_classes_error("tinyimagenet", annotations, [parts[1].strip()], names)
                    samples.append((os.path.join(split_dir, "images", parts[0].strip()), to_idx[parts[1].strip()]))
        else:
            if split == "val" and os.path.isdir(os.path.join(split_dir, "images")):
                raise UserError(f"tinyimagenet: '{split_dir}' has the official images/ folder but no "
                                f"'{annotations}' (the official val layout needs val/images and "
                                f"val/val_annotations.txt); {fix}")
            if split == "val":
                # re-arranged val/<wnid>/: every folder must be a training class, a missing class is fine
                present = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
                unknown = [d for d in present if d not in to_idx]
                if unknown:
                    raise unknown_classes_error("tinyimagenet", split_dir, unknown, names)
                if not present:
                    raise UserError(f"tinyimagenet: '{split_dir}' has neither class folders nor the official "
                                    f"val/images + val/val_annotations.txt; {fix}")
            else:
                present = wnids
            for w in present:
                class_dir = os.path.join(split_dir, w)
                if not os.path.isdir(class_dir):
                    raise UserError(f"tinyimagenet: class folder '{class_dir}' is missing; {fix}")
                files = _images_under(class_dir)
                if not files:
                    raise UserError(f"tinyimagenet: class folder '{class_dir}' holds no images; {fix}")
                if w not in to_idx:
                    raise unknown_classes_error("tinyimagenet", split_dir, [w], names)
                samples.extend((p, to_idx[w]) for p in files)
        self.root, self.split, self.wnids = root, split, wnids
        super().__init__(samples, names, transform, target_transform)


# -------------------------------------------------------------------------------------------------------- list files
def read_list_file(list_file: str, root: str) -> list[tuple[str, int]]:
    """Parse ``relative/path label`` lines (whitespace-separated, label a 0-based int) joined to ``root``."""
    require_file(list_file, "list file", "Pass the path of a text file with one 'relative/path label' per line")
    samples = []
    with open(list_file) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise UserError(f"list file '{list_file}', line {lineno}: expected 'relative/path label' "
                                f"(label an integer), got {line!r}")
            samples.append((os.path.join(root, parts[0]), int(parts[1])))
    if not samples:
        raise UserError(f"list file '{list_file}' has no entries")
    return samples


class ListFileDataset(FileListDataset):
    """Images named by a list file of ``relative/path label`` lines joined to ``root`` (ImageNet-LT, Places-LT,
    iNaturalist 2018 as PaCo reads them). Files are checked lazily (at load time, naming the file) so a 437k-line
    list is not stat-ed at start; ``verify_files()`` checks them all. ``num_classes`` defaults to max label + 1."""

    def __init__(self, root, list_file, transform=None, target_transform=None, num_classes: int | None = None):
        root = os.path.expanduser(str(root))
        require_dir(root, "list-file dataset", "Pass the image root the list file's relative paths are joined to")
        samples = read_list_file(os.path.expanduser(str(list_file)), root)
        labels = np.asarray([t for _, t in samples])
        if labels.min() < 0:
            raise UserError(f"list file '{list_file}' has a negative label ({labels.min()})")
        n = int(labels.max()) + 1 if num_classes is None else int(num_classes)
        if labels.max() >= n:
            raise UserError(f"list file '{list_file}' has label {labels.max()} but num_classes is {n}")
        self.root, self.list_file = root, list_file
        super().__init__(samples, [str(i) for i in range(n)], transform, target_transform)


class WebVision(FileListDataset):
    """WebVision-v1 training set: ``info/train_filelist_google.txt`` then ``info/train_filelist_flickr.txt``
    (``relative/path label`` lines, paths relative to ``root``), keeping labels < ``num_classes`` (CACR d.2).
    ``split='val'`` reads ``info/val_filelist.txt`` with images under ``val_images_256/``.
    Truncated JPEGs are allowed, as in the original (sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``)."""

    def __init__(self, root, transform=None, target_transform=None, num_classes: int = 1000, split: str = "train"):
        root = os.path.expanduser(str(root))
        fix = "Expected the WebVision-v1 layout <root>/info/train_filelist_{google,flickr}.txt + image folders"
        require_dir(root, "webvision", fix)
        if split == "train":
            lists = [(os.path.join(root, "info", f"train_filelist_{s}.txt"), root) for s in ("google", "flickr")]
        elif split == "val":
            lists = [(os.path.join(root, "info", "val_filelist.txt"), os.path.join(root, "val_images_256"))]
        else:
            raise UserError(f"webvision: unknown split '{split}'; use 'train' or 'val'")
        samples = []
        for path, image_root in lists:
            require_file(path, "webvision", fix)
            samples.extend((p, t) for p, t in read_list_file(path, image_root) if t < num_classes)
        if not samples:
            raise UserError(f"webvision: no image with a label < {num_classes} in {', '.join(p for p, _ in lists)}")
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        self.root, self.split = root, split
        super().__init__(samples, [str(i) for i in range(num_classes)], transform, target_transform)
