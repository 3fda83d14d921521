"""Classification metrics: top-k accuracy and many / medium / few-shot accuracy (long-tailed evaluation)."""
from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def accuracy(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)) -> list:
    """Top-k accuracy in % for each k, as 0-dim tensors (moco / ImageNet example).

    ``output`` (B, C) scores, ``target`` (B,) class indices. ``k`` larger than C is clamped to C.
    No host sync: call ``.item()`` where the loop already syncs.
    """
    maxk = min(max(topk), output.shape[1])
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    res = []
    for k in topk:
        correct_k = correct[: min(k, maxk)].reshape(-1).float().sum(0)
        res.append(correct_k * (100.0 / batch_size))
    return res


def class_counts(labels, num_classes: int | None = None) -> torch.Tensor:
    """Per-class counts of an int label vector (e.g. the training labels for :func:`shot_accuracy`)."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    return torch.bincount(labels, minlength=num_classes or 0)


def shot_groups(train_class_counts, many_shot_thr: int = 100, low_shot_thr: int = 20) -> dict:
    """Boolean masks ``{'many', 'medium', 'few'}`` over the classes of ``train_class_counts`` (C,): *many* if the
    training count is > ``many_shot_thr``, *few* if < ``low_shot_thr``, *medium* otherwise (both thresholds are
    medium), as PaCo's ``shot_acc`` groups them."""
    counts = torch.as_tensor(train_class_counts).long().flatten()
    groups = {"many": counts > many_shot_thr, "few": counts < low_shot_thr}
    groups["medium"] = ~(groups["many"] | groups["few"])
    return groups


@torch.no_grad()
def shot_accuracy(preds, labels, train_class_counts, many_shot_thr: int = 100, low_shot_thr: int = 20) -> dict:
    """Many / medium / few-shot accuracy as in PaCo ``LT/utils.py::shot_acc``.

    ``preds``, ``labels``: (N,) test predictions and labels; ``train_class_counts``: (C,) training images
    per class (see :func:`class_counts`). For every class present in ``labels``: accuracy = correct / test
    count. Classes with train count > ``many_shot_thr`` are *many*, < ``low_shot_thr`` *few*, else
    *medium*; each group reports the unweighted mean of its per-class accuracies (0 for an empty group).

    Returns ``{'many', 'medium', 'few'}`` (fractions, float), ``'per_class_acc'`` (float64 tensor over
    ``'classes'``, the sorted classes present in ``labels``) and ``'top1'`` (plain sample accuracy, %).
    """
    preds = torch.as_tensor(preds).detach().cpu().long().flatten()
    labels = torch.as_tensor(labels).detach().cpu().long().flatten()
    counts = torch.as_tensor(train_class_counts).detach().cpu().long().flatten()
    if preds.shape != labels.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and labels {tuple(labels.shape)} differ in shape")
    num_classes = max(int(counts.numel()), int(labels.max()) + 1 if labels.numel() else 0)
    if labels.numel() and int(labels.max()) >= counts.numel():
        raise ValueError(f"test label {int(labels.max())} has no training count "
                         f"(train_class_counts has {counts.numel()} classes)")
    test_count = torch.bincount(labels, minlength=num_classes)
    correct = torch.bincount(labels[preds == labels], minlength=num_classes)
    classes = torch.nonzero(test_count > 0).flatten()
    per_class = correct[classes].double() / test_count[classes].double()
    groups = shot_groups(counts[classes], many_shot_thr, low_shot_thr)
    out = {name: (float(per_class[mask].mean()) if bool(mask.any()) else 0.0) for name, mask in groups.items()}
    out["per_class_acc"] = per_class
    out["classes"] = classes
    out["top1"] = float((preds == labels).double().mean() * 100.0) if labels.numel() else 0.0
    return out
