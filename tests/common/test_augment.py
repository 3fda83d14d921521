"""Augmentations: constants, view wrappers, blur / solarize, pipelines, RandAugment ops, AutoAugment, Cutout."""
import random

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter

import common.augment as A
from common.augment import randaugment as RA


def _img(size=32, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _seed(s):
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


# ------------------------------------------------------------------------------------------------------- constants
def test_normalize_constants_are_each_specs_numbers():
    N = A.NORMALIZE
    assert N["imagenet"] == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert N["cifar10"] == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    assert N["cifar100"] == ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
    assert N["cifar100_lt_paco"] == N["cifar10"]
    assert N["stl10_cacr"].mean[0] == 0.44087801806139126 and N["stl10_cacr"].std[2] == 0.26866836876860795
    assert N["stl10_ascl"] == ((0.4408, 0.4279, 0.3867), (0.2682, 0.2610, 0.2686))
    assert N["tinyimagenet_ascl"] == ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))
    assert N["inat2018"] == ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192))
    mean, std = N["digits"]
    assert len(mean) == len(std) == 3 and 0 < mean[0] < 1 and 0 < std[0] < 1
    with pytest.raises(ValueError, match="known"):
        A.get_normalize_stats("mnist")
    t = A.normalize_transform("cifar10")
    assert tuple(t.mean) == N["cifar10"].mean


# --------------------------------------------------------------------------------------------------------- wrappers
def test_two_crops_and_multi_view():
    img = _img()
    t = A.simclr_transform(32, "cifar10")
    _seed(0)
    v = A.TwoCropsTransform(t)(img)
    assert isinstance(v, list) and len(v) == 2 and v[0].shape == (3, 32, 32) and not torch.equal(v[0], v[1])
    q, k = A.TwoCropsTransform(A.test_transform("cifar10"), lambda x: "key")(img)
    assert q.shape == (3, 32, 32) and k == "key"
    assert len(A.MultiViewTransform(t, 6)(img)) == 6
    assert len(A.MultiViewTransform((t, 3))(img)) == 3
    mixed = A.MultiViewTransform([(A.weak_transform(32, "cifar10"), 2), (A.weak_transform(16, "cifar10"), 3)])(img)
    assert [x.shape[-1] for x in mixed] == [32, 32, 16, 16, 16]
    with pytest.raises(TypeError):
        A.MultiViewTransform(t)


def test_gaussian_blur_radius_is_sigma_and_seeded():
    img = _img()
    assert np.array_equal(np.asarray(A.GaussianBlur((1.3, 1.3))(img)),
                          np.asarray(img.filter(ImageFilter.GaussianBlur(radius=1.3))))
    random.seed(5)
    a = np.asarray(A.GaussianBlur()(img))
    random.seed(5)
    sigma = random.uniform(0.1, 2.0)
    assert np.array_equal(a, np.asarray(img.filter(ImageFilter.GaussianBlur(radius=sigma))))


def test_solarize_threshold():
    arr = np.array([[[0, 127, 128]], [[200, 255, 10]]], dtype=np.uint8)
    out = np.asarray(A.Solarize(128)(Image.fromarray(arr)))
    assert out.tolist() == [[[0, 127, 127]], [[55, 0, 10]]]


@pytest.mark.parametrize("build,size", [
    (lambda: A.moco_v1_transform(32, "cifar10"), 32),
    (lambda: A.moco_v2_transform(24, "imagenet"), 24),
    (lambda: A.simclr_transform(32, "cifar10", blur=3), 32),
    (lambda: A.simclr_transform(32, "digits", scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1, blur=None),
     32),
    (lambda: A.weak_transform(16, "stl10_ascl"), 16),
    (lambda: A.linear_train_transform(32, "cifar10", scale=(0.2, 1.0)), 32),
    (lambda: A.linear_val_transform(32, 36, "imagenet"), 32),
    (lambda: A.cifar_train_transform("cifar100"), 32),
    (lambda: A.byol_transforms(24, "imagenet")[0], 24),
    (lambda: A.byol_transforms(24, "imagenet", scale=(0.2, 1.0))[1], 24),
])
def test_pipelines_shape_and_determinism(build, size):
    img = _img(40, seed=1)
    t = build()
    _seed(7)
    a = t(img)
    _seed(7)
    b = t(img)
    assert a.shape == (3, size, size) and a.dtype == torch.float32 and torch.equal(a, b)


