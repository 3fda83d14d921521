"""CIFAR ResNets (3 stages of 16 / 32 / 64 planes, 3x3 stride-1 stem, no max-pool).

Two families:

* ``resnet32`` / ``resnet56`` / ``resnet110`` — MCL ``models/resnet.py`` (spec mcl.md §e.1): torchvision
  ``BasicBlock`` / ``Bottleneck`` with projection shortcuts (1x1 conv + BN), ``classifier`` head,
  Kaiming-normal (fan_out) convs, BN 1/0, default Linear init. Children: conv1, bn1, relu, layer1, layer2,
  layer3, avgpool, classifier.
* ``resnet{20,32,44,56,110,1202}_option_a`` — PaCo ``LT/models/resnet_cifar.py`` (spec paco.md §e.1):
  option-A shortcut (subsample by 2 + zero-pad the channels, no parameters), ``fc`` head,
  Kaiming-normal (fan_in) for every Conv2d and Linear. Children: conv1, bn1, layer1, layer2, layer3,
  avgpool, fc.

Building blocks exported for multi-branch variants (MCL ``ResNet_b``): ``BasicBlock``, ``Bottleneck``
(torchvision's classes, identical to MCL's), ``make_resnet_layer``, ``OptionABasicBlock``, ``PadShortcut``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

__all__ = ["BasicBlock", "Bottleneck", "make_resnet_layer", "CifarResNet", "resnet32", "resnet56", "resnet110",
           "PadShortcut", "OptionABasicBlock", "ResNet_s", "resnet20_option_a", "resnet32_option_a",
           "resnet44_option_a", "resnet56_option_a", "resnet110_option_a", "resnet1202_option_a"]


def make_resnet_layer(block, inplanes: int, planes: int, blocks: int, stride: int = 1, norm_layer=None):
    """One ResNet stage exactly as torchvision / MCL ``_make_layer`` builds it (projection shortcut when the
    stride or the channel count changes). Returns ``(stage, out_planes)``."""
    norm_layer = norm_layer or nn.BatchNorm2d
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(conv1x1(inplanes, planes * block.expansion, stride),
                                   norm_layer(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample, norm_layer=norm_layer)]
    inplanes = planes * block.expansion
    for _ in range(1, blocks):
        layers.append(block(inplanes, planes, norm_layer=norm_layer))
    return nn.Sequential(*layers), inplanes


def init_resnet_weights(module: nn.Module) -> None:
    """MCL / torchvision ResNet init: Kaiming-normal fan_out convs, norm weight 1 bias 0 (Linear untouched)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class CifarResNet(nn.Module):
    """MCL's plain CIFAR ``ResNet`` (the network wrapped by ``ResNet_n``)."""

    def __init__(self, block, layers, num_classes: int = 100, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1, self.inplanes = make_resnet_layer(block, self.inplanes, 16, layers[0], 1, norm_layer)
        self.layer2, self.inplanes = make_resnet_layer(block, self.inplanes, 32, layers[1], 2, norm_layer)
        self.layer3, self.inplanes = make_resnet_layer(block, self.inplanes, 64, layers[2], 2, norm_layer)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = 64 * block.expansion
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.feature_dim, num_classes) if num_classes > 0 else nn.Identity()
        init_resnet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def resnet32(num_classes: int = 0, **kwargs) -> CifarResNet:
    return CifarResNet(BasicBlock, [5, 5, 5], num_classes=num_classes, **kwargs)


def resnet56(num_classes: int = 0, **kwargs) -> CifarResNet:
    return CifarResNet(BasicBlock, [9, 9, 9], num_classes=num_classes, **kwargs)


def resnet110(num_classes: int = 0, **kwargs) -> CifarResNet:
    return CifarResNet(Bottleneck, [12, 12, 12], num_classes=num_classes, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Option-A family (PaCo)

class PadShortcut(nn.Module):
    """Option-A shortcut of He et al.: take every second pixel and zero-pad planes//4 channels on each side.
    (The original uses a ``LambdaLayer``; a named module keeps the model picklable, state_dict is identical.)"""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class OptionABasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


def _kaiming_fan_in(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(m.weight)


class ResNet_s(nn.Module):
    """PaCo's CIFAR ResNet (``resnet_cifar.py::ResNet_s`` with factor 1: 16 / 32 / 64 planes)."""

    def __init__(self, block, num_blocks, num_classes: int = 10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = 64
        self.num_classes = num_classes
        self.fc = nn.Linear(64, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_kaiming_fan_in)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return torch.flatten(self.avgpool(out), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def _option_a(blocks):
    def factory(num_classes: int = 0, **kwargs) -> ResNet_s:
        return ResNet_s(OptionABasicBlock, [blocks] * 3, num_classes=num_classes, **kwargs)
    factory.__doc__ = f"Option-A CIFAR ResNet-{6 * blocks + 2} (PaCo resnet_cifar.py)."
    return factory


resnet20_option_a = _option_a(3)
resnet32_option_a = _option_a(5)
resnet44_option_a = _option_a(7)
resnet56_option_a = _option_a(9)
resnet110_option_a = _option_a(18)
resnet1202_option_a = _option_a(200)
