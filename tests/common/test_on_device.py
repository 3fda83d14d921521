"""``--augment batched`` and ``--amp`` / ``--channels-last`` wiring (common.augment.on_device, common.utils).

* every method's batched pipelines are the same transforms, with the same parameters and in the same order, as its
  per-image PIL pipelines (``test_batched_views_are_the_pil_pipelines``); that the batched ops draw from the same
  distributions as their PIL counterparts is tests/common/test_batched_augment.py;
* the crop with padding (MCL's CIFAR pipeline) is pixel-exact against PIL;
* the loader-to-device glue and the precision switches.
One training step of every entry point with ``--augment batched --amp --channels-last`` on digits is part of each
method's digits smoke test (``sh/train.sh``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

import common.augment as A
from common.augment import batched as B
from common.augment.filters import GaussianBlur as PILGaussianBlur, Solarize as PILSolarize
from common.augment.on_device import DeviceViewLoader, DeviceViews, uint8_collate
from common.utils import MixedPrecision, UserError


# ----------------------------------------------------------------------------------------------- same pipelines
def _range(v):
    return None if v is None else tuple(round(float(x), 6) for x in v)


def _describe_pil(transform) -> tuple:
    """(crop, flip p, [colour / blur ops in order], (mean, std)) of a PIL ``Compose``; the flip's position is left
    out because every later op commutes with it (``common.augment.batched`` folds it into the crop)."""
    crop, flip, ops, norm = None, 0.0, [], None

    def visit(t, p=1.0):
        nonlocal crop, flip, norm
        if isinstance(t, T.Compose):
            for s in t.transforms:
                visit(s, p)
        elif isinstance(t, T.RandomApply):
            for s in t.transforms:
                visit(s, p * t.p)
        elif isinstance(t, T.RandomResizedCrop):
            assert t.interpolation == T.InterpolationMode.BILINEAR and p == 1
            crop = ("resized", tuple(t.size), _range(t.scale), _range(t.ratio))
        elif isinstance(t, T.RandomCrop):
            assert t.fill == 0 and t.padding_mode == "constant" and not t.pad_if_needed and p == 1
            crop = ("padded", tuple(t.size), int(t.padding))
        elif isinstance(t, T.RandomHorizontalFlip):
            flip = p * t.p
        elif isinstance(t, T.ColorJitter):
            ops.append(("jitter", *map(_range, (t.brightness, t.contrast, t.saturation, t.hue)), p))
        elif isinstance(t, T.RandomGrayscale):
            ops.append(("grey", p * t.p))
        elif isinstance(t, PILGaussianBlur):
            ops.append(("blur", None, _range(t.sigma), p))
        elif isinstance(t, T.GaussianBlur):
            ops.append(("blur", tuple(t.kernel_size)[0], _range(t.sigma), p))
        elif isinstance(t, PILSolarize):
            ops.append(("solarize", t.threshold, p))
        elif isinstance(t, T.Normalize):
            norm = (_range(t.mean), _range(t.std))
        elif not isinstance(t, T.ToTensor):
            raise AssertionError(f"no batched equivalent known for {t!r}")

    visit(transform)
    return crop, flip, ops, norm


def _describe_batched(pipeline: B.BatchedAugment) -> tuple:
    c = pipeline.crop
    if isinstance(c, B.RandomResizedCropFlip):
        assert c.resample == "pil"
        crop = ("resized", tuple(c.size), _range(c.scale), _range(c.ratio))
    else:
        crop = ("padded", tuple(c.size), c.padding)
    ops = []
    for op in pipeline.ops:
        if isinstance(op, B.ColorJitter):
            ops.append(("jitter", *map(_range, (op.brightness, op.contrast, op.saturation, op.hue)), op.p))
        elif isinstance(op, B.RandomGrayscale):
            ops.append(("grey", op.p))
        elif isinstance(op, B.GaussianBlur):
            ops.append(("blur", op.kernel_size, _range(op.sigma), op.p))
        elif isinstance(op, B.Solarize):
            ops.append(("solarize", round(op.threshold * 255), op.p))
        else:
            raise AssertionError(f"unexpected batched op {op!r}")
    return crop, c.flip_p, ops, (_range(pipeline.normalize.mean), _range(pipeline.normalize.std))


def _views(batched: B.BatchedMultiView) -> list:
    return [p for p, k in batched.groups for _ in range(k)]


def _pairs():
    """(name, per-image view transforms, BatchedMultiView) of every method's --augment batched path."""
    from ascl.dataloader import get_batched_views, get_transforms
    from cacr.small_scale_experiments import util as cacr_util
    from paco.augmentations import AUG_CHOICES, batched_train_views, train_transform
    cases = []
    for dataset, size, crop_min in (("digits", 16, None), ("stl10", None, None), ("cifar100", 32, 0.3)):
        cases.append((f"cacr-{dataset}", [cacr_util.pretrain_transform(dataset, size, crop_min)] * 3,
                      cacr_util.batched_pretrain_views(dataset, 3, size, crop_min)))
    for variant, choices in AUG_CHOICES.items():
        for aug in choices:
            for aug_plus in (True, False):
                try:
                    batched = batched_train_views(aug, variant, "digits", 24, aug_plus)
                except UserError:
                    continue
                two = train_transform(aug, variant, "digits", 24, aug_plus=aug_plus)
                cases.append((f"paco-{variant}-{aug}-{aug_plus}", [two.t1, two.t2], batched))
    cases.append(("mcl-cifar", [A.cifar_train_transform("digits", 16, 2)],
                  B.BatchedMultiView(B.batched_cifar_train_transform("digits", 16, 2), 1)))
    for maker, batched in ((A.moco_v2_transform, B.batched_moco_v2_transform),
                           (A.moco_v1_transform, B.batched_moco_v1_transform)):
        cases.append((f"mcl-moco-{maker.__name__}", [maker(24)] * 2, B.BatchedMultiView(batched(24), 2)))
    for dataset in ("digits", "stl10"):
        for aug in ("weak_augment", "strong_augment"):
            two = get_transforms(dataset, aug)[0]
            cases.append((f"ascl-{dataset}-{aug}", [two.t1, two.t2], get_batched_views(dataset, aug)))
    return cases


