"""Wide-ResNet for CIFAR (MCL ``models/wrn.py``, spec mcl.md §e.2).

Children of ``WideResNet``: conv1, block1, block2, block3, bn1, relu, fc (as in the original).
Exported blocks for multi-branch variants (MCL ``WideResNet_b``): ``WideBasicBlock`` (the original's
``BasicBlock``, pre-activation) and ``NetworkBlock`` (a stage; its child is ``layer``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["WideBasicBlock", "BasicBlock", "NetworkBlock", "WideResNet", "wrn_16_2", "wrn_40_2", "wrn_28_4"]


class WideBasicBlock(nn.Module):
    """Pre-activation block; when in != out the activated input also feeds the 1x1 ``convShortcut``."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropRate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.droprate = dropRate
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None if self.equalInOut else nn.Conv2d(
            in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.equalInOut:
            out = self.relu1(self.bn1(x))
        else:
            x = self.relu1(self.bn1(x))
            out = x
        out = self.relu2(self.bn2(self.conv1(out)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


BasicBlock = WideBasicBlock  # the original's name


class NetworkBlock(nn.Module):
    def __init__(self, nb_layers: int, in_planes: int, out_planes: int, block, stride: int, dropRate: float = 0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            block(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropRate)
            for i in range(nb_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 100, widen_factor: int = 1, dropRate: float = 0.0):
        super().__init__()
        nChannels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, nChannels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, nChannels[0], nChannels[1], WideBasicBlock, 1, dropRate)
        self.block2 = NetworkBlock(n, nChannels[1], nChannels[2], WideBasicBlock, 2, dropRate)
        self.block3 = NetworkBlock(n, nChannels[2], nChannels[3], WideBasicBlock, 2, dropRate)
        self.bn1 = nn.BatchNorm2d(nChannels[3])
        self.relu = nn.ReLU(inplace=True)
        self.num_classes = num_classes
        self.fc = nn.Linear(nChannels[3], num_classes) if num_classes > 0 else nn.Identity()
        self.nChannels = self.feature_dim = nChannels[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        # the original uses avg_pool2d(out, 8), i.e. the global pool at 32x32 input
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def wrn_16_2(num_classes: int = 0, **kwargs) -> WideResNet:
    return WideResNet(16, num_classes=num_classes, widen_factor=2, **kwargs)


def wrn_40_2(num_classes: int = 0, **kwargs) -> WideResNet:
    return WideResNet(40, num_classes=num_classes, widen_factor=2, **kwargs)


def wrn_28_4(num_classes: int = 0, **kwargs) -> WideResNet:
    return WideResNet(28, num_classes=num_classes, widen_factor=4, **kwargs)
