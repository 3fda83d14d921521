"""Multi-view transform and blur of the queue-MoCo code (spec §d.2); the pieces are shared in ``common.augment``."""
from common.augment import GaussianBlur, MultiViewTransform, TwoCropsTransform  # noqa: F401


def MultiCropsTransform(base_transform, n_views):  # noqa: N802 - the original's class name
    """``n_views`` independent applications of ``base_transform`` (Ny+1 views)."""
    return MultiViewTransform(base_transform, n_views)
