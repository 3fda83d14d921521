"""Batched tensor augmentations: the per-image PIL pipelines of ``common.augment`` applied to a whole uint8 batch
on the batch's device (GPU when present), with the same distribution of transforms.

A DataLoader then only decodes images (``ToUint8Tensor`` as the dataset transform, uint8 ``B×3×H×W`` batches) and
the augmentation runs vectorised where the model runs::

    views = batched_simclr_views(32, "cifar10", n_views=2)           # BatchedMultiView
    for images, _ in loader:                                          # images: uint8 B×3×32×32
        v1, v2 = views(images.to(device, non_blocking=True))           # float32 B×3×32×32 each, normalised

Every random draw comes from one ``torch.Generator`` (``generator=`` argument, on the batch's device; the default
generator when omitted), one draw per sample per parameter, so a seeded generator gives the same batch twice; a
``ShardGenerator`` gives each of W processes the draws of its samples of the global batch (the same views as one
process augmenting the whole batch).
There is no Python loop over samples or views: views that share a pipeline are stacked on the batch dimension
(the crop is a broadcast batched matmul over the shared input), distinct pipelines (BYOL's asymmetric pair,
global vs local crops) are one call each.

How each step mirrors its PIL / torchvision counterpart (``B`` = batch, ``S`` = output size):

* ``RandomResizedCropFlip`` — ``T.RandomResizedCrop(size, scale, ratio)`` + ``T.RandomHorizontalFlip(p)``.
  Crop boxes follow torchvision's sampler exactly (10 rejection-sampling attempts with ``round`` on a float64 area
  and log-uniform ratio, then the same central fallback; offsets uniform over the valid range), vectorised as a
  ``B×10`` draw. ``resample='pil'`` (default) resizes with Pillow's bilinear *filter*: per-sample separable
  interpolation matrices ``(B, S, H)`` / ``(B, S, W)`` with the triangle kernel widened by the down-scale factor
  (Pillow's antialiasing) and renormalised at the crop border — what ``PIL.Image.resize(BILINEAR)`` does to the
  cropped image — applied as two batched matmuls. ``resample='grid_sample'`` uses ``F.grid_sample`` (bilinear,
  sample points clamped to the crop box): cheaper for large inputs, identical when up-scaling, not antialiased when
  down-scaling. The flip is folded into the interpolation matrices / grid (every later op commutes with it: they
  are point-wise or symmetric blurs with symmetric borders), so pipelines that flip last (MoCo) are the same law.
* ``RandomCropPadFlip`` — ``T.RandomCrop(size, padding)`` (zero fill) + ``T.RandomHorizontalFlip(p)``: integer
  offsets uniform over the ``2·padding + 1`` positions per axis like torchvision, the window read by one gather (a
  pure pixel shift, so the same law exactly, without any rounding difference).
* ``ColorJitter(brightness, contrast, saturation, hue, p)`` — per-sample factors ~ U like torchvision and a
  **per-sample random order** of the four adjustments (``argsort`` of uniform noise = a uniform permutation, as
  ``torch.randperm(4)`` per image). Brightness / contrast / saturation are torchvision's blends (contrast against the
  mean grey level, saturation against the grey image, ITU-R 601-2 luma as PIL's ``convert('L')``), clamped to
  [0, 1] after each; hue is an HSV rotation. ``p < 1`` is ``RandomApply([ColorJitter], p)`` per sample.
* ``RandomGrayscale(p)`` — PIL ``convert('L')`` luma copied to the three channels, per sample.
* ``GaussianBlur(sigma=(0.1, 2.0), p, kernel_size=None)`` — σ ~ U[0.1, 2] per sample, applied with probability p.
  ``kernel_size=None`` reproduces Pillow's ``ImageFilter.GaussianBlur(radius=σ)`` (MoCo / SimCLR ``GaussianBlur``):
  Pillow approximates the Gaussian by three passes of an extended box blur (fractional edge weights, edge pixels
  replicated at each pass); here the three passes are multiplied into one banded matrix per sample and axis
  (≤ 128 px; larger images: three depth-wise conv passes). ``kernel_size=k`` is
  ``T.GaussianBlur(k, sigma)`` (sampled Gaussian, reflect border; AttentioNCE's 3×3 OpenCV blur). Both run as one
  depth-wise separable convolution with per-sample kernels (samples not blurred get the identity kernel).
* ``Solarize(threshold=128, p)`` — ``ImageOps.solarize``: values ≥ threshold / 255 become 1 − value.
* ``Normalize(mean, std)`` — ``T.Normalize``; a ``NORMALIZE`` key or a ``(mean, std)`` pair.

Known differences from the PIL pipelines (measured in ``tests/common/test_batched_augment.py``): the batch stays in
float32 between steps where PIL rounds to uint8 after every step (≤ 1/255 per step); the crop resize does both
passes in float where Pillow rounds between the horizontal and the vertical pass; PIL's hue works on 8-bit HSV,
here on float HSV. All inputs of one
batch share one size (as any collated batch does).

Builders mirroring ``common.augment.pipelines`` (and each spec's §d): ``batched_simclr_transform``,
``batched_moco_v1_transform``, ``batched_moco_v2_transform``, ``batched_weak_transform``,
``batched_byol_transforms``, ``batched_cifar_train_transform``, and the multi-view ones ``batched_simclr_views``
(two SimCLR views), ``batched_cacr_views`` (CACR d.1: 5 views, ColorJitter(0.4, 0.4, 0.4, 0.4) always applied,
grey 0.2, no blur), ``batched_attentionce_views`` (AttentioNCE d: 6 views, crop 32 scale 0.08–1, jitter p 0.8
hue 0.1, grey 0.2, 3×3 blur p 0.5, CIFAR-10 normalisation).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from common.augment.normalize import NormStats, get_normalize_stats

__all__ = [
    "ToUint8Tensor", "RandomResizedCropFlip", "RandomCropPadFlip", "ColorJitter", "RandomGrayscale", "GaussianBlur",
    "Solarize", "Normalize", "BatchedAugment", "BatchedMultiView", "sample_crop_boxes", "resized_crop", "color_jitter",
    "pil_box_kernels", "pil_blur_kernels", "separable_blur",
    "batched_simclr_transform", "batched_moco_v1_transform", "batched_moco_v2_transform", "batched_weak_transform",
    "batched_byol_transforms", "batched_cifar_train_transform", "batched_simclr_views", "batched_cacr_views",
    "batched_attentionce_views",
]

# PIL ``convert('L')``: L = R·299/1000 + G·587/1000 + B·114/1000.
_LUMA = (0.299, 0.587, 0.114)


class ShardGenerator:
    """The draws of one process's part of a global batch, so that W processes augment their parts exactly as one
    process augments the whole batch.

    ``generator`` (seeded the same on every process) makes every draw for the global batch (``world_size`` × the
    local sample count) and this process keeps the rows of its own samples: with ``layout='interleaved'`` process r
    holds samples r, r+W, r+2W, … of the global batch (``common.distributed.rank_split_sampler``), with
    ``'contiguous'`` samples r·B … r·B+B−1. ``local_batch`` (B) is set by the caller for each batch; only the
    contiguous layout needs it (a draw for V views of B images has V·B rows, view-major). The cost is W× the random
    numbers, one per sample and parameter: negligible next to the images.
    """

    def __init__(self, generator: torch.Generator, rank: int, world_size: int, layout: str = "interleaved"):
        if layout not in ("interleaved", "contiguous"):
            raise ValueError(f"layout must be 'interleaved' or 'contiguous', got {layout!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.generator, self.rank, self.world_size, self.layout = generator, int(rank), int(world_size), layout
        self.local_batch: int | None = None

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def rows(self, n: int, device) -> torch.Tensor:
        """Indices of this process's ``n`` rows in a draw of ``world_size · n`` rows for the global batch."""
        i = torch.arange(n, device=device)
        if self.layout == "interleaved":            # local row v·B + b = global sample b·W + r of view v
            return i * self.world_size + self.rank
        if not self.local_batch or n % self.local_batch:
            raise ValueError(f"set local_batch before a contiguous draw (got {self.local_batch} for {n} rows)")
        view, b = i // self.local_batch, i % self.local_batch
        return (view * self.world_size + self.rank) * self.local_batch + b