def test_test_transform_is_normalised_tensor_only():
    img = _img(96)
    x = A.test_transform("stl10_cacr")(img)
    mean, std = A.NORMALIZE["stl10_cacr"]
    ref = (T.ToTensor()(img) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert x.shape == (3, 96, 96) and torch.allclose(x, ref, atol=1e-6)


# ------------------------------------------------------------------------------------------------------ RandAugment
def _op(name, magnitude, **hp):
    hparams = dict(A.paco_randaugment_hparams(), interpolation=Image.Resampling.BILINEAR, **hp)
    return RA.AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=hparams)


def test_rand_augment_config_and_pool():
    hp = A.paco_randaugment_hparams()
    assert hp == {"translate_const": 100, "img_mean": (124, 116, 104)}
    ra = A.rand_augment_transform("rand-n3-m9-mstd0.5", hp)
    assert ra.num_layers == 3 and hp["magnitude_std"] == 0.5
    assert [op.name for op in ra.ops] == A.RAND_TRANSFORMS and len(ra.ops) == 15
    assert all(op.magnitude == 9 and op.prob == 0.5 and op.magnitude_std == 0.5 for op in ra.ops)
    with pytest.raises(ValueError):
        A.rand_augment_transform("auto-n2-m9")


def test_rand_augment_posterize_bits():
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    img = Image.fromarray(np.stack([arr] * 3, axis=-1))
    for mag, bits in [(10, 4), (7.6, 3), (5, 2), (2.5, 1), (1, 0), (12, 4)]:    # 12 is clipped to 10
        out = np.asarray(_op("Posterize", mag)(img))[..., 0]
        mask = (0xFF << (8 - bits)) & 0xFF
        assert np.array_equal(out, arr & mask), (mag, bits)
    assert np.asarray(_op("Posterize", 0)(img)).max() == 0                       # 0 bits → black


def test_rand_augment_solarize_and_solarize_add():
    arr = np.array([[0, 50, 127, 128, 200, 255]], dtype=np.uint8)
    img = Image.fromarray(np.stack([arr] * 3, axis=-1))
    out = np.asarray(_op("Solarize", 5)(img))[..., 0]                           # threshold int(25.6·5) = 128
    assert out.tolist() == [[0, 50, 127, 127, 55, 0]]
    out = np.asarray(_op("Solarize", 10)(img))[..., 0]                          # threshold 256 → unchanged
    assert out.tolist() == arr.tolist()
    out = np.asarray(_op("SolarizeAdd", 10)(img))[..., 0]                       # +110 below 128
    assert out.tolist() == [[110, 160, 237, 128, 200, 255]]
    out = np.asarray(_op("SolarizeAdd", 3)(img))[..., 0]                        # +33
    assert out.tolist() == [[33, 83, 160, 128, 200, 255]]


def test_rand_augment_enhance_and_geometry_levels():
    img = _img(32, seed=3)
    assert np.array_equal(np.asarray(_op("Brightness", 5)(img)), np.asarray(img))   # factor 0.18·5 + 0.1 = 1.0
    from PIL import ImageEnhance
    assert np.array_equal(np.asarray(_op("Contrast", 10)(img)), np.asarray(ImageEnhance.Contrast(img).enhance(1.9)))
    fill = (124, 116, 104)
    random.seed(0)
    out = np.asarray(_op("Rotate", 10)(img))
    candidates = [np.asarray(img.rotate(d, resample=Image.Resampling.BILINEAR, fillcolor=fill)) for d in (30, -30)]
    assert any(np.array_equal(out, c) for c in candidates)
    random.seed(0)
    out = np.asarray(_op("TranslateXRel", 10)(img))                             # ±0.45 · width pixels
    candidates = [np.asarray(img.transform(img.size, Image.Transform.AFFINE, (1, 0, s * 0.45 * 32, 0, 1, 0),
                                           resample=Image.Resampling.BILINEAR, fillcolor=fill)) for s in (1, -1)]
    assert any(np.array_equal(out, c) for c in candidates)
    random.seed(0)
    out = np.asarray(_op("ShearY", 5)(img))                                     # ±0.15 shear factor
    candidates = [np.asarray(img.transform(img.size, Image.Transform.AFFINE, (1, 0, 0, s * 0.15, 1, 0),
                                           resample=Image.Resampling.BILINEAR, fillcolor=fill)) for s in (1, -1)]
    assert any(np.array_equal(out, c) for c in candidates)


