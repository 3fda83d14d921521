"""Augmentations shared by the five methods: normalisation constants, view wrappers, PIL blur / solarize,
timm-0.3-style RandAugment, the AutoAugment CIFAR-10 policy, Cutout, and recurring pipelines."""
from common.augment.normalize import NORMALIZE, NormStats, get_normalize_stats, normalize_transform
from common.augment.views import MultiViewTransform, TwoCropsTransform
from common.augment.filters import GaussianBlur, Solarize
from common.augment.randaugment import (RAND_TRANSFORMS, AugmentOp, RandAugment, paco_randaugment_hparams,
                                        rand_augment_transform)
from common.augment.autoaugment import CIFAR10Policy, Cutout, SubPolicy
from common.augment.pipelines import (byol_transforms, cifar_train_transform, linear_train_transform, linear_val_transform,
                                      moco_v1_transform, moco_v2_transform, simclr_transform, test_transform,
                                      to_tensor_normalize, weak_transform)

__all__ = [
    "NORMALIZE", "NormStats", "get_normalize_stats", "normalize_transform",
    "TwoCropsTransform", "MultiViewTransform", "GaussianBlur", "Solarize",
    "moco_v1_transform", "moco_v2_transform", "simclr_transform", "weak_transform",
    "linear_train_transform", "linear_val_transform", "cifar_train_transform", "test_transform",
    "to_tensor_normalize", "rand_augment_transform", "RandAugment", "AugmentOp", "RAND_TRANSFORMS",
    "paco_randaugment_hparams", "CIFAR10Policy", "SubPolicy", "Cutout", "byol_transforms",
]