def _rand(shape, generator, device, dtype=torch.float32, sample_dim: int = 0) -> torch.Tensor:
    """Uniform [0, 1) of ``shape`` whose dimension ``sample_dim`` runs over the samples (see ``ShardGenerator``)."""
    if isinstance(generator, ShardGenerator):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = shape[sample_dim]
        full = torch.rand(shape[:sample_dim] + (n * generator.world_size,) + shape[sample_dim + 1:],
                          generator=generator.generator, device=device, dtype=dtype)
        return full.index_select(sample_dim, generator.rows(n, full.device))
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    return low + (high - low) * _rand(n, generator, device)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) → (N, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _as_view(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, 1, 1, 1)


class ToUint8Tensor:
    """Dataset transform: PIL image (or H×W×3 uint8 array) → uint8 ``3×H×W`` tensor, no scaling, so the default
    collate yields the uint8 ``B×3×H×W`` batch the batched pipelines take."""

    def __call__(self, img) -> torch.Tensor:
        arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img, dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ------------------------------------------------------------------------------------------------ crop + flip
def sample_crop_boxes(n: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=None,
                      device=None, attempts: int = 10) -> torch.Tensor:
    """``T.RandomResizedCrop.get_params`` for ``n`` images at once → long tensor ``(n, 4)`` of ``(top, left, h, w)``.

    Same law as torchvision: up to ``attempts`` candidates (area ~ U[scale]·H·W, log-ratio ~ U[log ratio], sides
    rounded half-to-even), the first that fits is kept, offsets uniform; none fits → the central fallback crop.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    u = _rand((2, n, attempts), generator, device, torch.float64, sample_dim=1)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[1])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)           # first fitting attempt (0 when none fits)
    found = fits.any(1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    in_ratio = width / height                                       # torchvision's central fallback
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    uo = _rand((2, n), generator, device, torch.float64, sample_dim=1)
    top = torch.minimum(torch.floor(uo[0] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(uo[1] * (width - w + 1)), width - w)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], 1).long()


def _pil_bilinear_matrix(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """Pillow's bilinear resample of the window ``[start, start + length)`` of an axis of ``in_size`` pixels to
    ``out_size`` pixels, as a matrix ``(n, out_size, in_size)`` (rows sum to 1).

    Pillow (``Resample.c::precompute_coeffs``) on the cropped image: scale = length / out, filter scale =
    max(scale, 1), weight of input pixel x for output o = tri((x + 0.5 − (o + 0.5)·scale) / filter scale), pixels
    outside the crop dropped and the row renormalised.
    """
    start = start.to(torch.float32).view(-1, 1, 1)
    length = length.to(torch.float32).view(-1, 1, 1)
    device = start.device
    scale = length / out_size
    filter_scale = scale.clamp(min=1.0)
    center = (torch.arange(out_size, device=device, dtype=torch.float32).view(1, -1, 1) + 0.5) * scale
    x = torch.arange(in_size, device=device, dtype=torch.float32).view(1, 1, -1) - start   # crop coordinates
    weight = (1.0 - ((x + 0.5 - center) / filter_scale).abs()).clamp(min=0.0)
    weight = weight * ((x >= 0) & (x < length))
    return weight / weight.sum(-1, keepdim=True)


def _grid_coords(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """Normalised ``grid_sample`` coordinates (align_corners=False) ``(n, out_size)`` of the output pixel centres of
    a bilinear resize of the crop window, clamped to the window's pixel centres (the crop's replicated border)."""
    start = start.to(torch.float32).view(-1, 1)
    length = length.to(torch.float32).view(-1, 1)
    o = torch.arange(out_size, device=start.device, dtype=torch.float32).view(1, -1)
    pos = ((o + 0.5) * length / out_size - 0.5).clamp(min=0.0)
    pos = torch.minimum(pos, length - 1) + start
    return (2 * pos + 1) / in_size - 1


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size, flip: torch.Tensor | None = None,
                 resample: str = "pil") -> torch.Tensor:
    """Crop box ``boxes[i] = (top, left, h, w)`` of image ``i mod B`` and resize it to ``size`` (bilinear), flipping
    horizontally where ``flip[i]``: ``x`` (B, C, H, W) float, ``boxes`` (n, 4) with n a multiple of B → (n, C, S, S).

    ``resample='pil'``: ``F.resized_crop`` on a PIL image (Pillow's bilinear filter, antialiased when shrinking);
    ``'grid_sample'``: bilinear ``grid_sample`` of the crop (no antialiasing)."""
    b, c, height, width = x.shape
    n = boxes.shape[0]
    if n % b:
        raise ValueError(f"{n} boxes for a batch of {b}: expected a multiple of the batch")
    n_views = n // b
    out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)
    if flip is None:
        flip = torch.zeros(n, dtype=torch.bool, device=x.device)
    top, left, h, w = boxes.unbind(1)
    if resample == "pil":
        rows = _pil_bilinear_matrix(top, h, height, out_h)                           # (n, S_h, H)
        cols = _pil_bilinear_matrix(left, w, width, out_w)                           # (n, S_w, W)
        cols = torch.where(flip.view(-1, 1, 1), cols.flip(1), cols)
        # Two flat batched matmuls (several times faster than a broadcast 4-D matmul on CPU).
        y = x.permute(0, 2, 1, 3).reshape(b, height, c * width)                       # (B, H, C·W)
        if n_views > 1:
            y = y.unsqueeze(0).expand(n_views, b, height, c * width).reshape(n, height, c * width)
        y = torch.bmm(rows, y)                                                        # (n, S_h, C·W)
        y = y.view(n, out_h, c, width).permute(0, 2, 1, 3).reshape(n, c * out_h, width)
        return torch.bmm(y, cols.transpose(1, 2)).view(n, c, out_h, out_w)
    if resample != "grid_sample":
        raise ValueError(f"resample must be 'pil' or 'grid_sample', got {resample!r}")
    gx = _grid_coords(left, w, width, out_w)
    gx = torch.where(flip.view(-1, 1), gx.flip(1), gx)
    gy = _grid_coords(top, h, height, out_h)
    grid = torch.stack(torch.broadcast_tensors(gx.view(n, 1, out_w), gy.view(n, out_h, 1)), -1)
    src = x.unsqueeze(0).expand(n_views, *x.shape).reshape(n, c, height, width)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomResizedCropFlip:
    """``RandomResizedCrop(size, scale, ratio)`` (bilinear) then ``RandomHorizontalFlip(flip_p)``, per sample.

    ``__call__(x, n_views=1, generator)`` with ``x`` (B, C, H, W) float returns ``(n_views·B, C, S, S)``: view v of
    image b at row ``v·B + b``, each with its own crop and flip (the input is shared by broadcasting, not copied).
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5, resample: str = "pil"):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale, self.ratio, self.flip_p = tuple(scale), tuple(ratio), float(flip_p)
        if resample not in ("pil", "grid_sample"):
            raise ValueError(f"resample must be 'pil' or 'grid_sample', got {resample!r}")
        self.resample = resample

    def __call__(self, x: torch.Tensor, n_views: int = 1, generator=None) -> torch.Tensor:
        b, _, height, width = x.shape
        n = n_views * b
        boxes = sample_crop_boxes(n, height, width, self.scale, self.ratio, generator, x.device)
        flip = _rand(n, generator, x.device) < self.flip_p
        return resized_crop(x, boxes, self.size, flip, self.resample)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
                f"flip_p={self.flip_p}, resample={self.resample!r})")


