"""PaCo's two-view training pipelines and test transforms (spec §d.3), composed from `common.augment` pieces.

``--aug`` names a pair: view 1 goes to the query encoder, view 2 to the key encoder; both views are drawn from
the same image. ``size`` is the crop size (224 in every ImageNet-type recipe, 32 for CIFAR; smaller values are
only for smoke runs).
"""
from __future__ import annotations

import torchvision.transforms as T

from common.augment import (CIFAR10Policy, Cutout, GaussianBlur, TwoCropsTransform, moco_v1_transform,
                            moco_v2_transform, normalize_transform, paco_randaugment_hparams, rand_augment_transform,
                            simclr_transform)
from common.utils import UserError

# --aug values each entry point accepts (spec §d.3 table)
AUG_CHOICES = {
    "lt": ("randcls_sim", "randclsstack_sim", "randclsstack_sim02", "sim_sim", "mocov2_mocov2", "regular_regular"),
    "places": ("randcls_sim", "randclsstack_sim", "sim_sim", "mocov2_mocov2", "regular_regular"),
    "imagenet": ("randcls_sim", "randclsstack_sim", "sim_sim", "mocov2_mocov2", "regular_regular"),
    "cifar": ("cifar100", "mocov2_mocov2", "regular_regular"),
}
# Full-ImageNet/paco_imagenet.py named its symmetric pairs by one pipeline (spec §d.3): the original's spellings
AUG_ALIASES = {"imagenet": {"sim": "sim_sim", "mocov2": "mocov2_mocov2", "regular": "regular_regular"}}


def _finish(steps, normalize):
    return T.Compose(steps + [T.ToTensor(), normalize_transform(normalize)])


def _randaugment(n: int, m: int, size: int):
    return rand_augment_transform(f"rand-n{n}-m{m}-mstd0.5", paco_randaugment_hparams(size))


def randncls(size, normalize, n=2, m=10):
    return _finish([T.RandomResizedCrop(size, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
                    T.ColorJitter(0.4, 0.4, 0.4, 0.0), _randaugment(n, m, size)], normalize)


def randnclsstack(size, normalize, n=2, m=10):
    return _finish([T.RandomResizedCrop(size, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
                    T.ColorJitter(0.4, 0.4, 0.4, 0.0), T.RandomGrayscale(p=0.2),
                    T.RandomApply([GaussianBlur((0.1, 2.0))], p=0.5), _randaugment(n, m, size)], normalize)


def sim(size, normalize, scale=(0.08, 1.0)):
    return _finish([T.RandomResizedCrop(size, scale=scale), T.ColorJitter(0.4, 0.4, 0.4, 0.0),
                    T.RandomGrayscale(p=0.2), T.RandomApply([GaussianBlur((0.1, 2.0))], p=0.5),
                    T.RandomHorizontalFlip()], normalize)


def regular(size, normalize):
    return _finish([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0.0)], normalize)


def cifar_regular(normalize, size=32):
    return T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), CIFAR10Policy(), T.ToTensor(),
                      Cutout(n_holes=1, length=16), normalize_transform(normalize)])


def cifar_sim(normalize, size=32):
    return simclr_transform(size, normalize, scale=(0.2, 1.0))


def _check_aug(aug: str, variant: str) -> None:
    if aug not in AUG_CHOICES[variant]:
        raise UserError(f"--aug {aug!r} is not available here; choose one of {', '.join(AUG_CHOICES[variant])}")


