"""ASCL's ``utils.py``: the per-iteration LR schedule, top-k accuracy, meters and the kNN monitor.

Thin adapters over ``common`` so the original names keep working (``from ascl.utils import knn_predict``).
"""
from __future__ import annotations

from common.eval import accuracy  # noqa: F401  (original name; top-k accuracy in %)
from common.meters import AverageMeter  # noqa: F401
from common.schedules import set_lr, warmup_cosine_lr_by_step


def adjust_learning_rate_value(base_lr: float, epoch: int, i: int, iters_per_epoch: int, warm_up: int,
                               epochs: int) -> float:
    """The LR set before iteration ``i`` of ``epoch``: linear warm-up base·t/(W·I) for epoch < W (the very first
    step uses lr 0), then half-cosine to 0 over the remaining (E − W)·I iterations; t = epoch·I + i."""
    return warmup_cosine_lr_by_step(base_lr, epoch * iters_per_epoch + i, epochs * iters_per_epoch,
                                    warm_up * iters_per_epoch)


def adjust_learning_rate(optimizer, epoch: int, i: int, iters_per_epoch: int, args) -> float:
    """Set (and return) the pre-training LR for this iteration (original signature apart from ``args``)."""
    return set_lr(optimizer, adjust_learning_rate_value(args.lr, epoch, i, iters_per_epoch, args.warm_up,
                                                         args.epochs))