class RandomCropPadFlip:
    """``T.RandomCrop(size, padding)`` (zero padding) then ``T.RandomHorizontalFlip(flip_p)``, per sample; same
    ``__call__(x, n_views=1, generator)`` contract as ``RandomResizedCropFlip`` (view v of image b at row v·B + b)."""

    def __init__(self, size, padding: int = 4, flip_p: float = 0.5):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.padding, self.flip_p = int(padding), float(flip_p)

    def __call__(self, x: torch.Tensor, n_views: int = 1, generator=None) -> torch.Tensor:
        b, c, height, width = x.shape
        out_h, out_w = self.size
        pad = self.padding
        if out_h > height + 2 * pad or out_w > width + 2 * pad:
            raise ValueError(f"crop {self.size} is larger than the padded {height}x{width} images (padding {pad})")
        n, device = n_views * b, x.device
        u = _rand((2, n), generator, device, torch.float64, sample_dim=1)
        top = torch.floor(u[0] * (height + 2 * pad - out_h + 1)).long()
        left = torch.floor(u[1] * (width + 2 * pad - out_w + 1)).long()
        flip = _rand(n, generator, device) < self.flip_p
        rows = top.view(n, 1) + torch.arange(out_h, device=device)
        cols = left.view(n, 1) + torch.arange(out_w, device=device)
        cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
        image = torch.arange(n, device=device) % b
        padded = F.pad(x, (pad, pad, pad, pad))
        return padded[image.view(n, 1, 1, 1), torch.arange(c, device=device).view(1, c, 1, 1),
                      rows.view(n, 1, out_h, 1), cols.view(n, 1, 1, out_w)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, padding={self.padding}, flip_p={self.flip_p})"


