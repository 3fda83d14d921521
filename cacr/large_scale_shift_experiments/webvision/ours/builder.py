"""Byte-identical to ``imagenet/ours/builder.py`` in the original: re-exported, not copied."""
from cacr.large_scale_shift_experiments.imagenet.ours.builder import MoCo, MoCoLosses, cacr_queue_loss  # noqa: F401