def train_transform(aug: str, variant: str, normalize, size: int = 224, randaug_n: int = 2, randaug_m: int = 10,
                    aug_plus: bool = True) -> TwoCropsTransform:
    """The two-view transform of ``--aug`` for entry point ``variant`` (lt / places / imagenet / cifar)."""
    _check_aug(aug, variant)
    if variant == "places":  # the Places script's RandAugment ignores --randaug_n/m (quirk §k.15)
        randaug_n, randaug_m = 2, 10
    mocov = ((lambda: moco_v2_transform(size, normalize)) if aug_plus else (lambda: moco_v1_transform(size, normalize)))
    if aug == "randcls_sim":
        return TwoCropsTransform(randncls(size, normalize, randaug_n, randaug_m), sim(size, normalize))
    if aug == "randclsstack_sim":
        return TwoCropsTransform(randnclsstack(size, normalize, randaug_n, randaug_m), sim(size, normalize))
    if aug == "randclsstack_sim02":
        return TwoCropsTransform(randnclsstack(size, normalize, randaug_n, randaug_m),
                                 sim(size, normalize, scale=(0.2, 1.0)))
    if aug == "sim_sim":
        return TwoCropsTransform(sim(size, normalize), sim(size, normalize))
    if aug == "mocov2_mocov2":
        return TwoCropsTransform(mocov(), mocov())
    if aug == "regular_regular":
        if variant == "cifar":  # CIFAR regular: cifar_regular + the MoCo-v2 pipeline at 224 px (as the original)
            return TwoCropsTransform(cifar_regular(normalize, size), moco_v2_transform(224, normalize))
        if variant == "imagenet":
            return TwoCropsTransform(regular(size, normalize), regular(size, normalize))
        return TwoCropsTransform(regular(size, normalize), mocov())
    # "cifar100": AutoAugment + Cutout for the query view, SimCLR-style for the key view
    return TwoCropsTransform(cifar_regular(normalize, size), cifar_sim(normalize, size))


def _without_batched_equivalent(aug: str, variant: str) -> str | None:
    """The ops of ``--aug`` that ``common.augment.batched`` does not implement (None: the pair is supported)."""
    if aug.startswith("randcls"):
        return "RandAugment (rand-n*-m*-mstd0.5)"
    if aug == "cifar100" or (aug == "regular_regular" and variant == "cifar"):
        return "RandomCrop(padding 4) + AutoAugment's CIFAR10Policy + Cutout"
    return None


def batched_train_views(aug: str, variant: str, normalize, size: int = 224, aug_plus: bool = True):
    """``--augment batched``: the pair of :func:`train_transform` as ``common.augment.batched`` pipelines applied on
    the device to uint8 batches (same distributions; ``BatchedMultiView`` → [query view, key view]).

    Only the pairs built from crops, flips, ColorJitter, grey, PIL blur (``sim``, ``regular``, MoCo v1 / v2) have
    batched equivalents; RandAugment (``randcls*``) and the CIFAR AutoAugment + Cutout view (``cifar100``, CIFAR
    ``regular_regular``) have none, and asking for them is a ``UserError`` rather than a different distribution.
    """
    from common.augment import batched as B
    _check_aug(aug, variant)
    missing = _without_batched_equivalent(aug, variant)
    if missing:
        supported = [a for a in AUG_CHOICES[variant] if _without_batched_equivalent(a, variant) is None]
        raise UserError(f"--augment batched: --aug {aug} uses {missing}, which has no batched equivalent (the "
                        f"distribution could not match); use --augment pil, or an --aug of {', '.join(supported)}")

    def sim():
        return B.BatchedAugment(B.RandomResizedCropFlip(size), [
            B.ColorJitter(0.4, 0.4, 0.4, 0.0), B.RandomGrayscale(0.2), B.GaussianBlur((0.1, 2.0), p=0.5)], normalize)

    def regular():
        return B.BatchedAugment(B.RandomResizedCropFlip(size), [B.ColorJitter(0.4, 0.4, 0.4, 0.0)], normalize)

    def mocov():
        return (B.batched_moco_v2_transform if aug_plus else B.batched_moco_v1_transform)(size, normalize)

    if aug == "sim_sim":
        view = sim()
        return B.BatchedMultiView([view, view])
    if aug == "mocov2_mocov2":
        view = mocov()
        return B.BatchedMultiView([view, view])
    if variant == "imagenet":                                            # regular_regular
        view = regular()
        return B.BatchedMultiView([view, view])
    return B.BatchedMultiView([regular(), mocov()])


def test_transform(normalize, size: int = 224, resize_crop: bool = True):
    """ImageNet-type: Resize(256/224·size) → CenterCrop(size); CIFAR / digits: ToTensor + Normalize only."""
    if not resize_crop:
        return _finish([], normalize)
    return _finish([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size)], normalize)