# ------------------------------------------------------------------------------------------------ colour
def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of ``x`` (N, 3, H, W) by ``shift`` (N,) turns (``F.adjust_hue``) without materialising
    HSV: hue rotation keeps max (V) and chroma (V·S), so RGB = max − chroma·clamp(min(k, 4 − k), 0, 1) with
    k = (n + 6H) mod 6, n = 5 / 3 / 1 for R / G / B."""
    r, g, b = x.unbind(1)
    maxc = x.amax(1)
    chroma = maxc - x.amin(1)
    inv = 1.0 / chroma.clamp_min(1e-12)                   # grey pixels: chroma 0, any hue gives max
    h6 = torch.where(maxc == r, (g - b) * inv, torch.where(maxc == g, (b - r) * inv + 2.0, (r - g) * inv + 4.0))
    h6 = h6 + 6.0 * shift.view(-1, 1, 1)
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + h6.unsqueeze(1), 6.0)
    return maxc.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


def _factor_range(value, name: str, center: float = 1.0, bound=(0.0, float("inf"))):
    if value is None or value == 0:
        return None
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"ColorJitter {name} must be non-negative, got {value}")
        lo, hi = center - value, center + value
        lo = max(lo, bound[0]) if name != "hue" else lo
    else:
        lo, hi = map(float, value)
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"ColorJitter {name} range must lie in {list(bound)}, got {(lo, hi)}")
    return (lo, hi)


def color_jitter(x: torch.Tensor, order: torch.Tensor, brightness=None, contrast=None, saturation=None,
                 hue=None) -> torch.Tensor:
    """Per-sample ``F.adjust_brightness / contrast / saturation / hue`` in a per-sample order.

    ``x`` (N, 3, H, W) in [0, 1]; ``order`` (N, 4) long, a permutation of 0 (brightness), 1 (contrast),
    2 (saturation), 3 (hue) per row; factors (N,) or None (skipped; hue shifts in turns, 0 = unchanged).
    The loop runs over the four *positions*: at each, every sample's step is one blend ``f·x + (1 − f)·ref``
    (ref = 0 / mean grey / grey, clamped to [0, 1]) and only the samples whose step is hue pay for the rotation.
    """
    n = x.shape[0]
    ones = torch.ones(n, device=x.device, dtype=x.dtype)
    b = ones if brightness is None else brightness
    c = ones if contrast is None else contrast
    s = ones if saturation is None else saturation
    need_grey = contrast is not None or saturation is not None
    for position in range(4):
        step = order[:, position]
        is_contrast, is_saturation = step == 1, step == 2
        f = torch.where(step == 0, b, torch.where(is_contrast, c, torch.where(is_saturation, s, ones)))
        if need_grey:
            grey = _luma(x)
            mean = grey.mean((2, 3), keepdim=True)
            ref = torch.where(_as_view(is_contrast), mean, torch.where(_as_view(is_saturation), grey, 0.0))
            x = torch.lerp(ref, x, _as_view(f)).clamp_(0.0, 1.0)
        else:
            x = (x * _as_view(f)).clamp_(0.0, 1.0)
        if hue is not None:
            idx = torch.nonzero((step == 3) & (hue != 0)).squeeze(1)
            if idx.numel():
                x.index_copy_(0, idx, _adjust_hue(x.index_select(0, idx), hue.index_select(0, idx)))
    return x


class ColorJitter:
    """``T.ColorJitter(brightness, contrast, saturation, hue)`` per sample, applied with probability ``p``
    (``p = 1``: always, as CACR; ``p = 0.8``: ``RandomApply([...], p=0.8)`` as SimCLR / MoCo v2).

    Factors ~ U[max(0, 1 − v), 1 + v] (hue shift ~ U[−h, h]), a uniform random order of the four adjustments per
    sample. The loop runs over the four *positions* of the order; at each, every sample's step is one blend
    ``f·x + (1 − f)·ref`` (ref = 0 / mean grey / grey) or, for the samples whose step is hue, an HSV rotation.
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p: float = 1.0):
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        self.hue = _factor_range(hue, "hue", center=0.0, bound=(-0.5, 0.5))
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        n, device = x.shape[0], x.device
        applied = _rand(n, generator, device) < self.p
        order = _rand((n, 4), generator, device).argsort(1)          # per-sample uniform permutation of 0..3
        ones = torch.ones(n, device=device)
        b, c, s = [None if r is None else torch.where(applied, _uniform(n, *r, generator, device), ones)
                   for r in (self.brightness, self.contrast, self.saturation)]
        hue = None if self.hue is None else torch.where(applied, _uniform(n, *self.hue, generator, device), 0.0)
        return color_jitter(x, order, b, c, s, hue)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue}, p={self.p})")


