"""``TwoCropsTransform`` and ``GaussianBlur`` of the original ``moco/loader.py`` (from ``common.augment``)."""
from common.augment import GaussianBlur, TwoCropsTransform

__all__ = ["TwoCropsTransform", "GaussianBlur"]
