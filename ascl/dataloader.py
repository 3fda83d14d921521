"""ASCL data (spec §d): augmentations, the two-view generator and ``prepare_dataset`` building the four loaders.

Readers come from ``common.data`` (CIFAR pickles, STL-10 binaries, tiny-imagenet-200 folders, embedded digits).
Augmentation randomness is drawn from a generator seeded by (seed, epoch, sample index), so a sample's views
do not depend on the number of loader workers or processes: a resumed run and a run split over several
processes see exactly the images of an uninterrupted single-process run.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from common.augment import NORMALIZE, TwoCropsTransform
from common.augment.on_device import DeviceViewLoader, DeviceViews, uint8_collate
from common.augment.pipelines import linear_train_transform, simclr_transform, test_transform, weak_transform
from common.data.seeded import SeededTransformDataset
from common.data import build_dataset

DATASETS = ("cifar10", "cifar100", "stl10", "tinyimagenet", "digits")
# dataset → (normalisation key, crop size, pre-train split, memory / linear split, test split)
_SETUP = {
    "cifar10": ("cifar10", 32, "train", "train", "test"),
    "cifar100": ("cifar100", 32, "train", "train", "test"),
    "stl10": ("stl10_ascl", 64, "train+unlabeled", "train", "test"),
    "tinyimagenet": ("tinyimagenet_ascl", 64, "train", "train", "val"),
    "digits": ("digits", 32, "train", "train", "test"),
}


def crop_size(dataset: str) -> int:
    return _SETUP[dataset][1]


def strong_augment(size: int, normalize) -> T.Compose:
    """RRC(scale 0.2–1) → flip → ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8 → grayscale p 0.2 → PIL blur p 0.5."""
    return simclr_transform(size, normalize, scale=(0.2, 1.0))


def get_transforms(dataset: str, aug: str = "weak_augment", image_size: int | None = None,
                   eval_resize: bool = False):
    """(two-view pre-train transform, linear-eval train transform, test / memory transform).

    View 1 (student) always gets ``strong_augment``; view 2 (teacher) gets ``aug``.  ``eval_resize``
    resizes memory / test images to the training crop (the corrected behaviour of quirk 10; the original
    evaluates STL-10 at 96 px).
    """
    norm_key, size = _SETUP[dataset][0], image_size or _SETUP[dataset][1]
    normalize = NORMALIZE[norm_key]
    strong = strong_augment(size, normalize)
    key = strong if aug == "strong_augment" else weak_transform(size, normalize, scale=(0.2, 1.0))
    test = test_transform(normalize)
    native = {"cifar10": 32, "cifar100": 32, "digits": 32}.get(dataset)
    if eval_resize or (image_size is not None and image_size != native):
        test = T.Compose([T.Resize(size), T.CenterCrop(size), *test.transforms])
    return TwoCropsTransform(strong, key), linear_train_transform(size, normalize), test


def get_batched_views(dataset: str, aug: str = "weak_augment", image_size: int | None = None):
    """The two views of :func:`get_transforms` for ``--augment batched``: the same pipelines applied on the device
    to uint8 batches (``common.augment.batched``), as a ``BatchedMultiView`` → [strong view, ``aug`` view]."""
    from common.augment import batched as B
    norm_key, size = _SETUP[dataset][0], image_size or _SETUP[dataset][1]
    strong = B.batched_simclr_transform(size, norm_key, scale=(0.2, 1.0))
    key = strong if aug == "strong_augment" else B.batched_weak_transform(size, norm_key, scale=(0.2, 1.0))
    return B.BatchedMultiView([strong, key])


@dataclass
class Loaders:
    train: DeviceViewLoader      # yields ([view 1, view 2] on args.device, labels) for --augment pil and batched
    memory: DataLoader
    linear: DataLoader
    test: DataLoader
    train_sampler: DistributedSampler
    train_dataset: SeededTransformDataset
    num_classes: int


def prepare_dataset(args, rank: int = 0, world_size: int = 1) -> Loaders:
    """The four loaders of the original (pre-train two views, memory bank, linear train, test).

    The pre-train loader drops the last incomplete batch; with ``world_size`` processes each gets
    ``batch_size / world_size`` samples of every global batch (strided, as ``DistributedSampler`` hands them out,
    so process r's local sample j is sample r + world_size·j of the single-process batch).
    """
    _, _, pretrain_split, memory_split, test_split = _SETUP[args.dataset]
    two_view, linear_t, test_t = get_transforms(args.dataset, args.aug, getattr(args, "image_size", None),
                                                getattr(args, "eval_resize", False))
    root = args.data_path
    train_base = build_dataset(args.dataset, root, pretrain_split)
    memory_set = build_dataset(args.dataset, root, memory_split, transform=test_t)
    linear_set = build_dataset(args.dataset, root, memory_split, transform=linear_t)
    # test labels by class name with the memory / linear split's indices (Tiny-ImageNet val lacking a class)
    test_set = build_dataset(args.dataset, root, test_split, transform=test_t, classes=memory_set)
    batched = getattr(args, "augment", "pil") == "batched"
    if batched:  # the loader only decodes; the two views are made on the device
        from common.augment.batched import ToUint8Tensor
        two_view = ToUint8Tensor()
    train_set = SeededTransformDataset(train_base, two_view, args.seed)
    per_process = args.batch_size // world_size
    # one sampler also for a single process: the shuffling order is then identical for any world size
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed,
                                 drop_last=True)
    workers = args.workers
    common = dict(num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=False)
    train_loader = DataLoader(train_set, batch_size=per_process, sampler=sampler, drop_last=True,
                              collate_fn=uint8_collate if batched else None, **common)
    views_of = DeviceViews(get_batched_views(args.dataset, args.aug, getattr(args, "image_size", None))
                           if batched else None, args.device, args.seed, rank, getattr(args, "channels_last", False))
    train_loader = DeviceViewLoader(train_loader, views_of, epoch_of=lambda: train_set.epoch)
    eval_bs = getattr(args, "eval_batch_size", None) or args.batch_size
    memory_loader = DataLoader(memory_set, batch_size=eval_bs, shuffle=False, **common)
    linear_loader = DataLoader(linear_set, batch_size=args.batch_size, shuffle=True, **common)
    test_loader = DataLoader(test_set, batch_size=eval_bs, shuffle=False, **common)
    return Loaders(train_loader, memory_loader, linear_loader, test_loader, sampler, train_set,
                   len(test_set.classes))