class RandomGrayscale:
    """``T.RandomGrayscale(p)``: PIL luma on all three channels, per sample."""

    def __init__(self, p: float = 0.1):
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        mask = _as_view(_rand(x.shape[0], generator, x.device) < self.p)
        return torch.where(mask, _luma(x).expand_as(x), x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


# ------------------------------------------------------------------------------------------------ blur / solarize
def pil_box_kernels(sigma: torch.Tensor, passes: int = 3, sigma_max: float | None = None) -> torch.Tensor:
    """The box of Pillow's ``GaussianBlur(radius=σ)`` for each σ, ``(n, K)``: Pillow blurs with ``passes`` box
    blurs of the "extended box" radius of Gwosdek et al. (``BoxBlur.c::_gaussian_blur_radius``: integer part l,
    fractional edge weight a, weights 1 for |t| ≤ l and a at |t| = l + 1, normalised). K is fixed by ``sigma_max``
    (default: the largest σ) so all rows align (K = 5 for σ ≤ 2)."""
    sigma = sigma.to(torch.float64)
    sigma2 = sigma * sigma / passes
    l = torch.floor((torch.sqrt(12.0 * sigma2 + 1.0) - 1.0) / 2.0)
    a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2) / (6 * (sigma2 - (l + 1) ** 2))
    s_max = float(sigma.max()) if sigma_max is None else float(sigma_max)
    r = math.floor((math.sqrt(12.0 * s_max * s_max / passes + 1.0) - 1.0) / 2.0) + 1
    t = torch.arange(-r, r + 1, device=sigma.device, dtype=torch.float64).abs().view(1, -1)
    box = torch.where(t <= l.view(-1, 1), 1.0, torch.where(t == l.view(-1, 1) + 1, a.view(-1, 1), 0.0))
    return (box / (2 * (l + a) + 1).view(-1, 1)).to(torch.float32)


def pil_blur_kernels(sigma: torch.Tensor, passes: int = 3, sigma_max: float | None = None) -> torch.Tensor:
    """``pil_box_kernels`` convolved ``passes`` times into one kernel per σ, ``(n, passes·(K − 1) + 1)``."""
    box = pil_box_kernels(sigma, passes, sigma_max)
    n, kernel = box.shape[0], box
    for _ in range(passes - 1):           # self-convolution, grouped so every row convolves with its own box
        kernel = F.conv1d(kernel.unsqueeze(0), box.unsqueeze(1), padding=box.shape[1] - 1, groups=n).squeeze(0)
    return kernel


