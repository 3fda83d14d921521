"""The KL term every MCL loss shares (the original's ``KLDiv`` / ``utils.DistillKL``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """KL_T(student ‖ teacher) = T² · batchmean KL(softmax(teacher/T) ‖ softmax(student/T)).

    Args:
        student: (..., B, K) logits that receive the gradient.
        teacher: (..., B, K) logits; the caller decides whether they are detached.
        T: temperature.
    Leading axes (networks, pairs) are summed; the batch axis B is averaged, which for a single pair is
    exactly ``kl_div(log_softmax(u/T), softmax(v/T), reduction='batchmean') * T**2``.
    Returns: () tensor.
    """
    log_q = F.log_softmax(student / T, dim=-1)
    log_p = F.log_softmax(teacher / T, dim=-1)
    batch = student.shape[-2]
    return (log_p.exp() * (log_p - log_q)).sum() * (T * T) / batch


class KLDiv(torch.nn.Module):
    """Module shell over :func:`kl_divergence` (``DistillKL(T)`` in the original)."""

    def __init__(self, T: float):
        super().__init__()
        self.T = T

    def forward(self, student, teacher):
        return kl_divergence(student, teacher, self.T)


DistillKL = KLDiv


def logit_distillation(logits: torch.Tensor, T: float, rule: str) -> torch.Tensor:
    """Distillation from the ensemble mean ē = mean_i logits_i (spec f.3, quirk 5).

    Args:
        logits: (N, B, C) classifier logits of the N networks.
        rule: ``'cifar'`` — ē detached; N == 2 distils both networks, N > 2 only the last one.
              ``'imagenet'`` — only the last network, ē **not** detached (gradient reaches every network
              through the teacher), as in ``main_imagenet.py``.
    Returns: () tensor.
    """
    ensemble = logits.mean(dim=0)
    if rule == "cifar":
        ensemble = ensemble.detach()
        students = logits if logits.shape[0] == 2 else logits[-1:]
    elif rule == "imagenet":
        students = logits[-1:]
    else:
        raise ValueError(f"unknown logit-distillation rule {rule!r}")
    return kl_divergence(students, ensemble.expand_as(students), T)
