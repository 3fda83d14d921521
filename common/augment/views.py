"""Multi-view wrappers: one PIL image in, a list of independently augmented views out."""
from __future__ import annotations

from typing import Callable, Sequence


class TwoCropsTransform:
    """Two views of one image: ``[t1(x), t2(x)]`` (MoCo's ``TwoCropsTransform`` when ``t2`` is None, i.e. the same
    random pipeline applied twice; ``TwoCropsTransform(q_pipeline, k_pipeline)`` is MoCo-v3's / PaCo's V2 form).
    Returns a list so the default collate yields ``[view1_batch, view2_batch]``.
    """

    def __init__(self, t1: Callable, t2: Callable | None = None):
        self.t1 = t1
        self.t2 = t1 if t2 is None else t2

    def __call__(self, x):
        return [self.t1(x), self.t2(x)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(t1={self.t1!r}, t2={self.t2!r})"


class MultiViewTransform:
    """Several views of one image, in order.

    ``MultiViewTransform([t_a, t_b, t_c])`` → ``[t_a(x), t_b(x), t_c(x)]``;
    ``MultiViewTransform(t, n)`` (or ``MultiViewTransform((t, n))``) → ``[t(x) for _ in range(n)]``
    (e.g. CACR's Ny+1 views, AttentioNCE's 6 views); ``MultiViewTransform([(t_g, 2), (t_l, 6)])`` mixes groups
    (global + local crops).
    """

    def __init__(self, transforms, n: int | None = None):
        if n is not None:
            transforms = [(transforms, n)]
        elif isinstance(transforms, tuple) and len(transforms) == 2 and isinstance(transforms[1], int):
            transforms = [transforms]
        if callable(transforms):
            raise TypeError("MultiViewTransform(transform) needs a view count: MultiViewTransform(transform, n)")
        expanded: list[Callable] = []
        for item in transforms:
            if isinstance(item, tuple):
                t, k = item
                if k < 1:
                    raise ValueError(f"view count must be >= 1, got {k}")
                expanded.extend([t] * k)
            else:
                expanded.append(item)
        if not expanded:
            raise ValueError("MultiViewTransform needs at least one view")
        self.transforms: Sequence[Callable] = expanded

    def __len__(self) -> int:
        return len(self.transforms)

    def __call__(self, x):
        return [t(x) for t in self.transforms]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_views={len(self.transforms)}, transforms={list(self.transforms)!r})"