def _gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``T.GaussianBlur`` kernels ``(n, k)``: exp(−x² / 2σ²) sampled at the integer offsets, normalised."""
    half = (kernel_size - 1) * 0.5
    x = torch.linspace(-half, half, kernel_size, device=sigma.device).view(1, -1)
    pdf = torch.exp(-0.5 * (x / sigma.view(-1, 1)) ** 2)
    return pdf / pdf.sum(1, keepdim=True)


def _border_index(length: int, taps: int, padding_mode: str, device) -> torch.Tensor:
    """``(length, taps)`` source index of tap t of output o (offset t − taps // 2) after the border rule."""
    i = torch.arange(length, device=device).view(-1, 1) + torch.arange(taps, device=device).view(1, -1) - taps // 2
    if padding_mode == "reflect":                                 # …2 1 | 0 1 2 … (OpenCV REFLECT_101)
        i = i.abs()
        i = torch.where(i > length - 1, 2 * (length - 1) - i, i)
    return i.clamp(0, length - 1)                                 # replicate (also reflect wider than the image)


def _band_matrix(kernel: torch.Tensor, length: int, padding_mode: str) -> torch.Tensor:
    """Per-sample convolution along an axis of ``length`` pixels as a matrix ``(N, length, length)``."""
    n, taps = kernel.shape
    idx = _border_index(length, taps, padding_mode, kernel.device).expand(n, length, taps)
    matrix = torch.zeros(n, length, length, device=kernel.device, dtype=kernel.dtype)
    return matrix.scatter_add_(2, idx, kernel.view(n, 1, taps).expand(n, length, taps))


def separable_blur(x: torch.Tensor, kernel: torch.Tensor, padding_mode: str, passes: int = 1) -> torch.Tensor:
    """Per-sample separable convolution, ``passes`` times along H and W, border ``padding_mode`` at every pass:
    ``x`` (N, C, H, W), ``kernel`` (N, K) (odd K).

    Images up to 128 px: each axis' passes are one banded matrix ``(N, L, L)`` (the border rule folded in, the
    passes multiplied together, so repeated passes cost nothing more), applied as two batched matmuls (several
    times faster than a grouped convolution on CPU). Larger: ``passes`` depth-wise conv2d per axis with per-sample
    weights (``groups = N·C``)."""
    n, c, h, w = x.shape
    k = kernel.shape[1]
    if max(h, w) <= 128:
        def axis_matrix(length: int) -> torch.Tensor:
            single = _band_matrix(kernel, length, padding_mode)
            matrix = single
            for _ in range(passes - 1):
                matrix = torch.bmm(single, matrix)
            return matrix

        rows = axis_matrix(h)
        cols = rows if w == h else axis_matrix(w)
        y = torch.bmm(rows, x.permute(0, 2, 1, 3).reshape(n, h, c * w))           # (N, H, C·W)
        y = y.view(n, h, c, w).permute(0, 2, 1, 3).reshape(n, c * h, w)
        return torch.bmm(y, cols.transpose(1, 2)).view(n, c, h, w)
    pad = k // 2
    if padding_mode == "reflect" and pad >= min(h, w):
        padding_mode = "replicate"
    weight = kernel.repeat_interleave(c, 0)                          # (N·C, K): channel c of sample i → row i·C + c
    y = x.reshape(1, n * c, h, w)
    for _ in range(passes):
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode=padding_mode), weight.view(n * c, 1, 1, k), groups=n * c)
    for _ in range(passes):
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode=padding_mode), weight.view(n * c, 1, k, 1), groups=n * c)
    return y.view(n, c, h, w)


class GaussianBlur:
    """Gaussian blur with σ ~ U[sigma] per sample, applied with probability ``p``.

    ``kernel_size=None``: Pillow ``ImageFilter.GaussianBlur(radius=σ)`` (``common.augment.GaussianBlur``);
    ``kernel_size=k`` (odd): ``T.GaussianBlur(k, sigma)`` (AttentioNCE: 3).
    """

    def __init__(self, sigma=(0.1, 2.0), p: float = 0.5, kernel_size: int | None = None):
        self.sigma = tuple(map(float, sigma))
        self.p = float(p)
        if kernel_size is not None and (kernel_size < 1 or kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        self.kernel_size = kernel_size

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        n, device = x.shape[0], x.device
        applied = _rand(n, generator, device) < self.p
        sigma = _uniform(n, *self.sigma, generator, device)
        if self.kernel_size is None:        # Pillow: 3 box passes per axis, edge pixels replicated at each pass
            kernel, mode, passes = pil_box_kernels(sigma, 3, sigma_max=self.sigma[1]), "replicate", 3
        else:
            kernel, mode, passes = _gaussian_kernels(sigma, self.kernel_size), "reflect", 1
        k = kernel.shape[1]
        identity = torch.zeros(k, device=device)
        identity[k // 2] = 1.0
        kernel = torch.where(applied.view(-1, 1), kernel, identity)
        return separable_blur(x, kernel, mode, passes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma}, p={self.p}, kernel_size={self.kernel_size})"


class Solarize:
    """``ImageOps.solarize(threshold)`` with probability ``p`` per sample."""

    def __init__(self, threshold: int = 128, p: float = 1.0):
        self.threshold = threshold / 255.0
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        mask = _as_view(_rand(x.shape[0], generator, x.device) < self.p) & (x >= self.threshold - 1e-6)
        return torch.where(mask, 1.0 - x, x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold * 255:g}, p={self.p})"


