"""Learning-rate (and momentum) schedules of the five originals, as pure functions of the epoch / step.

Each function returns the value to use; :func:`set_lr` writes it into every parameter group. Recipes:

===========================================  =================================================================
original                                      call
===========================================  =================================================================
moco / MCL / CACR large-scale ``--cos``       ``cosine_lr(lr, epoch, epochs)``
moco ``--schedule`` steps, MultiStepLR        ``step_lr(lr, epoch, milestones, gamma)``
moco-v3 / CACR ``main_pretrain`` (per iter)   ``warmup_cosine_lr(lr, epoch + i / iters, epochs, warmup)``
ASCL ``adjust_learning_rate`` (per iter)      ``warmup_cosine_lr_by_step(lr, epoch * I + i, epochs * I, W * I)``
PaCo LT / Places / ImageNet (per epoch)       ``paco_lr(lr, epoch, epochs, warmup, cos=True)``
PaCo with cosine off                          ``paco_lr(lr, epoch, epochs, warmup, cos=False, milestones=...)``
PaCo CIFAR (hard-coded)                       ``paco_cifar_lr(lr, epoch)``
moco-v3 ``--moco-m-cos``                      ``cosine_momentum(m, epoch + i / iters, epochs)``
===========================================  =================================================================

The originals' floating-point operation order is kept (golden schedules match bit for bit).
"""
from __future__ import annotations

import math
from typing import Sequence