def test_batched_views_are_the_pil_pipelines():
    """Each view of each method's batched path: the same crop, flip, colour / blur ops (same parameters, same
    order) and normalisation as the PIL pipeline it replaces; PaCo's RandAugment / AutoAugment pairs are refused."""
    from paco.augmentations import AUG_CHOICES, batched_train_views
    cases = _pairs()
    assert {name.split("-")[0] for name, *_ in cases} == {"cacr", "paco", "mcl", "ascl"}
    for name, pil_views, batched in cases:
        ours = _views(batched)
        assert len(ours) == len(pil_views), name
        for pil, view in zip(pil_views, ours):
            assert _describe_batched(view) == _describe_pil(pil), name
    refused = {(v, a) for v, choices in AUG_CHOICES.items() for a in choices
               if a.startswith("randcls") or a == "cifar100" or (v, a) == ("cifar", "regular_regular")}
    for variant, aug in refused:
        with pytest.raises(UserError, match="no batched equivalent"):
            batched_train_views(aug, variant, "digits", 24)
    assert len(refused) == 9
    # the other 10 pairs (sim_sim, mocov2_mocov2, regular_regular; CIFAR: mocov2_mocov2) × --aug-plus on / off
    assert sum(name.startswith("paco-") for name, *_ in cases) == 20


def test_describe_sees_a_changed_parameter():
    """The comparison above can fail: a different jitter, grey p, crop scale or op order is a different pipeline."""
    base = A.simclr_transform(24, "digits", scale=(0.2, 1.0))
    assert _describe_batched(B.batched_simclr_transform(24, "digits", scale=(0.2, 1.0))) == _describe_pil(base)
    for changed in (B.batched_simclr_transform(24, "digits", scale=(0.08, 1.0)),
                    B.batched_simclr_transform(24, "digits", scale=(0.2, 1.0), grayscale_p=0.3),
                    B.batched_simclr_transform(24, "digits", scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.0)),
                    B.BatchedAugment(B.RandomResizedCropFlip(24, (0.2, 1.0)),
                                     [B.RandomGrayscale(0.2), B.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
                                      B.GaussianBlur(p=0.5)], "digits")):
        assert _describe_batched(changed) != _describe_pil(base)


# ----------------------------------------------------------------------------------------------- padded crop
def test_random_crop_pad_flip_is_pixel_exact_and_uniform():
    """Every output is exactly one of the 2·(2p+1)² PIL crops ``[hflip](crop(pad(image, p)))`` of its image, and
    offsets / flips are uniform (the torchvision law)."""
    pad, size, n_images, n_views = 2, 12, 8, 64
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    out = B.RandomCropPadFlip(size, pad)(x, n_views, torch.Generator().manual_seed(0))
    assert out.shape == (n_views * n_images, 3, size, size)
    counts = np.zeros((2 * pad + 1, 2 * pad + 1, 2))
    for b in range(n_images):
        padded = TF.pad(Image.fromarray(images[b]), pad)
        candidates = {}
        for top in range(2 * pad + 1):
            for left in range(2 * pad + 1):
                crop = TF.crop(padded, top, left, size, size)
                for flip, img in ((0, crop), (1, TF.hflip(crop))):
                    candidates[(top, left, flip)] = TF.pil_to_tensor(img).float()
        for v in range(n_views):
            hits = [key for key, c in candidates.items() if torch.equal(out[v * n_images + b], c)]
            assert hits, (b, v)
            counts[hits[0]] += 1
    expected = n_views * n_images / counts.size
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 100.0, chi2          # 49 degrees of freedom: P(χ² > 100) ≈ 2e-5