class Normalize:
    """``T.Normalize`` for a ``NORMALIZE`` key or a ``(mean, std)`` pair."""

    def __init__(self, normalize="imagenet"):
        stats = get_normalize_stats(normalize) if isinstance(normalize, str) else NormStats(*normalize)
        self.mean, self.std = tuple(stats.mean), tuple(stats.std)

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


# ------------------------------------------------------------------------------------------------ pipelines
def _to_float(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a batch B×3×H×W, got shape {tuple(images.shape)} (use ToUint8Tensor as the "
                         f"dataset transform so the loader yields uint8 B×3×H×W)")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if images.is_floating_point():
        return images.float()
    raise ValueError(f"expected uint8 (0–255) or float (0–1) images, got {images.dtype}")


class BatchedAugment:
    """A batched pipeline: ``crop`` (``RandomResizedCropFlip``), then ``ops`` in order, then ``normalize``.

    ``__call__(images, generator=None, n_views=1)``: ``images`` uint8 (or float in [0, 1]) ``B×3×H×W`` on any
    device → float32 ``(n_views·B)×3×S×S`` on the same device (view v of image b at row v·B + b).
    """

    def __init__(self, crop: RandomResizedCropFlip, ops: Sequence = (), normalize="imagenet"):
        self.crop = crop
        self.ops = list(ops)
        self.normalize = normalize if isinstance(normalize, Normalize) or normalize is None else Normalize(normalize)

    def __call__(self, images: torch.Tensor, generator=None, n_views: int = 1) -> torch.Tensor:
        if generator is not None and generator.device.type != images.device.type:
            raise ValueError(f"the generator is on {generator.device} but the batch on {images.device}: create it "
                             f"with torch.Generator(device=images.device)")
        x = self.crop(_to_float(images), n_views, generator)
        for op in self.ops:
            x = op(x, generator)
        return x if self.normalize is None else self.normalize(x)

    def __repr__(self) -> str:
        lines = [repr(self.crop), *map(repr, self.ops), repr(self.normalize)]
        return f"{type(self).__name__}(\n    " + "\n    ".join(lines) + "\n)"


class BatchedMultiView:
    """V views of a batch: ``BatchedMultiView(pipeline, n)``, ``BatchedMultiView([p1, p2])``,
    ``BatchedMultiView([(p_global, 2), (p_local, 6)])`` — the batched ``MultiViewTransform``.

    ``__call__(images, generator=None)`` → list of V float tensors ``B×3×S×S`` in view order, as the DataLoader
    collate of ``MultiViewTransform`` gives. Consecutive views of one pipeline are computed in one call.
    """

    def __init__(self, pipelines, n: int | None = None):
        if n is not None:
            pipelines = [(pipelines, n)]
        elif isinstance(pipelines, BatchedAugment):
            raise TypeError("BatchedMultiView(pipeline) needs a view count: BatchedMultiView(pipeline, n)")
        elif isinstance(pipelines, tuple) and len(pipelines) == 2 and isinstance(pipelines[1], int):
            pipelines = [pipelines]
        groups: list[list] = []
        for item in pipelines:
            p, k = item if isinstance(item, tuple) else (item, 1)
            if k < 1:
                raise ValueError(f"view count must be >= 1, got {k}")
            if groups and groups[-1][0] is p:
                groups[-1][1] += k
            else:
                groups.append([p, k])
        if not groups:
            raise ValueError("BatchedMultiView needs at least one view")
        self.groups = [(p, k) for p, k in groups]

    def __len__(self) -> int:
        return sum(k for _, k in self.groups)

    def __call__(self, images: torch.Tensor, generator=None) -> list[torch.Tensor]:
        views: list[torch.Tensor] = []
        for pipeline, k in self.groups:      # one call per distinct pipeline, not per view
            views.extend(pipeline(images, generator, n_views=k).chunk(k, 0))
        return views

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_views={len(self)}, groups={self.groups!r})"


# ------------------------------------------------------------------------------------------------ builders
def _blur_op(blur, blur_p: float):
    if blur is None or blur_p <= 0:
        return []
    if blur == "pil":
        return [GaussianBlur((0.1, 2.0), p=blur_p)]
    if isinstance(blur, int):
        return [GaussianBlur((0.1, 2.0), p=blur_p, kernel_size=blur)]
    raise ValueError(f"blur must be None, 'pil' or an odd kernel size, got {blur!r}")


