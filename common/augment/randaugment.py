"""timm-0.3-style RandAugment on PIL images (PaCo's ``randaugment.py``; spec paco.md §d.3).

``rand_augment_transform('rand-n{n}-m{m}-mstd0.5', hparams)``: per image, draw n ops uniformly **with replacement**
from 15 (NumPy RNG); each is applied with probability 0.5 (Python ``random``); its magnitude is drawn per application
from N(m, mstd) and clipped to [0, 10]. Level → argument as in timm 0.3 (``_MAX_LEVEL`` = 10):
Rotate ±3·mag°, Shear ±0.03·mag, TranslateRel ±0.045·mag·size, enhance factors 0.18·mag + 0.1, Solarize threshold
int(25.6·mag), SolarizeAdd int(11·mag) below 128, Posterize keeps int(0.4·mag) bits (TPU variant; ≥ 8 unchanged).
Geometric ops fill with ``hparams['img_mean']`` (PaCo: ImageNet mean ×255 rounded = (124, 116, 104)) and resample
with ``hparams['interpolation']`` or, if absent, bilinear / bicubic chosen at random per call.
torchvision's ``RandAugment`` differs (op set, no per-op probability, no magnitude noise) and is not used.
"""
from __future__ import annotations

import random
import re

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

_FILL = (128, 128, 128)
_MAX_LEVEL = 10.0
_HPARAMS_DEFAULT = dict(translate_const=250, img_mean=_FILL)
_RANDOM_INTERPOLATION = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)

IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)


def paco_randaugment_hparams(size: int = 224, rgb_mean=IMAGENET_RGB_MEAN) -> dict:
    """The hparams PaCo passes: translate_const = int(size·0.45), img_mean = round(255·mean) per channel."""
    return dict(translate_const=int(size * 0.45), img_mean=tuple(min(255, round(255 * x)) for x in rgb_mean))


def _interpolation(kwargs):
    interpolation = kwargs.pop("resample", Image.Resampling.BILINEAR)
    if isinstance(interpolation, (list, tuple)):
        return random.choice(interpolation)
    return interpolation


def _check_args_tf(kwargs):
    kwargs["resample"] = _interpolation(kwargs)


def shear_x(img, factor, **kwargs):
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.Transform.AFFINE, (1, factor, 0, 0, 1, 0), **kwargs)


def shear_y(img, factor, **kwargs):
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, 0, factor, 1, 0), **kwargs)


def translate_x_rel(img, pct, **kwargs):
    pixels = pct * img.size[0]
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, pixels, 0, 1, 0), **kwargs)


def translate_y_rel(img, pct, **kwargs):
    pixels = pct * img.size[1]
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, pixels), **kwargs)


def translate_x_abs(img, pixels, **kwargs):
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, pixels, 0, 1, 0), **kwargs)


def translate_y_abs(img, pixels, **kwargs):
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, pixels), **kwargs)


def rotate(img, degrees, **kwargs):
    _check_args_tf(kwargs)
    return img.rotate(degrees, **kwargs)


def auto_contrast(img, **__):
    return ImageOps.autocontrast(img)


def invert(img, **__):
    return ImageOps.invert(img)


def equalize(img, **__):
    return ImageOps.equalize(img)


def solarize(img, thresh, **__):
    return ImageOps.solarize(img, thresh)


def solarize_add(img, add, thresh=128, **__):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    if img.mode in ("L", "RGB"):
        if img.mode == "RGB":
            lut = lut + lut + lut
        return img.point(lut)
    return img


def posterize(img, bits_to_keep, **__):
    """Keep the ``bits_to_keep`` most significant bits. Pillow >= 10 refuses 0 bits, which the original (old Pillow)
    turned into a black image; the same look-up table is applied here for every bit count."""
    if bits_to_keep >= 8:
        return img
    mask = ~(2 ** (8 - int(bits_to_keep)) - 1) & 0xFF
    lut = [i & mask for i in range(256)]
    return img.point(lut * len(img.getbands())) if img.mode in ("L", "RGB") else ImageOps.posterize(img, bits_to_keep)


def contrast(img, factor, **__):
    return ImageEnhance.Contrast(img).enhance(factor)


def color(img, factor, **__):
    return ImageEnhance.Color(img).enhance(factor)


def brightness(img, factor, **__):
    return ImageEnhance.Brightness(img).enhance(factor)


def sharpness(img, factor, **__):
    return ImageEnhance.Sharpness(img).enhance(factor)


def _randomly_negate(v):
    """With 50 % probability negate the value (Python ``random``)."""
    return -v if random.random() > 0.5 else v


def _rotate_level_to_arg(level, _hparams):
    return _randomly_negate((level / _MAX_LEVEL) * 30.0),


def _enhance_level_to_arg(level, _hparams):
    return (level / _MAX_LEVEL) * 1.8 + 0.1,


def _shear_level_to_arg(level, _hparams):
    return _randomly_negate((level / _MAX_LEVEL) * 0.3),


def _translate_abs_level_to_arg(level, hparams):
    return _randomly_negate((level / _MAX_LEVEL) * float(hparams["translate_const"])),


def _translate_rel_level_to_arg(level, hparams):
    return _randomly_negate((level / _MAX_LEVEL) * hparams.get("translate_pct", 0.45)),