def test_rand_augment_probability_noise_and_determinism():
    img = _img(16)
    op = RA.AugmentOp("Invert", prob=0.5, magnitude=10, hparams=A.paco_randaugment_hparams())
    random.seed(1)
    applied = sum(not np.array_equal(np.asarray(op(img)), np.asarray(img)) for _ in range(400))
    assert 160 < applied < 240
    # magnitude noise N(m, 0.5) clipped to [0, 10]: m = 10 sometimes posterizes to 3 bits, never 5+
    hp = dict(A.paco_randaugment_hparams(), magnitude_std=0.5)
    post = RA.AugmentOp("Posterize", prob=1.0, magnitude=10, hparams=hp)
    arr = np.full((2, 2, 3), 255, np.uint8)
    random.seed(2)
    vals = {int(np.asarray(post(Image.fromarray(arr)))[0, 0, 0]) for _ in range(200)}
    assert vals == {0xF0, 0xE0}
    ra = A.rand_augment_transform("rand-n2-m10-mstd0.5", A.paco_randaugment_hparams())
    _seed(4)
    a = [np.asarray(ra(_img(24, seed=i))) for i in range(10)]
    _seed(4)
    b = [np.asarray(ra(_img(24, seed=i))) for i in range(10)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and a[0].shape == (24, 24, 3)


# ------------------------------------------------------------------------------------------ AutoAugment and Cutout
def test_cifar10_policy_bins_and_rules():
    policy = A.CIFAR10Policy()
    assert len(policy.policies) == 25
    assert A.SubPolicy.RANGES["posterize"].tolist() == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]
    assert A.SubPolicy.RANGES["solarize"][0] == 256 and A.SubPolicy.RANGES["rotate"][2] == pytest.approx(30 * 2 / 9)
    img = _img(32, seed=5)
    # rotate sign is not randomised: (0.7 Rotate 2) with p forced to 1 gives the same image every time
    sp = A.SubPolicy(1.0, "rotate", 2, 0.0, "invert", 0)
    outs = {np.asarray(sp(img)).tobytes() for _ in range(5)}
    assert len(outs) == 1
    # solarize bin 0 (threshold 256) leaves the image unchanged
    assert np.array_equal(np.asarray(A.SubPolicy(1.0, "solarize", 0, 0.0, "invert", 0)(img)), np.asarray(img))
    pipeline = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), A.CIFAR10Policy(), T.ToTensor(),
                          A.Cutout(1, 16), A.normalize_transform("cifar100_lt_paco")])
    _seed(3)
    x = torch.stack([pipeline(_img(32, seed=i)) for i in range(20)])
    _seed(3)
    y = torch.stack([pipeline(_img(32, seed=i)) for i in range(20)])
    assert x.shape == (20, 3, 32, 32) and torch.equal(x, y)


def test_cutout_box_clipped_at_borders():
    for seed in range(20):
        np.random.seed(seed)
        y, x = np.random.randint(32), np.random.randint(24)
        np.random.seed(seed)
        out = A.Cutout(1, 16)(torch.ones(3, 32, 24))
        expected = torch.ones(32, 24)
        expected[max(0, y - 8):min(32, y + 8), max(0, x - 8):min(24, x + 8)] = 0
        assert torch.equal(out, expected.expand(3, 32, 24))
        assert (out[0] == 0).sum() <= 256
