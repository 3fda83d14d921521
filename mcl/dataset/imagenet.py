"""ImageNet loaders of ``main_imagenet.py`` (spec §d.3): ``ImageFolderSample`` returns, next to the image
and its label, the memory-bank indices of the anchor, ``pos_k`` sampled same-class images and ``neg_k``
sampled other-class images.

The original materialises ``cls_negative[c]`` (every index of every other class, ≈ 5 GB for ImageNet;
quirk 18). Here the samples are sorted by class (ImageFolder order), so class c is the contiguous index
range [start_c, start_c + n_c) and a uniform draw over its complement is a uniform draw r ∈ [0, n − n_c)
shifted past the range: the same distribution (``np.random.choice(cls_negative[c], neg_k, replace=True)``)
with O(#classes) memory. Positives keep the original's rule: ``pos_k`` distinct draws from the class,
which may include the anchor itself.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader

from common.augment import linear_val_transform, normalize_transform
from common.data import ImageFolder, folder_classes
from common.data.seeded import sample_seed
from common.utils import UserError


class ClassRangeSampler:
    """Positive / negative index sampling over a dataset whose targets are sorted by class."""

    def __init__(self, targets, pos_k: int, neg_k: int):
        targets = np.asarray(targets, dtype=np.int64)
        if targets.size and np.any(np.diff(targets) < 0):
            raise UserError("ImageFolderSample needs the samples sorted by class (ImageFolder order)")
        self.num_classes = int(targets.max()) + 1 if targets.size else 0
        self.counts = np.bincount(targets, minlength=self.num_classes)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.n = targets.size
        self.pos_k, self.neg_k = pos_k, neg_k
        small = np.nonzero(self.counts < pos_k)[0]
        if small.size:
            raise UserError(f"--pos_k {pos_k} distinct positives are drawn per anchor but class {int(small[0])} has "
                            f"only {int(self.counts[small[0]])} images; lower --pos_k")
        if self.num_classes < 2:
            raise UserError("ImageFolderSample needs at least 2 classes to draw negatives")

    def sample(self, index: int, target: int, rng=np.random):
        start, count = self.starts[target], self.counts[target]
        positives = start + rng.choice(count, self.pos_k, replace=False)
        r = rng.randint(0, self.n - count, size=self.neg_k)
        negatives = r + count * (r >= start)
        pos_idx = np.concatenate([[index], positives]).astype(np.int64)
        return pos_idx, negatives.astype(np.int64)


class ImageFolderSample(ImageFolder):
    """``(img, target, pos_idx (1+pos_k,), neg_idx (neg_k,))``; ``is_sample=False`` → ``(img, target, index)``.

    ``seed`` given: the augmentation and the drawn indices of item ``index`` depend on ``(seed, epoch, index)``
    only (call :meth:`set_epoch` every epoch), so runs with any number of processes or loader workers see the same
    items; ``seed=None``: the global RNGs, as the original."""

    def __init__(self, root, transform=None, target_transform=None, pos_k: int = 1, neg_k: int = 8192,
                 is_sample: bool = True, seed: int | None = None):
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.is_sample = is_sample
        self.index_sampler = ClassRangeSampler(self.targets, pos_k, neg_k) if is_sample else None
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index):
        if self.seed is None:
            img, target = super().__getitem__(index)
            rng = np.random
        else:
            seed = sample_seed(self.seed, self.epoch, index)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed % (2 ** 63))
                img, target = super().__getitem__(index)
            rng = np.random.RandomState(seed % (2 ** 32))
        if not self.is_sample:
            return img, target, index
        pos_idx, neg_idx = self.index_sampler.sample(index, self.targets[index], rng)
        return img, target, torch.from_numpy(pos_idx), torch.from_numpy(neg_idx)


def worker_init_fn(worker_id: int) -> None:
    """A distinct numpy seed per worker and epoch (quirk 24 not reproduced: the PyTorch-1.7 loaders of the
    original repeated the numpy stream across workers)."""
    np.random.seed(torch.initial_seed() % 2 ** 32)


def imagenet_transforms(image_size: int = 224, resize: int = 256):
    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(),
                       normalize_transform("imagenet")])
    val = linear_val_transform(image_size, resize, "imagenet")
    return train, val


def get_imagenet_dataloader_sample(data_folder, args, is_sample=True, image_size=224, resize=256,
                                   train_sampler=None, train=True, seed=None):
    """``(train_loader, val_loader, n_data, train_sampler)``; the train loader shuffles unless a
    (distributed) sampler is given. ``train=False`` (evaluation only): no train loader, n_data 0.
    ``seed``: per-item seeded augmentation and index draws (see :class:`ImageFolderSample`)."""
    train_transform, val_transform = imagenet_transforms(image_size, resize)
    pin = torch.device(getattr(args, "device", "cpu")).type == "cuda"
    # val labelled by class name with train's indices (a val/ lacking a class keeps the other labels); the
    # train classes are read from the folder names only, so evaluation-only runs need no train images
    train_classes = folder_classes(os.path.join(data_folder, "train"))
    val_set = ImageFolder(os.path.join(data_folder, "val"), val_transform, classes=train_classes)
    val_loader = DataLoader(val_set, batch_size=args.batch_size, shuffle=False, num_workers=args.num_workers,
                            pin_memory=pin)
    if not train:
        return None, val_loader, 0, None
    train_set = ImageFolderSample(os.path.join(data_folder, "train"), train_transform, pos_k=args.pos_k,
                                  neg_k=args.neg_k, is_sample=is_sample, seed=seed)
    if train_sampler is not None:
        train_sampler = train_sampler(train_set)
    train_loader = DataLoader(train_set, batch_size=args.local_batch_size, shuffle=train_sampler is None,
                              sampler=train_sampler, num_workers=args.num_workers, pin_memory=pin,
                              worker_init_fn=worker_init_fn, drop_last=False)
    return train_loader, val_loader, len(train_set), train_sampler
