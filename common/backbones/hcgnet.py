"""HCGNet (Yang et al., AAAI 2020) as used by MCL ``models/hcgnet.py`` (spec mcl.md §e.4). Default PyTorch init.

``HCGNet`` has children ``features`` (conv0, HybridBlock1, Transition1, HybridBlock2, Transition2, HybridBlock3,
norm5) and ``classifier``. Exported blocks for multi-branch variants (MCL ``HCGNet_b``): ``BasicConv``,
``SMG`` (the original's ``_SMG``), ``HybridBlock`` (``_HybridBlock``), ``Transition`` (``_Transition``).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["BasicConv", "SMG", "HybridBlock", "Transition", "HCGNet", "hcgnet_A1", "hcgnet_A2",
           "_SMG", "_HybridBlock", "_Transition"]


class BasicConv(nn.Module):
    """Pre-activation conv: BN(in) -> ReLU -> Conv (no bias)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, dilation=1):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                              groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.relu(self.norm(x)))


class _GatedUnit(nn.Module):
    """Shared tail of SMG and Transition: forget gate + two depthwise paths with global-context attention.

    Subclasses build ``conv1_1x1`` / ``conv2_3x3`` first, then call :meth:`_build_gates` (this creation order
    matches the original so a seeded build draws the same initial weights).
    """

    def _build_gates(self, channels: int, reduction_factor: int, forget_factor: int) -> None:
        C = channels
        self.reduction_factor = reduction_factor
        self.forget_factor = forget_factor
        # depthwise paths ("Mobile")
        self.conv_3x3 = BasicConv(C, C, kernel_size=3, stride=1, padding=1, groups=C)
        self.conv_5x5 = BasicConv(C, C, kernel_size=3, stride=1, padding=2, groups=C, dilation=2)
        # path attention ("GTSK")
        self.global_context3x3 = nn.Conv2d(C, 1, kernel_size=1)
        self.global_context5x5 = nn.Conv2d(C, 1, kernel_size=1)
        self.fcall = nn.Conv2d(2 * C, 2 * C // reduction_factor, kernel_size=1)
        self.bn_attention = nn.BatchNorm1d(2 * C // reduction_factor)
        self.fc3x3 = nn.Conv2d(2 * C // reduction_factor, C, kernel_size=1)
        self.fc5x5 = nn.Conv2d(2 * C // reduction_factor, C, kernel_size=1)
        # forget gate ("SE")
        self.global_forget_context = nn.Conv2d(C, 1, kernel_size=1)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.bn_forget = nn.BatchNorm1d(C // forget_factor)
        self.fc1 = nn.Conv2d(C, C // forget_factor, kernel_size=1)
        self.fc2 = nn.Conv2d(C // forget_factor, C, kernel_size=1)

    @staticmethod
    def _context_pool(x: torch.Tensor, context_conv: nn.Module) -> torch.Tensor:
        """Sum over positions of x weighted by softmax_{hw}(context_conv(x)) -> (N, C, 1, 1)."""
        N, _, H, W = x.shape
        weight = F.softmax(torch.flatten(context_conv(x), 1), 1).reshape(N, 1, H, W)
        return (x * weight).sum(dim=(2, 3), keepdim=True)

    def _gate(self, x: torch.Tensor) -> torch.Tensor:
        N, C = x.shape[:2]
        pooled = self._context_pool(x, self.global_forget_context)
        forget = torch.tanh(self.bn_forget(torch.flatten(self.fc1(pooled), 1)))
        forget = torch.sigmoid(self.fc2(forget.reshape(N, C // self.forget_factor, 1, 1)))

        x_3x3 = self._context_pool(self.conv_3x3(x), self.global_context3x3)
        x_5x5 = self._context_pool(self.conv_5x5(x), self.global_context5x5)
        attention = torch.tanh(self.bn_attention(torch.flatten(self.fcall(torch.cat([x_3x3, x_5x5], 1)), 1)))
        attention = attention.reshape(N, 2 * C // self.reduction_factor, 1, 1)
        weights = F.softmax(torch.stack([torch.flatten(self.fc3x3(attention), 1),
                                         torch.flatten(self.fc5x5(attention), 1)], 1), 1)
        mixed = weights[:, 0].reshape(N, C, 1, 1) * x_3x3 + weights[:, 1].reshape(N, C, 1, 1) * x_5x5
        return x * forget + mixed


class SMG(_GatedUnit):
    """Selective memory gate layer of a hybrid block; returns concat[input, new features] (dense)."""

    def __init__(self, in_channels, growth_rate, bn_size=4, groups=4, reduction_factor=2, forget_factor=2):
        super().__init__()
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.conv1_1x1 = BasicConv(in_channels, bn_size * growth_rate, kernel_size=1, stride=1)
        self.conv2_3x3 = BasicConv(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1,
                                   groups=groups)
        self._build_gates(growth_rate, reduction_factor, forget_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._gate(self.conv2_3x3(self.conv1_1x1(x)))
        return torch.cat([x, out], 1)


class HybridBlock(nn.Sequential):
    def __init__(self, num_layers, in_channels, bn_size, growth_rate):
        super().__init__()
        for i in range(num_layers):
            self.add_module("SMG%d" % (i + 1), SMG(in_channels + growth_rate * i, growth_rate, bn_size))


class Transition(_GatedUnit):
    """Down-sampling transition (stride-2 3x3 conv) followed by the same gating; no dense concat."""

    def __init__(self, in_channels, out_channels, forget_factor=4, reduction_factor=4):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.reduce_channels = (in_channels - out_channels) // 2
        self.conv1_1x1 = BasicConv(in_channels, in_channels - self.reduce_channels, kernel_size=1, stride=1)
        self.conv2_3x3 = BasicConv(in_channels - self.reduce_channels, out_channels, kernel_size=3, stride=2,
                                   padding=1, groups=1)
        self._build_gates(out_channels, reduction_factor, forget_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._gate(self.conv2_3x3(self.conv1_1x1(x)))


# the original's private names
_SMG, _HybridBlock, _Transition = SMG, HybridBlock, Transition


class HCGNet(nn.Module):
    def __init__(self, growth_rate=(12, 24, 36), block_config=(8, 8, 8), bn_size=4, theta=0.5,
                 num_classes: int = 100):
        super().__init__()
        num_feature = 2 * growth_rate[0]
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, num_feature, kernel_size=3, stride=1, padding=1, bias=False))]))
        for i, num_layers in enumerate(block_config):
            self.features.add_module("HybridBlock%d" % (i + 1),
                                     HybridBlock(num_layers, num_feature, bn_size, growth_rate[i]))
            num_feature = num_feature + growth_rate[i] * num_layers
            if i != len(block_config) - 1:
                self.features.add_module("Transition%d" % (i + 1),
                                         Transition(num_feature, int(num_feature * theta)))
                num_feature = int(num_feature * theta)
        self.features.add_module("norm5", nn.BatchNorm2d(num_feature))
        self.feature_dim = num_feature
        self.num_classes = num_classes
        self.classifier = nn.Linear(num_feature, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
        return torch.flatten(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def hcgnet_A1(num_classes: int = 0, **kwargs) -> HCGNet:
    return HCGNet(growth_rate=(12, 24, 36), block_config=(8, 8, 8), num_classes=num_classes, **kwargs)


def hcgnet_A2(num_classes: int = 0, **kwargs) -> HCGNet:
    return HCGNet(growth_rate=(24, 36, 64), block_config=(8, 8, 8), num_classes=num_classes, **kwargs)
