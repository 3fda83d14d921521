"""PIL Gaussian blur with a random σ and Solarize (MoCo v2 / v3 / SimCLR-style loaders)."""
from __future__ import annotations

import random

from PIL import ImageFilter, ImageOps


class GaussianBlur:
    """Blur a PIL image with ``ImageFilter.GaussianBlur(radius=σ)``, σ ~ U[sigma[0], sigma[1]] drawn with Python's
    ``random`` (MoCo ``moco/loader.py``; PIL's radius is the Gaussian's standard deviation)."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = tuple(sigma)

    def __call__(self, x):
        sigma = random.uniform(self.sigma[0], self.sigma[1])
        return x.filter(ImageFilter.GaussianBlur(radius=sigma))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"


class Solarize:
    """``ImageOps.solarize``: invert every pixel value >= threshold (MoCo v3 view 2)."""

    def __init__(self, threshold: int = 128):
        self.threshold = threshold

    def __call__(self, x):
        return ImageOps.solarize(x, self.threshold)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"
