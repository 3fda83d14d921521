"""The original ``utils.py``: parameter / multiply-add counters, top-k correct counts, the LR schedule
(quirk 20 fixed: every parameter group is set). Import it package-qualified (``from mcl.utils import ...``)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from mcl.losses.kd import DistillKL  # noqa: F401  (the original defines it here)


def cal_param_size(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def cal_multi_adds(model: nn.Module, shape=(1, 3, 32, 32)) -> int:
    """Multiply-adds of every leaf Conv2d and Linear on a zero input of ``shape`` (the original's counter)."""
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += kernel * output[0].numel()

    def linear_hook(module, inputs, output):
        nonlocal total
        total += module.in_features * module.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(shape, device=next(model.parameters()).device))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total


def correct_num(output: torch.Tensor, target: torch.Tensor, topk=(1,)):
    """Number of correct top-k predictions, one (1,) tensor per k (no host sync)."""
    maxk = max(topk)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.eq(target.view(-1, 1))
    return [correct[:, :k].sum(dim=(0, 1), keepdim=False).reshape(1).float() for k in topk]


def lr_at_epoch(args, epoch: int) -> float:
    """Per-epoch LR of ``main_cifar.py`` / ``main_imagenet.py`` (no warm-up): cosine
    init_lr·½(1+cos(π·e/epochs)) or multistep init_lr·0.1^{#milestones ≤ e}."""
    if args.lr_type == "multistep":
        return args.init_lr * 0.1 ** sum(1 for m in args.milestones if epoch >= m)
    if args.lr_type == "cosine":
        return 0.5 * args.init_lr * (1.0 + math.cos(math.pi * epoch / args.epochs))
    raise ValueError(f"unknown --lr-type {args.lr_type!r}")


def adjust_lr(optimizer, epoch: int, args) -> float:
    lr = lr_at_epoch(args, epoch)
    for param_group in optimizer.param_groups:  # all groups (the original returned after the first)
        param_group["lr"] = lr
    return lr