def batched_simclr_transform(size: int, normalize, scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.4, 0.1),
                             jitter_p: float = 0.8, grayscale_p: float = 0.2, blur="pil", blur_p: float = 0.5,
                             resample: str = "pil") -> BatchedAugment:
    """``common.augment.simclr_transform`` batched: crop → flip → ColorJitter (p) → grey → blur (p) → normalise."""
    ops = [ColorJitter(*jitter, p=jitter_p)]
    if grayscale_p > 0:
        ops.append(RandomGrayscale(grayscale_p))
    ops += _blur_op(blur, blur_p)
    return BatchedAugment(RandomResizedCropFlip(size, scale, resample=resample), ops, normalize)


def batched_moco_v1_transform(size: int = 224, normalize="imagenet", scale=(0.2, 1.0),
                              resample: str = "pil") -> BatchedAugment:
    """``moco_v1_transform`` batched: crop → grey 0.2 → ColorJitter(0.4, 0.4, 0.4, 0.4) → flip (flip folded in)."""
    return BatchedAugment(RandomResizedCropFlip(size, scale, resample=resample),
                          [RandomGrayscale(0.2), ColorJitter(0.4, 0.4, 0.4, 0.4)], normalize)


def batched_moco_v2_transform(size: int = 224, normalize="imagenet", scale=(0.2, 1.0), blur_p: float = 0.5,
                              resample: str = "pil") -> BatchedAugment:
    """``moco_v2_transform`` batched: crop → ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8 → grey 0.2 → PIL blur p 0.5 →
    flip (folded in)."""
    return BatchedAugment(RandomResizedCropFlip(size, scale, resample=resample),
                          [ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), RandomGrayscale(0.2),
                           *_blur_op("pil", blur_p)], normalize)


def batched_weak_transform(size: int, normalize, scale=(0.2, 1.0), resample: str = "pil") -> BatchedAugment:
    """``weak_transform`` batched: crop → flip (ASCL ``weak_augment``)."""
    return BatchedAugment(RandomResizedCropFlip(size, scale, resample=resample), [], normalize)


def batched_byol_transforms(size: int = 224, normalize="imagenet", scale=(0.08, 1.0),
                            resample: str = "pil") -> tuple[BatchedAugment, BatchedAugment]:
    """``byol_transforms`` batched (MoCo-v3 pair): jitter (0.4, 0.4, 0.2, 0.1) p 0.8 → grey 0.2 → blur (1.0 / 0.1)
    → [view 2: Solarize p 0.2] → flip. Use ``BatchedMultiView(list(batched_byol_transforms(...)))``."""
    def view(blur_p: float, solarize_p: float) -> BatchedAugment:
        ops = [ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), RandomGrayscale(0.2), *_blur_op("pil", blur_p)]
        if solarize_p > 0:
            ops.append(Solarize(128, p=solarize_p))
        return BatchedAugment(RandomResizedCropFlip(size, scale, resample=resample), ops, normalize)

    return view(1.0, 0.0), view(0.1, 0.2)


def batched_cifar_train_transform(normalize="cifar100", size: int = 32, padding: int = 4) -> BatchedAugment:
    """``cifar_train_transform`` batched: RandomCrop(size, padding) → flip → normalise (MCL d.1)."""
    return BatchedAugment(RandomCropPadFlip(size, padding), [], normalize)


def batched_simclr_views(size: int, normalize, n_views: int = 2, **kwargs) -> BatchedMultiView:
    """``TwoCropsTransform(simclr_transform(size, normalize, **kwargs))`` batched (``n_views`` views)."""
    return BatchedMultiView(batched_simclr_transform(size, normalize, **kwargs), n_views)


def batched_cacr_views(size: int = 32, normalize="cifar10", scale=(0.2, 1.0), n_views: int = 5,
                       resample: str = "pil") -> BatchedMultiView:
    """CACR d.1: Ny+1 = ``n_views`` views of crop(size, scale) → flip → ColorJitter(0.4, 0.4, 0.4, 0.4) always →
    grey 0.2 → normalise; no blur. CIFAR: ``(32, 'cifar10' | 'cifar100', (0.2, 1))``; STL-10:
    ``(64, 'stl10_cacr', (0.08, 1))``."""
    return BatchedMultiView(batched_simclr_transform(size, normalize, scale, jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0,
                                                     grayscale_p=0.2, blur=None, resample=resample), n_views)


def batched_attentionce_views(size: int = 32, normalize="cifar10", n_views: int = 6,
                              resample: str = "pil") -> BatchedMultiView:
    """AttentioNCE d: 6 views of crop(32, 0.08–1) → flip → ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8 → grey 0.2 →
    3×3 Gaussian blur (σ ~ U[0.1, 2], reflect border) p 0.5 → CIFAR-10 normalisation (every dataset)."""
    return BatchedMultiView(batched_simclr_transform(size, normalize, (0.08, 1.0), blur=3, blur_p=0.5,
                                                     resample=resample), n_views)
