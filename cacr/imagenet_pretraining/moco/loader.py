"""MoCo-v3 view pipelines with CACR's local crops (spec §d.3)."""
from __future__ import annotations

import torchvision.transforms as T

from common.augment import GaussianBlur, Solarize, TwoCropsTransform, normalize_transform  # noqa: F401


class MulCropsTransform:
    """[global view 1, global view 2, local_1 … local_L] of one image."""

    def __init__(self, base_transform1, base_transform2, local_transform=None, local_crops_number=0):
        self.base_transform1, self.base_transform2 = base_transform1, base_transform2
        self.local_transform, self.local_crops_number = local_transform, local_crops_number

    def __call__(self, x):
        crops = [self.base_transform1(x), self.base_transform2(x)]
        crops += [self.local_transform(x) for _ in range(self.local_crops_number)]
        return crops


def global_transforms(crop_min=0.08, size=224, normalize="imagenet"):
    """View 1 (blur p 1.0) and view 2 (blur p 0.1, solarize p 0.2) of BYOL / MoCo v3."""
    def pipeline(blur_p, solarize_p):
        steps = [T.RandomResizedCrop(size, scale=(crop_min, 1.0)),
                 T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                 T.RandomGrayscale(p=0.2),
                 T.RandomApply([GaussianBlur((0.1, 2.0))], p=blur_p)]
        if solarize_p:
            steps.append(T.RandomApply([Solarize()], p=solarize_p))
        steps += [T.RandomHorizontalFlip(), T.ToTensor(), normalize_transform(normalize)]
        return T.Compose(steps)
    return pipeline(1.0, 0.0), pipeline(0.1, 0.2)


def local_transform(scale=(0.05, 0.4), size=96, normalize="imagenet"):
    return T.Compose([T.RandomResizedCrop(size, scale=tuple(scale), interpolation=T.InterpolationMode.BICUBIC),
                      T.RandomHorizontalFlip(p=0.5),
                      T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                      T.RandomGrayscale(p=0.2),
                      T.RandomApply([GaussianBlur((0.1, 2.0))], p=0.5),
                      T.ToTensor(), normalize_transform(normalize)])
