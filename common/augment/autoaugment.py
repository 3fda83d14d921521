"""AutoAugment CIFAR-10 policy and Cutout as in PaCo's ``LT/autoaug.py`` (spec paco.md §d.3).

``CIFAR10Policy``: one of the 25 published sub-policies chosen uniformly (Python ``random``); each applies two
(probability, op, magnitude-bin) steps in order. Bins: shear linspace(0, 0.3) (bicubic), translate
linspace(0, 150/331)·size, rotate linspace(0, 30)° (sign **not** randomised, grey fill by RGBA compositing),
color / contrast / sharpness / brightness 1 ± linspace(0, 0.9), posterize round(linspace(8, 4)) bits, solarize
linspace(256, 0); random signs via ``random.choice([-1, 1])``; fill (128, 128, 128).
The original's ``np.int`` (removed in NumPy ≥ 1.24; PaCo quirk 20) is replaced by ``int``.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps


def _rotate_with_fill(img, magnitude):
    rot = img.convert("RGBA").rotate(magnitude)
    return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)


class SubPolicy:
    RANGES = {
        "shearX": np.linspace(0, 0.3, 10),
        "shearY": np.linspace(0, 0.3, 10),
        "translateX": np.linspace(0, 150 / 331, 10),
        "translateY": np.linspace(0, 150 / 331, 10),
        "rotate": np.linspace(0, 30, 10),
        "color": np.linspace(0.0, 0.9, 10),
        "posterize": np.round(np.linspace(8, 4, 10), 0).astype(int),
        "solarize": np.linspace(256, 0, 10),
        "contrast": np.linspace(0.0, 0.9, 10),
        "sharpness": np.linspace(0.0, 0.9, 10),
        "brightness": np.linspace(0.0, 0.9, 10),
        "autocontrast": [0] * 10,
        "equalize": [0] * 10,
        "invert": [0] * 10,
    }

    def __init__(self, p1, operation1, magnitude_idx1, p2, operation2, magnitude_idx2, fillcolor=(128, 128, 128)):
        bicubic, affine = Image.Resampling.BICUBIC, Image.Transform.AFFINE
        func = {
            "shearX": lambda img, m: img.transform(img.size, affine, (1, m * random.choice([-1, 1]), 0, 0, 1, 0),
                                                   bicubic, fillcolor=fillcolor),
            "shearY": lambda img, m: img.transform(img.size, affine, (1, 0, 0, m * random.choice([-1, 1]), 1, 0),
                                                   bicubic, fillcolor=fillcolor),
            "translateX": lambda img, m: img.transform(
                img.size, affine, (1, 0, m * img.size[0] * random.choice([-1, 1]), 0, 1, 0), fillcolor=fillcolor),
            "translateY": lambda img, m: img.transform(
                img.size, affine, (1, 0, 0, 0, 1, m * img.size[1] * random.choice([-1, 1])), fillcolor=fillcolor),
            "rotate": _rotate_with_fill,
            "color": lambda img, m: ImageEnhance.Color(img).enhance(1 + m * random.choice([-1, 1])),
            "posterize": lambda img, m: ImageOps.posterize(img, int(m)),
            "solarize": lambda img, m: ImageOps.solarize(img, m),
            "contrast": lambda img, m: ImageEnhance.Contrast(img).enhance(1 + m * random.choice([-1, 1])),
            "sharpness": lambda img, m: ImageEnhance.Sharpness(img).enhance(1 + m * random.choice([-1, 1])),
            "brightness": lambda img, m: ImageEnhance.Brightness(img).enhance(1 + m * random.choice([-1, 1])),
            "autocontrast": lambda img, m: ImageOps.autocontrast(img),
            "equalize": lambda img, m: ImageOps.equalize(img),
            "invert": lambda img, m: ImageOps.invert(img),
        }
        self.names = (operation1, operation2)
        self.p1, self.operation1, self.magnitude1 = p1, func[operation1], self.RANGES[operation1][magnitude_idx1]
        self.p2, self.operation2, self.magnitude2 = p2, func[operation2], self.RANGES[operation2][magnitude_idx2]

    def __call__(self, img):
        if random.random() < self.p1:
            img = self.operation1(img, self.magnitude1)
        if random.random() < self.p2:
            img = self.operation2(img, self.magnitude2)
        return img

    def __repr__(self) -> str:
        return f"SubPolicy({self.p1} {self.names[0]}, {self.p2} {self.names[1]})"


CIFAR10_SUBPOLICIES = [
    (0.1, "invert", 7, 0.2, "contrast", 6), (0.7, "rotate", 2, 0.3, "translateX", 9),
    (0.8, "sharpness", 1, 0.9, "sharpness", 3), (0.5, "shearY", 8, 0.7, "translateY", 9),
    (0.5, "autocontrast", 8, 0.9, "equalize", 2), (0.2, "shearY", 7, 0.3, "posterize", 7),
    (0.4, "color", 3, 0.6, "brightness", 7), (0.3, "sharpness", 9, 0.7, "brightness", 9),
    (0.6, "equalize", 5, 0.5, "equalize", 1), (0.6, "contrast", 7, 0.6, "sharpness", 5),
    (0.7, "color", 7, 0.5, "translateX", 8), (0.3, "equalize", 7, 0.4, "autocontrast", 8),
    (0.4, "translateY", 3, 0.2, "sharpness", 6), (0.9, "brightness", 6, 0.2, "color", 8),
    (0.5, "solarize", 2, 0.0, "invert", 3), (0.2, "equalize", 0, 0.6, "autocontrast", 0),
    (0.2, "equalize", 8, 0.6, "equalize", 4), (0.9, "color", 9, 0.6, "equalize", 6),
    (0.8, "autocontrast", 4, 0.2, "solarize", 8), (0.1, "brightness", 3, 0.7, "color", 0),
    (0.4, "solarize", 5, 0.9, "autocontrast", 3), (0.9, "translateY", 9, 0.7, "translateY", 9),
    (0.9, "autocontrast", 2, 0.8, "solarize", 3), (0.8, "equalize", 8, 0.1, "invert", 3),
    (0.7, "translateY", 9, 0.9, "autocontrast", 1),
]


class CIFAR10Policy:
    """Randomly choose one of the best 25 sub-policies of AutoAugment on CIFAR-10 (PIL image in, PIL image out)."""

    def __init__(self, fillcolor=(128, 128, 128)):
        self.policies = [SubPolicy(*p, fillcolor=fillcolor) for p in CIFAR10_SUBPOLICIES]

    def __call__(self, img):
        policy_idx = random.randint(0, len(self.policies) - 1)
        return self.policies[policy_idx](img)

    def __repr__(self) -> str:
        return "AutoAugment CIFAR10 Policy"


class Cutout:
    """Zero ``n_holes`` square patches of side ``length`` in a C×H×W tensor (after ToTensor, before Normalize).

    Each centre (y, x) is uniform over the image (NumPy RNG); the box [y − L//2, y + L//2) is clipped at the borders,
    so it can be smaller near an edge; all channels are set to 0.
    """

    def __init__(self, n_holes: int = 1, length: int = 16):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.size(1), img.size(2)
        mask = np.ones((h, w), np.float32)
        for _ in range(self.n_holes):  # n_holes is 1 in every spec; the loop is per hole, not per sample
            y = np.random.randint(h)
            x = np.random.randint(w)
            y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
            x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
            mask[y1:y2, x1:x2] = 0.0
        mask = torch.from_numpy(mask).to(img.dtype).expand_as(img)
        return img * mask

    def __repr__(self) -> str:
        return f"Cutout(n_holes={self.n_holes}, length={self.length})"
