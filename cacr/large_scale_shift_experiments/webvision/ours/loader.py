"""``loader.py`` of the webvision copy = imagenet's + the WebVision-v1 reader (``common.data.WebVision``)."""
from common.data import WebVision as webvision_dataset  # noqa: F401,N813 - the original's name

from cacr.large_scale_shift_experiments.imagenet.ours.loader import GaussianBlur, MultiCropsTransform  # noqa: F401