def set_lr(optimizer, lr: float) -> float:
    """Set ``lr`` in every parameter group (MCL's original set only the first; quirk fixed)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def moco_epoch_lr(optimizer, epoch: int, args, cos: bool | None = None) -> float:
    """MoCo's per-epoch rule, set in ``optimizer``: half-cosine over ``args.epochs`` with ``cos`` (default
    ``args.cos``), else ×0.1 at each ``args.schedule`` milestone; returns the lr."""
    cos = args.cos if cos is None else cos
    return set_lr(optimizer, cosine_lr(args.lr, epoch, args.epochs) if cos else step_lr(args.lr, epoch, args.schedule))


def get_lr(optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def cosine_lr(base_lr: float, epoch: float, epochs: float, min_lr: float = 0.0) -> float:
    """Half-cosine without warm-up: ``min + (base − min)·½(1 + cos(π·epoch/epochs))``.

    ``epoch`` may be fractional (per-iteration use). With ``min_lr=0`` this is moco's ``--cos`` and the
    closed form of ``CosineAnnealingLR(T_max=epochs)`` evaluated at ``epoch``.
    """
    if min_lr == 0.0:
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def step_lr(base_lr: float, epoch: float, milestones: Sequence[float], gamma: float = 0.1,
            strict: bool = False) -> float:
    """``base·gamma^n`` with n the number of milestones ``m ≤ epoch`` (``m < epoch`` when ``strict``).

    Non-strict is moco's ``--schedule`` and ``MultiStepLR`` (the lr used during epoch ``epoch``); the factor
    is applied once per passed milestone (``lr *= gamma``), as they do.
    """
    lr = base_lr
    for m in milestones:
        if epoch > m if strict else epoch >= m:
            lr *= gamma
    return lr


def linear_warmup_lr(base_lr: float, epoch: float, warmup_epochs: float, warmup_offset: float = 0.0) -> float:
    """``base·(epoch + offset)/warmup``: offset 0 starts at 0 (moco-v3, ASCL), offset 1 at base/warmup (PaCo)."""
    return base_lr * (epoch + warmup_offset) / warmup_epochs


def warmup_cosine_lr(base_lr: float, epoch: float, epochs: float, warmup_epochs: float,
                     warmup_offset: float = 0.0, min_lr: float = 0.0) -> float:
    """Linear warm-up, then half-cosine to ``min_lr``.

    For ``epoch < warmup``: ``base·(epoch + o)/warmup``; afterwards
    ``min + (base − min)·½(1 + cos(π·(epoch − warmup + o)/(epochs − warmup + o)))``, ``o = warmup_offset``.

    * ``o = 0`` (moco-v3 / CACR ``main_pretrain``; ``epoch`` fractional = epoch + it/iters_per_epoch).
    * ``o = 1`` (PaCo ``adjust_learning_rate``, once per epoch with the integer epoch).
    ``warmup_epochs = 0`` gives the plain cosine.
    """
    if epoch < warmup_epochs:
        return linear_warmup_lr(base_lr, epoch, warmup_epochs, warmup_offset)
    angle = math.pi * (epoch - warmup_epochs + warmup_offset) / (epochs - warmup_epochs + warmup_offset)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(angle))


def warmup_cosine_lr_by_step(base_lr: float, step: int, total_steps: int, warmup_steps: int,
                             min_lr: float = 0.0) -> float:
    """Warm-up + half-cosine counted in iterations (ASCL): ``step < warmup``: ``base·step/warmup``
    (so the very first step uses lr 0), else ``min + (base − min)·½(1 + cos(π·(step − warmup)/(total − warmup)))``.

    ASCL: ``step = epoch·I + i``, ``total = epochs·I``, ``warmup = warm_up·I``.
    """
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    angle = math.pi * (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(angle))


def warmup_step_lr(base_lr: float, epoch: float, warmup_epochs: float, milestones: Sequence[float],
                   gamma: float = 0.1, warmup_offset: float = 0.0, warmup_inclusive: bool = False,
                   strict: bool = False) -> float:
    """Linear warm-up (``epoch < warmup``, or ``≤`` with ``warmup_inclusive``) then :func:`step_lr`."""
    in_warmup = epoch <= warmup_epochs if warmup_inclusive else epoch < warmup_epochs
    if warmup_epochs > 0 and in_warmup:
        return linear_warmup_lr(base_lr, epoch, warmup_epochs, warmup_offset)
    return step_lr(base_lr, epoch, milestones, gamma, strict=strict)


def paco_lr(base_lr: float, epoch: int, epochs: int, warmup_epochs: int, cos: bool = True,
            milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    """PaCo ``adjust_learning_rate`` (``paco_lt.py``, Places, ``paco_imagenet.py``), once per epoch:
    ``e < w``: ``base/w·(e + 1)``; else cosine ``base·½(1 + cos(π·(e − w + 1)/(E − w + 1)))``, or with
    ``cos=False`` ×``gamma`` for each milestone ``e ≥ m``."""
    lr = base_lr
    if epoch < warmup_epochs:
        return lr / warmup_epochs * (epoch + 1)
    if cos:
        return lr * 0.5 * (1. + math.cos(math.pi * (epoch - warmup_epochs + 1) / (epochs - warmup_epochs + 1)))
    for m in milestones:
        lr *= gamma if epoch >= m else 1.
    return lr


def paco_cifar_lr(base_lr: float, epoch: int, warmup_epochs: int = 10,
                  milestones: Sequence[int] = (320, 360), factors: Sequence[float] = (0.1, 0.01)) -> float:
    """PaCo ``paco_cifar.py`` (hard-coded, ignores ``--cos`` / ``--schedule``): ``e ≤ w``: ``base/w·(e + 1)``
    (epoch w runs at 1.1× base for w = 10, reproduced); ``e > milestones[i]``: ``base·factors[i]`` (the last
    passed milestone wins: ×0.1 for 320 < e ≤ 360, ×0.01 after 360); else base. ``warmup_epochs=0``: no warm-up."""
    if warmup_epochs > 0 and epoch <= warmup_epochs:
        return base_lr / warmup_epochs * (epoch + 1)
    for m, f in sorted(zip(milestones, factors), reverse=True):
        if epoch > m:
            return base_lr * f
    return base_lr


def cosine_momentum(base_momentum: float, epoch: float, epochs: float) -> float:
    """moco-v3 ``--moco-m-cos``: ``1 − ½(1 + cos(π·epoch/epochs))·(1 − m₀)`` (m₀ → 1 over training)."""
    return 1.0 - 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)) * (1.0 - base_momentum)


def schedule_values(fn, epochs: int, *args, **kwargs) -> list:
    """``[fn(..., epoch=e, ...) for e in range(epochs)]`` convenience for tests / plots:
    ``schedule_values(cosine_lr, 200, 0.03, epochs=200)`` calls ``cosine_lr(0.03, e, epochs=200)``."""
    return [fn(*args[:1], e, *args[1:], **kwargs) for e in range(epochs)]