# ----------------------------------------------------------------------------------------------- loader glue
def test_device_views_both_paths_seeding_and_channels_last():
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    multi = B.BatchedMultiView(B.batched_weak_transform(8, "digits"), 2)
    views_of = DeviceViews(multi, "cpu", seed=3, rank=0)
    views_of.set_epoch(1)
    first = views_of(batch)
    views_of.set_epoch(1)
    again = views_of(batch)
    views_of.set_epoch(2)
    other = views_of(batch)
    assert len(first) == 2 and first[0].shape == (4, 3, 8, 8) and first[0].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    # the PIL path only moves what the loader made: a list of views, a B×V stack, or one batch
    pil = DeviceViews(None, "cpu", channels_last=True)
    views = [torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)]
    for loaded, n in ((views, 2), (torch.stack(views, 1), 2), (views[0], 1)):
        out = pil(loaded)
        assert len(out) == n and all(v.is_contiguous(memory_format=torch.channels_last) for v in out)
        assert torch.equal(out[0], views[0])


@pytest.mark.parametrize("layout", ["interleaved", "contiguous"])
def test_processes_augment_their_part_of_the_global_batch_as_one_process(layout):
    """W processes, each holding its samples of a global batch (interleaved: r, r+W, …; contiguous: a block), draw
    exactly the views one process draws for the whole batch: every crop, flip, jitter order, grayscale and blur
    parameter (MoCo-v2 pipeline, BYOL's asymmetric pair, the CIFAR pad-crop) and several views per pipeline."""
    batch = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    world = 3
    parts = ([slice(r, None, world) for r in range(world)] if layout == "interleaved"
             else [slice(2 * r, 2 * r + 2) for r in range(world)])
    for multi in (B.BatchedMultiView(B.batched_moco_v2_transform(12, "imagenet"), 3),
                  B.BatchedMultiView(list(B.batched_byol_transforms(12, "imagenet"))),
                  B.BatchedMultiView(B.batched_cifar_train_transform("cifar10", size=20, padding=4), 2)):
        one = DeviceViews(multi, "cpu", seed=7, rank=0, world_size=1)
        one.set_epoch(2)
        whole = one(batch)
        for rank, part in enumerate(parts):
            process = DeviceViews(multi, "cpu", seed=7, rank=rank, world_size=world, layout=layout)
            process.set_epoch(2)
            for mine, reference in zip(process(batch[part]), whole):
                torch.testing.assert_close(mine, reference[part], rtol=0, atol=1e-6)
        # a different part of the batch gets different draws (the sharding is not the identity)
        other = DeviceViews(multi, "cpu", seed=7, rank=1, world_size=world, layout=layout)
        other.set_epoch(2)
        assert not torch.allclose(other(batch[parts[0]])[0], whole[0][parts[0]])


def test_uint8_collate_and_device_view_loader():
    same = [(torch.zeros(3, 8, 8, dtype=torch.uint8), 1), (torch.ones(3, 8, 8, dtype=torch.uint8), 2)]
    images, labels = uint8_collate(same)
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [1, 2]
    with pytest.raises(UserError, match="--augment pil"):
        uint8_collate([same[0], (torch.zeros(3, 8, 9, dtype=torch.uint8), 0)])

    class Epoch:
        epoch = 5

    multi = B.BatchedMultiView(B.batched_weak_transform(8, "digits"), 2)
    loader = DeviceViewLoader([(images, labels)], DeviceViews(multi, "cpu", seed=0), epoch_of=lambda: Epoch.epoch)
    (v1, v2), got = next(iter(loader))
    assert len(loader) == 1 and v1.shape == (2, 3, 8, 8) and torch.equal(got, labels)
    reference = DeviceViews(multi, "cpu", seed=0)
    reference.set_epoch(5)
    assert torch.equal(reference(images)[0], v1)


def test_mixed_precision_cpu():
    """CPU --amp: bfloat16 autocast inside the context, a plain optimizer step (no GradScaler); --channels-last:
    4-D parameters and inputs in channels_last."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    precision = MixedPrecision("cpu", amp=True, channels_last=True)
    model = precision.prepare(model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = precision.input(torch.randn(2, 3, 6, 6))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with precision.autocast():
        out = model(x)
    assert out.dtype == torch.bfloat16 and not precision.scaler.is_enabled()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model[0].weight.detach().clone()
    precision.backward_step(out.float().pow(2).mean(), optimizer)
    assert not torch.equal(before, model[0].weight) and bool(torch.isfinite(model[0].weight).all())
    off = MixedPrecision("cpu")
    with off.autocast():
        assert model(x).dtype == torch.float32
    assert off.input(x) is x and off.prepare(model) is model
