"""Batch-norm variants: SplitBatchNorm (ASCL / MoCo CIFAR demo) and a SyncBatchNorm conversion helper."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SplitBatchNorm", "convert_split_batchnorm", "convert_sync_batchnorm", "freeze_batchnorm"]


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that simulates ``num_splits`` GPUs on one device (ASCL ``ModelBase``, spec ascl.md §e).

    Train mode: sample ``n`` belongs to split ``n % num_splits`` (strided, not contiguous chunks, because the
    batch is viewed as ``(N / S, C * S, H, W)``); every split is normalised with its own mean and biased
    variance, and the running statistics become the average over splits of the per-split momentum updates
    (which use the unbiased split variance). ``num_batches_tracked`` is never incremented (as in the original).
    Eval mode, or ``track_running_stats=False``: ordinary batch norm with the running statistics.
    The batch size must be divisible by ``num_splits`` in train mode.
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        self.num_splits = num_splits

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        N, C, H, W = input.shape
        if self.training or not self.track_running_stats:
            if N % self.num_splits != 0:
                raise ValueError(
                    f"SplitBatchNorm: batch size {N} is not divisible by num_splits={self.num_splits}; "
                    f"use a batch size that is a multiple of {self.num_splits}")
            S = self.num_splits
            running_mean_split = self.running_mean.repeat(S) if self.running_mean is not None else None
            running_var_split = self.running_var.repeat(S) if self.running_var is not None else None
            weight = self.weight.repeat(S) if self.weight is not None else None
            bias = self.bias.repeat(S) if self.bias is not None else None
            momentum = 0.0 if self.momentum is None else self.momentum
            out = F.batch_norm(input.reshape(-1, C * S, H, W), running_mean_split, running_var_split,
                               weight, bias, True, momentum, self.eps).reshape(N, C, H, W)
            if running_mean_split is not None:
                # each split updated its own copy of the running stats; the module keeps their average
                self.running_mean.data.copy_(running_mean_split.view(S, C).mean(dim=0))
                self.running_var.data.copy_(running_var_split.view(S, C).mean(dim=0))
            return out
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                            False, self.momentum or 0.0, self.eps)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_splits={self.num_splits}"


def convert_split_batchnorm(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a :class:`SplitBatchNorm` with the same parameters and
    buffers (in place where possible; returns the converted module, which is new if ``module`` itself is a BN)."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SplitBatchNorm):
        new = SplitBatchNorm(module.num_features, num_splits, eps=module.eps, momentum=module.momentum,
                             affine=module.affine, track_running_stats=module.track_running_stats)
        reference = module.weight if module.affine else module.running_mean
        if reference is not None:
            new = new.to(device=reference.device, dtype=reference.dtype)
        with torch.no_grad():
            if module.affine:
                new.weight.copy_(module.weight)
                new.bias.copy_(module.bias)
            if module.track_running_stats:
                new.running_mean.copy_(module.running_mean)
                new.running_var.copy_(module.running_var)
                new.num_batches_tracked.copy_(module.num_batches_tracked)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = convert_split_batchnorm(child, num_splits)
        if converted is not child:
            setattr(module, name, converted)
    return module


def convert_sync_batchnorm(model: nn.Module, process_group=None, force: bool = False) -> nn.Module:
    """``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` when a multi-process group is initialised and the
    model lives on an accelerator; otherwise the model is returned unchanged (single process, or CPU where
    SyncBatchNorm has no kernel). ``force=True`` converts whenever a process group exists."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return model
    first = next(model.parameters(), None)
    on_cpu = first is None or first.device.type == "cpu"
    if on_cpu and not force:
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group)


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics used, not updated; the affine
    parameters still train). Call it after each ``module.train()``, which switches them back.

    The entry points' ``--freeze-bn`` testing aid: batch statistics make a W-process run a different function
    than one process on the same global batch (each process normalises its own slice, and shuffle-BN regroups
    the key batch at random), so 1-process vs W-process equality is only defined without them."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