def _posterize_level_to_arg(level, _hparams):
    # TPU EfficientNet variant: keep 0..4 most significant bits, severity decreases with level
    return int((level / _MAX_LEVEL) * 4),


def _solarize_level_to_arg(level, _hparams):
    return int((level / _MAX_LEVEL) * 256),


def _solarize_add_level_to_arg(level, _hparams):
    return int((level / _MAX_LEVEL) * 110),


LEVEL_TO_ARG = {
    "AutoContrast": None, "Equalize": None, "Invert": None,
    "Rotate": _rotate_level_to_arg,
    "Posterize": _posterize_level_to_arg,
    "Solarize": _solarize_level_to_arg,
    "SolarizeAdd": _solarize_add_level_to_arg,
    "Color": _enhance_level_to_arg, "Contrast": _enhance_level_to_arg,
    "Brightness": _enhance_level_to_arg, "Sharpness": _enhance_level_to_arg,
    "ShearX": _shear_level_to_arg, "ShearY": _shear_level_to_arg,
    "TranslateX": _translate_abs_level_to_arg, "TranslateY": _translate_abs_level_to_arg,
    "TranslateXRel": _translate_rel_level_to_arg, "TranslateYRel": _translate_rel_level_to_arg,
}

NAME_TO_OP = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "Posterize": posterize, "Solarize": solarize, "SolarizeAdd": solarize_add,
    "Color": color, "Contrast": contrast, "Brightness": brightness, "Sharpness": sharpness,
    "ShearX": shear_x, "ShearY": shear_y, "TranslateX": translate_x_abs, "TranslateY": translate_y_abs,
    "TranslateXRel": translate_x_rel, "TranslateYRel": translate_y_rel,
}

RAND_TRANSFORMS = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
]


class AugmentOp:
    """One op with application probability ``prob`` and (noisy) magnitude."""

    def __init__(self, name: str, prob: float = 0.5, magnitude: float = 10, hparams: dict | None = None):
        hparams = hparams or _HPARAMS_DEFAULT
        self.name = name
        self.aug_fn = NAME_TO_OP[name]
        self.level_fn = LEVEL_TO_ARG[name]
        self.prob = prob
        self.magnitude = magnitude
        self.hparams = hparams.copy()
        self.kwargs = dict(fillcolor=hparams.get("img_mean", _FILL),
                           resample=hparams.get("interpolation", _RANDOM_INTERPOLATION))
        self.magnitude_std = self.hparams.get("magnitude_std", 0)

    def __call__(self, img):
        if self.prob < 1.0 and random.random() > self.prob:
            return img
        magnitude = self.magnitude
        if self.magnitude_std and self.magnitude_std > 0:
            magnitude = random.gauss(magnitude, self.magnitude_std)
        magnitude = min(_MAX_LEVEL, max(0, magnitude))
        level_args = self.level_fn(magnitude, self.hparams) if self.level_fn is not None else tuple()
        return self.aug_fn(img, *level_args, **dict(self.kwargs))

    def __repr__(self) -> str:
        return f"AugmentOp({self.name}, p={self.prob}, m={self.magnitude}, mstd={self.magnitude_std})"


def rand_augment_ops(magnitude: float = 10, hparams: dict | None = None, transforms=None) -> list[AugmentOp]:
    hparams = hparams or _HPARAMS_DEFAULT
    return [AugmentOp(name, prob=0.5, magnitude=magnitude, hparams=hparams) for name in transforms or RAND_TRANSFORMS]


class RandAugment:
    def __init__(self, ops, num_layers: int = 2, choice_weights=None):
        self.ops = ops
        self.num_layers = num_layers
        self.choice_weights = choice_weights

    def __call__(self, img):
        ops = np.random.choice(self.ops, self.num_layers, replace=self.choice_weights is None, p=self.choice_weights)
        for op in ops:
            img = op(img)
        return img

    def __repr__(self) -> str:
        return f"RandAugment(n={self.num_layers}, ops={self.ops})"


def rand_augment_transform(config_str: str, hparams: dict | None = None) -> RandAugment:
    """Parse ``rand-n{n}-m{m}[-mstd{s}]`` (timm 0.3; defaults n 2, m 10) into a ``RandAugment``.

    ``mstd`` is stored into ``hparams['magnitude_std']`` (``setdefault``, as timm does, so the caller's dict is
    updated). Magnitudes above 10 behave like 10 (clipped per application; PaCo quirk 17).
    """
    hparams = {} if hparams is None else hparams
    magnitude, num_layers = _MAX_LEVEL, 2
    config = config_str.split("-")
    if config[0] != "rand":
        raise ValueError(f"RandAugment config must start with 'rand', got {config_str!r}")
    for c in config[1:]:
        cs = re.split(r"(\d.*)", c)
        if len(cs) < 2:
            continue
        key, val = cs[:2]
        if key == "mstd":
            hparams.setdefault("magnitude_std", float(val))
        elif key == "m":
            magnitude = int(val)
        elif key == "n":
            num_layers = int(val)
        else:
            raise ValueError(f"unknown RandAugment config section {c!r} in {config_str!r}")
    return RandAugment(rand_augment_ops(magnitude=magnitude, hparams=hparams), num_layers)
