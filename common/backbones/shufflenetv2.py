"""ShuffleNetV2, CIFAR variant (MCL ``models/shufflenetv2.py``, spec mcl.md §e.3). Default PyTorch init.

Children of ``ShuffleNetV2``: conv1, bn1, layer1, layer2, layer3, conv2, bn2, linear (as in the original).
Exported blocks for multi-branch variants (MCL ``ShuffleNetV2_b``): ``ShuffleBlock``, ``SplitBlock``,
``ShuffleBasicBlock`` (the original's ``BasicBlock``), ``DownBlock``, ``make_shufflenet_layer``, ``CONFIGS``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ShuffleBlock", "SplitBlock", "ShuffleBasicBlock", "BasicBlock", "DownBlock", "make_shufflenet_layer",
           "CONFIGS", "configs", "ShuffleNetV2", "ShuffleNetV2_05x", "ShuffleNetV2_1x"]


class ShuffleBlock(nn.Module):
    """Channel shuffle: N,C,H,W -> N,g,C/g,H,W -> N,C/g,g,H,W -> N,C,H,W."""

    def __init__(self, groups: int = 2):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.size()
        g = self.groups
        return x.view(N, g, C // g, H, W).permute(0, 2, 1, 3, 4).reshape(N, C, H, W)


class SplitBlock(nn.Module):
    def __init__(self, ratio: float):
        super().__init__()
        self.ratio = ratio

    def forward(self, x: torch.Tensor):
        c = int(x.size(1) * self.ratio)
        return x[:, :c, :, :], x[:, c:, :, :]


class ShuffleBasicBlock(nn.Module):
    def __init__(self, in_channels: int, split_ratio: float = 0.5):
        super().__init__()
        self.split = SplitBlock(split_ratio)
        in_channels = int(in_channels * split_ratio)
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1,
                               groups=in_channels, bias=False)
        self.bn2 = nn.BatchNorm2d(in_channels)
        self.conv3 = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(in_channels)
        self.shuffle = ShuffleBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.split(x)
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return self.shuffle(torch.cat([x1, out], 1))


BasicBlock = ShuffleBasicBlock  # the original's name


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid_channels = out_channels // 2
        # left branch
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1,
                               groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        # right branch
        self.conv3 = nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid_channels)
        self.conv4 = nn.Conv2d(mid_channels, mid_channels, kernel_size=3, stride=2, padding=1,
                               groups=mid_channels, bias=False)
        self.bn4 = nn.BatchNorm2d(mid_channels)
        self.conv5 = nn.Conv2d(mid_channels, mid_channels, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid_channels)
        self.shuffle = ShuffleBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.bn1(self.conv1(x))
        out1 = F.relu(self.bn2(self.conv2(out1)))
        out2 = F.relu(self.bn3(self.conv3(x)))
        out2 = self.bn4(self.conv4(out2))
        out2 = F.relu(self.bn5(self.conv5(out2)))
        return self.shuffle(torch.cat([out1, out2], 1))


CONFIGS = {
    0.5: {"out_channels": (48, 96, 192, 1024), "num_blocks": (3, 7, 3)},
    1: {"out_channels": (116, 232, 464, 1024), "num_blocks": (3, 7, 3)},
    1.5: {"out_channels": (176, 352, 704, 1024), "num_blocks": (3, 7, 3)},
    2: {"out_channels": (224, 488, 976, 2048), "num_blocks": (3, 7, 3)},
}
configs = CONFIGS  # the original's name


def make_shufflenet_layer(in_channels: int, out_channels: int, num_blocks: int):
    """A stage: DownBlock(in, out) then ``num_blocks`` basic blocks. Returns ``(stage, out_channels)``."""
    layers = [DownBlock(in_channels, out_channels)]
    layers += [ShuffleBasicBlock(out_channels) for _ in range(num_blocks)]
    return nn.Sequential(*layers), out_channels


class ShuffleNetV2(nn.Module):
    def __init__(self, net_size=1, num_classes: int = 100):
        super().__init__()
        out_channels = CONFIGS[net_size]["out_channels"]
        num_blocks = CONFIGS[net_size]["num_blocks"]
        self.conv1 = nn.Conv2d(3, 24, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_channels = 24
        self.layer1, self.in_channels = make_shufflenet_layer(self.in_channels, out_channels[0], num_blocks[0])
        self.layer2, self.in_channels = make_shufflenet_layer(self.in_channels, out_channels[1], num_blocks[1])
        self.layer3, self.in_channels = make_shufflenet_layer(self.in_channels, out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], kernel_size=1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.feature_dim = out_channels[3]
        self.num_classes = num_classes
        self.linear = nn.Linear(out_channels[3], num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        # the original uses avg_pool2d(out, 4), i.e. the global pool at 32x32 input
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x))


def ShuffleNetV2_05x(num_classes: int = 0, **kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(0.5, num_classes=num_classes, **kwargs)


def ShuffleNetV2_1x(num_classes: int = 0, **kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(1, num_classes=num_classes, **kwargs)
