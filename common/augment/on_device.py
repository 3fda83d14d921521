"""The ``--augment {pil,batched}`` switch of the training entry points, wired once for every method.

``pil`` (the default, the originals' behaviour): the dataset applies the per-image PIL pipeline in the DataLoader
workers and the loader yields the views. ``batched``: the dataset only decodes (``ToUint8Tensor``), the loader
yields one uint8 ``B×3×H×W`` batch, and the training loop applies the same transforms to the whole batch on the
training device (``common.augment.batched``: same distributions, vectorised, on the GPU when there is one)::

    add_augment_arg(parser)                                           # --augment {pil,batched}
    views_of = DeviceViews(batched_views if args.augment == "batched" else None, device, seed, rank,
                           channels_last=args.channels_last)
    loader = DataLoader(dataset, ..., collate_fn=uint8_collate if args.augment == "batched" else None)
    for epoch ...:
        views_of.set_epoch(epoch)
        for images, target in loader:
            v1, v2 = views_of(images)                                   # either path: views on the device

With a seed, the batched views depend only on (seed, epoch, step), so a run resumed at an epoch boundary sees the
same views as an uninterrupted one, and W processes (each drawing for the global batch and keeping its samples'
draws, ``common.augment.batched.ShardGenerator``) see the views one process sees for the same global batches (the
PIL path gets both from ``common.data.seeded``).
"""
from __future__ import annotations

import torch
from torch.utils.data import default_collate

from common.augment.batched import ShardGenerator
from common.utils import UserError, to_channels_last

AUGMENT_CHOICES = ("pil", "batched")


def add_augment_arg(parser, default: str = "pil") -> None:
    parser.add_argument("--augment", default=default, choices=AUGMENT_CHOICES,
                        help="pil: the original per-image PIL pipeline in the DataLoader workers; batched: the same "
                             "transforms on whole uint8 batches on the training device (common.augment.batched; "
                             "same distributions up to uint8 rounding, several times faster)")


def uint8_collate(samples):
    """``default_collate`` of ``(uint8 image, target…)`` samples, with a ``UserError`` instead of a stack error
    when the images differ in size (the batched pipelines need one size per batch)."""
    sizes = {tuple(s[0].shape) for s in samples}
    if len(sizes) > 1:
        raise UserError(f"--augment batched needs images of one size, but a batch holds sizes {sorted(sizes)[:3]}; "
                        f"use --augment pil for datasets of mixed image sizes (e.g. raw ImageNet folders)")
    return default_collate(samples)


class DeviceViews:
    """What the loader yields → the list of view batches on ``device``.

    ``batched`` (a ``BatchedMultiView``): the loader yields a uint8 ``B×3×H×W`` batch, augmented here.
    ``batched=None`` (PIL path): the loader already yields the views — a list of ``B×3×S×S`` tensors
    (``TwoCropsTransform`` / ``MultiViewTransform``), a ``B×V×3×S×S`` stack, or one ``B×3×S×S`` batch.
    ``channels_last`` puts every view in that memory format (``--channels-last``).

    With several processes (``world_size``, default: the process group's) the batched views of process ``rank`` are
    its samples' share of the global batch's draws; ``layout`` says which samples of each global batch a process
    holds: ``'interleaved'`` (r, r+W, …: ``common.distributed.rank_split_sampler``) or ``'contiguous'``.
    """

    def __init__(self, batched=None, device="cpu", seed: int | None = None, rank: int = 0,
                 channels_last: bool = False, world_size: int | None = None, layout: str = "interleaved"):
        self.batched, self.device = batched, torch.device(device)
        self.seed, self.rank, self.channels_last = seed, int(rank), bool(channels_last)
        self.world_size, self.layout = world_size, layout
        self.generator = None

    def set_epoch(self, epoch: int) -> None:
        if self.batched is not None and self.seed is not None:
            from common.distributed import get_world_size
            generator = torch.Generator(device=self.device)
            generator.manual_seed((int(self.seed) * 1_000_003 + int(epoch)) * 1_009)   # the same on every process
            world_size = self.world_size or get_world_size()
            self.generator = (ShardGenerator(generator, self.rank, world_size, self.layout) if world_size > 1
                              else generator)

    def __call__(self, images) -> list[torch.Tensor]:
        if self.batched is not None:
            if isinstance(self.generator, ShardGenerator):
                self.generator.local_batch = images.shape[0]
            views = self.batched(images.to(self.device, non_blocking=True), self.generator)
        elif torch.is_tensor(images):
            images = images.to(self.device, non_blocking=True)
            views = list(images.unbind(1)) if images.dim() == 5 else [images]
        else:
            views = [v.to(self.device, non_blocking=True) for v in images]
        return [to_channels_last(v) for v in views] if self.channels_last else views


class DeviceViewLoader:
    """A DataLoader yielding ``(images, *rest)`` seen as one yielding ``(views, *rest)``: the views of
    ``views_of(images)`` on the device, so a training loop written for the PIL path (``(im_1, im_2), labels =
    batch``) runs either path unchanged. ``epoch_of()`` (e.g. the seeded dataset's ``epoch``) re-seeds the views at
    the start of every pass."""

    def __init__(self, loader, views_of: DeviceViews, epoch_of=None):
        self.loader, self.views_of, self.epoch_of = loader, views_of, epoch_of

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.epoch_of is not None:
            self.views_of.set_epoch(self.epoch_of())
        for images, *rest in self.loader:
            yield (self.views_of(images), *rest)
