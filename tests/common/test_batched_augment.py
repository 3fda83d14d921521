"""Batched tensor augmentations (common.augment.batched): shapes, determinism, op-by-op agreement with the PIL /
torchvision ops, distribution agreement with the per-image pipelines, and the speed-up over them."""
import math
import random
import time

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter, ImageOps

import common.augment as A
from common.augment import batched as BA
from common.data import build_dataset


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine a second OpenMP thread mostly waits for a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def colour_digits():
    """Digits tinted with random colours, offsets and noise: real image structure, every channel / hue in use."""
    data = build_dataset("digits", None, "train").data[:256].astype(np.float32)
    rng = np.random.default_rng(0)
    data = data * rng.uniform(0.2, 1.0, (len(data), 1, 1, 3)) + rng.uniform(0, 80, (len(data), 1, 1, 3))
    data = np.clip(data + rng.normal(0, 20, data.shape), 0, 255).astype(np.uint8)
    return data                                                          # N×32×32×3 uint8


def _batch(arr):
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _tensors(images):
    return torch.stack([TF.pil_to_tensor(i) for i in images]).float() / 255


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------- shapes / determinism
@pytest.mark.parametrize("resample", ["pil", "grid_sample"])
def test_builders_shapes_dtype_range(colour_digits, resample):
    x = _batch(colour_digits[:16])
    cases = [
        (BA.batched_simclr_views(32, "cifar10", resample=resample), 2, 32),
        (BA.batched_cacr_views(resample=resample), 5, 32),
        (BA.batched_cacr_views(64, "stl10_cacr", (0.08, 1.0), resample=resample), 5, 64),
        (BA.batched_attentionce_views(resample=resample), 6, 32),
        (BA.BatchedMultiView(list(BA.batched_byol_transforms(24, resample=resample))), 2, 24),
        (BA.BatchedMultiView(BA.batched_moco_v2_transform(16, resample=resample), 2), 2, 16),
        (BA.BatchedMultiView(BA.batched_moco_v1_transform(16, resample=resample), 2), 2, 16),
        (BA.BatchedMultiView([(BA.batched_weak_transform(32, "cifar10"), 2),
                              (BA.batched_weak_transform(16, "cifar10"), 3)]), 5, None),
    ]
    for views, n_views, size in cases:
        out = views(x, _gen(0))
        assert isinstance(out, list) and len(out) == n_views == len(views)
        for v in out:
            assert v.dtype == torch.float32 and v.device == x.device and torch.isfinite(v).all()
            if size is not None:
                assert v.shape == (16, 3, size, size)
    assert [v.shape[-1] for v in cases[-1][0](x, _gen(0))] == [32, 32, 16, 16, 16]
    # Without normalisation every op keeps the image in [0, 1]; normalised output = (x − mean) / std.
    raw = BA.BatchedAugment(BA.RandomResizedCropFlip(32, resample=resample),
                            [BA.ColorJitter(0.4, 0.4, 0.4, 0.4, p=0.8), BA.RandomGrayscale(0.2),
                             BA.GaussianBlur(p=0.5), BA.Solarize(128, p=0.2)], normalize=None)
    y = raw(x, _gen(1))
    assert y.shape == (16, 3, 32, 32) and y.min() >= 0 and y.max() <= 1 + 1e-6
    norm = BA.Normalize("cifar10")
    mean, std = A.NORMALIZE["cifar10"]
    assert torch.allclose(norm(y), (y - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    with pytest.raises(ValueError, match="B×3×H×W"):
        raw(x[:, :1])
    with pytest.raises(TypeError):
        BA.BatchedMultiView(raw)
    with pytest.raises(ValueError, match="generator is on"):
        raw(x.to("meta"), _gen(0))


def test_seeded_generator_is_deterministic_and_views_are_independent(colour_digits):
    x = _batch(colour_digits[:32])
    views = BA.batched_attentionce_views()
    a, b, c = views(x, _gen(7)), views(x, _gen(7)), views(x, _gen(8))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    for i in range(len(a)):                     # every view has its own crop / jitter draws
        for j in range(i + 1, len(a)):
            assert not torch.allclose(a[i], a[j])
    torch.manual_seed(3)                        # generator=None draws from the global RNG, seeded as usual
    d = views(x)
    torch.manual_seed(3)
    assert torch.equal(d[2], views(x)[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_the_batch_device(colour_digits):
    x = _batch(colour_digits[:64]).cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    views = BA.batched_attentionce_views()(x, generator)
    assert all(v.device.type == "cuda" and v.shape == (64, 3, 32, 32) for v in views)
    cpu = BA.batched_attentionce_views()(x.cpu(), _gen(0))
    assert abs(float(torch.stack(views).mean()) - float(torch.stack(cpu).mean())) < 0.1


# ----------------------------------------------------------------------------------------------- op by op vs PIL
def test_crop_boxes_follow_torchvision_law():
    n = 3000
    for (h, w), scale in [((32, 32), (0.08, 1.0)), ((32, 32), (0.2, 1.0)), ((24, 64), (0.5, 1.0))]:
        boxes = BA.sample_crop_boxes(n, h, w, scale, generator=_gen(0))
        top, left, bh, bw = boxes.T.double()
        assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
        torch.manual_seed(0)
        img = torch.zeros(3, h, w)
        ref = torch.tensor([T.RandomResizedCrop.get_params(img, list(scale), [3 / 4, 4 / 3])
                            for _ in range(n)]).double()
        for ours, theirs in [(bh * bw / (h * w), ref[:, 2] * ref[:, 3] / (h * w)),
                             (torch.log(bw / bh), torch.log(ref[:, 3] / ref[:, 2])),
                             ((left + bw / 2) / w, (ref[:, 1] + ref[:, 3] / 2) / w)]:
            se = math.sqrt(theirs.var() / n * 2)
            assert abs(ours.mean() - theirs.mean()) < 4 * se + 1e-3, (h, w, scale)
            assert abs(ours.std() - theirs.std()) < 0.1 * theirs.std() + 1e-3, (h, w, scale)
    # The central fallback when no attempt fits (a 4:1 image, ratio 3/4–4/3, whole-image scale).
    fallback = BA.sample_crop_boxes(50, 16, 64, (1.0, 1.0), generator=_gen(0))
    assert (fallback == torch.tensor([0, 21, 16, 21])).all()


def test_resized_crop_matches_pil_bilinear(colour_digits):
    pil = [Image.fromarray(a) for a in colour_digits[:8]]
    x = BA._to_float(_batch(colour_digits[:8]))
    boxes = torch.tensor([[3, 5, 20, 17], [0, 0, 32, 32], [10, 2, 8, 30], [1, 1, 31, 12]] * 2)
    flip = torch.tensor([False, True] * 4)
    ref = _tensors([TF.hflip(TF.resized_crop(p, *b.tolist(), [32, 32])) if f else
                    TF.resized_crop(p, *b.tolist(), [32, 32]) for p, b, f in zip(pil, boxes, flip)])
    out = BA.resized_crop(x, boxes, 32, flip)
    assert (out - ref).abs().max() * 255 <= 1.01            # PIL rounds to uint8 (twice)
    grid = BA.resized_crop(x, boxes, 32, flip, resample="grid_sample")
    assert (grid - ref).abs().max() * 255 <= 1.01            # up-scaling: grid_sample is the same bilinear
    # Down-scaling: Pillow's antialiased filter (support widened by the scale factor).
    big = np.stack([np.asarray(Image.fromarray(a).resize((96, 96))) for a in colour_digits[:4]])
    boxes = torch.tensor([[0, 0, 96, 96], [5, 10, 80, 70], [20, 3, 50, 90], [0, 0, 64, 64]])
    ref = _tensors([TF.resized_crop(Image.fromarray(a), *b.tolist(), [40, 40]) for a, b in zip(big, boxes)])
    out = BA.resized_crop(BA._to_float(_batch(big)), boxes, 40)
    assert (out - ref).abs().max() * 255 <= 1.01


def test_color_ops_match_torchvision_on_pil(colour_digits):
    pil = [Image.fromarray(a) for a in colour_digits[:48]]
    x = BA._to_float(_batch(colour_digits[:48]))
    g = _gen(1)
    factor = 0.6 + 0.8 * torch.rand(48, generator=g)
    shift = 0.8 * torch.rand(48, generator=g) - 0.4
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for k, fn in enumerate(fns):
        order = torch.tensor([[k] + [j for j in range(4) if j != k]] * 48)
        args = [None] * 4
        args[k] = shift if k == 3 else factor
        out = BA.color_jitter(x.clone(), order, *args)
        ref = _tensors([fn(p, float(a)) for p, a in zip(pil, args[k])])
        diff = (out - ref).abs() * 255
        if k < 3:
            assert diff.max() <= 1.5, fn.__name__          # blends: uint8 rounding only
        else:
            assert diff.mean() <= 1.0 and diff.max() <= 20  # PIL's hue is 8-bit HSV
    # A per-sample order is honoured: saturation → brightness → hue → contrast for every sample.
    order = torch.tensor([[2, 0, 3, 1]] * 48)
    b, c, s = factor, factor.flip(0), factor.roll(3)
    out = BA.color_jitter(x.clone(), order, b, c, s, shift)

    def chain(p, i):
        p = TF.adjust_brightness(TF.adjust_saturation(p, float(s[i])), float(b[i]))
        return TF.adjust_contrast(TF.adjust_hue(p, float(shift[i])), float(c[i]))

    diff = (out - _tensors([chain(p, i) for i, p in enumerate(pil)])).abs() * 255
    assert diff.mean() <= 2.0
    swapped = BA.color_jitter(x.clone(), torch.tensor([[1, 3, 0, 2]] * 48), b, c, s, shift)
    assert ((swapped - out).abs() * 255).mean() > 2 * diff.mean()      # the order matters and is the one asked
    # Grey and solarize.
    out = BA.RandomGrayscale(1.0)(x)
    assert ((out - _tensors([p.convert("L").convert("RGB") for p in pil])).abs().max() * 255) <= 0.51
    out = BA.Solarize(128, 1.0)(x)
    assert ((out - _tensors([ImageOps.solarize(p, 128) for p in pil])).abs().max() * 255) <= 1e-3


def test_blur_matches_pil_and_torchvision(colour_digits):
    pil = [Image.fromarray(a) for a in colour_digits[:32]]
    x = BA._to_float(_batch(colour_digits[:32]))
    sigma = torch.linspace(0.1, 2.0, 32)
    out = BA.separable_blur(x, BA.pil_box_kernels(sigma, 3, 2.0), "replicate", passes=3)
    ref = _tensors([p.filter(ImageFilter.GaussianBlur(radius=float(s))) for p, s in zip(pil, sigma)])
    diff = (out - ref).abs() * 255
    assert diff.max() <= 3.5 and diff.mean() <= 0.6                  # Pillow rounds to uint8 after each of 6 passes
    out = BA.separable_blur(x, BA._gaussian_kernels(sigma, 3), "reflect")
    ref = _tensors([TF.gaussian_blur(p, 3, float(s)) for p, s in zip(pil, sigma)])
    assert (out - ref).abs().max() * 255 <= 0.51
    # Large images take the depth-wise convolution path: same result as the banded matrices.
    big = torch.rand(2, 3, 136, 136, generator=_gen(0))
    kernels = BA.pil_box_kernels(torch.tensor([0.3, 1.9]), 3, 2.0)
    small = BA.separable_blur(big[..., :128, :128], kernels, "replicate", 3)
    conv = BA.separable_blur(big, kernels, "replicate", 3)
    assert torch.allclose(conv[..., 12:116, 12:116], small[..., 12:116, 12:116], atol=1e-5)
    assert torch.allclose(BA.pil_blur_kernels(torch.tensor([1.0])).sum(), torch.tensor(1.0))
    # p = 0 → unchanged.
    assert torch.allclose(BA.GaussianBlur(p=0.0)(x, _gen(0)), x, atol=1e-6)


# ----------------------------------------------------------------------------------------------- distributions
def _image_statistics(v: torch.Tensor, normalize) -> dict:
    mean, std = A.NORMALIZE[normalize]
    x = v * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)   # back to [0, 1]
    chroma = x.amax(1) - x.amin(1)
    return {"brightness": x.mean((1, 2, 3)), "contrast": x.std((1, 2, 3)), "chroma": chroma.mean((1, 2)),
            "grey": (chroma.amax((1, 2)) < 2 / 255).double(),
            "sharpness": (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))}


def _ks(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov–Smirnov statistic."""
    a, b = np.sort(a.double().numpy()), np.sort(b.double().numpy())
    both = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, both, "right") / len(a) - np.searchsorted(b, both, "right") / len(b)).max())


def _ks_critical(n: int, m: int) -> float:
    return 1.95 * math.sqrt((n + m) / (n * m))           # α = 0.001


@pytest.mark.parametrize("name", ["simclr", "cacr", "attentionce"])
def test_batched_pipelines_match_per_image_distributions(colour_digits, name):
    """Per-image statistics (brightness, contrast, colourfulness, edge strength; fraction of grey views) of 1,024 views
    from the per-image PIL pipeline and from the batched one: same distributions (two-sample KS at α = 0.001, grey
    fraction within 4 binomial standard errors). With these sizes the test fails without the blur, with grey p 0.3
    instead of 0.2 or with brightness 0.6 instead of 0.4 (checked while writing it)."""
    norm = "cifar10"
    if name == "simclr":
        pil_t, batched = A.simclr_transform(32, norm), BA.batched_simclr_transform(32, norm)
    elif name == "cacr":
        pil_t = A.simclr_transform(32, norm, scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0, blur=None)
        batched = BA.batched_cacr_views(32, norm).groups[0][0]
    else:
        pil_t, batched = A.simclr_transform(32, norm, blur=3), BA.batched_attentionce_views().groups[0][0]
    views = 4
    random.seed(0)
    torch.manual_seed(0)
    pil_views = torch.stack([pil_t(Image.fromarray(a)) for a in colour_digits for _ in range(views)])
    ours = batched(_batch(colour_digits), _gen(0), n_views=views)
    ref_stats, our_stats = _image_statistics(pil_views, norm), _image_statistics(ours, norm)
    n = len(pil_views)
    for key in ("brightness", "contrast", "chroma", "sharpness"):
        assert _ks(ref_stats[key], our_stats[key]) < _ks_critical(n, n), (name, key)
    p_ref, p_ours = float(ref_stats["grey"].mean()), float(our_stats["grey"].mean())
    assert abs(p_ref - p_ours) < 4 * math.sqrt(0.2 * 0.8 * 2 / n), (name, p_ref, p_ours)


def test_color_jitter_factor_laws_match_torchvision(colour_digits):
    """Per-sample factor laws of RandomApply([ColorJitter], 0.8): brightness / contrast / saturation each scale a
    measurable quantity by the factor (images kept away from clipping), compared by KS with torchvision on PIL."""
    images = (colour_digits[:256] // 2 + 40).astype(np.uint8)          # 40–167: no clipping for factors ≤ 1.4
    pil = [Image.fromarray(a) for a in images]
    x = BA._to_float(_batch(images)).repeat(4, 1, 1, 1)
    measures = {
        "brightness": lambda v: v.mean((1, 2, 3)),
        "contrast": lambda v: BA._luma(v).std((1, 2, 3)),
        "saturation": lambda v: (v - BA._luma(v)).abs().mean((1, 2, 3)),
    }
    for name, measure in measures.items():
        kwargs = {name: 0.4}
        random.seed(0)
        torch.manual_seed(0)
        ref_t = T.RandomApply([T.ColorJitter(**kwargs)], p=0.8)
        ref = _tensors([ref_t(p) for p in pil for _ in range(4)])
        ref_base = _tensors([p for p in pil for _ in range(4)])
        ours = BA.ColorJitter(**kwargs, p=0.8)(x.clone(), _gen(0))
        ratio_ref = measure(ref) / measure(ref_base)
        ratio_ours = measure(ours) / measure(x)
        assert _ks(ratio_ref, ratio_ours) < _ks_critical(len(x), len(x)), name
        assert abs(float((ratio_ours - 1).abs().lt(1e-4).double().mean()) - 0.2) < 0.06, name    # p = 0.8
        assert 0.59 < float(ratio_ours.min()) and float(ratio_ours.max()) < 1.41, name


# ----------------------------------------------------------------------------------------------- speed
def test_speedup_over_per_image_pipeline(colour_digits):
    """Two SimCLR views of 32×32 images: per-image PIL pipeline (+ stacking, as the collate does) vs the batched
    pipeline, both on one thread (each scales to 2 cores: 2 DataLoader workers / 2 intra-op threads)."""
    images = colour_digits
    pil_images = [Image.fromarray(a) for a in images]
    per_image = A.TwoCropsTransform(A.simclr_transform(32, "cifar10"))
    batched = BA.batched_simclr_views(32, "cifar10")
    x = _batch(images)
    g = _gen(0)

    def run_pil():
        views = [per_image(p) for p in pil_images]
        return [torch.stack([v[i] for v in views]) for i in range(2)]

    batched(x, g)
    t_pil, t_ours = [], []
    for _ in range(3):                          # interleaved, best of 3: robust to the shared machine's load
        t0 = time.perf_counter()
        run_pil()
        t_pil.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        batched(x, g)
        t_ours.append(time.perf_counter() - t0)
    speedup = min(t_pil) / min(t_ours)
    print(f"\nSimCLR 2 views, {len(images)} images 32x32, 1 thread: "
          f"per-image PIL {len(images) / min(t_pil):.0f} img/s, batched {len(images) / min(t_ours):.0f} img/s, "
          f"speed-up {speedup:.1f}x")
    assert speedup >= 1.5
