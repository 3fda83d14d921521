"""torchvision ResNet family, plus the CIFAR-stem variant used by ASCL and AttentioNCE.

* ImageNet ResNets (MCL ``models/resnet_imagenet.py`` spec mcl.md §e.5; PaCo ``LT/models/resnet_imagenet.py`` and
  ``Full-ImageNet/models/resnet.py`` spec paco.md §e.1): torchvision ``ResNet`` (v1.5, stride on the 3x3 conv),
  Kaiming-normal fan_out convs, BN 1/0, no zero-init of residual BNs unless ``zero_init_residual=True``.
  Extra names of the originals: ``resnet200`` (Bottleneck [3, 24, 36, 3]) and ``resnext101_32x4d``
  (groups 32, width 4, [3, 4, 23, 3]).
* ``cifar_resnet18/34/50`` (ASCL ``ModelBase`` spec ascl.md §e, AttentioNCE ``Model.f`` spec attentionce.md §e):
  the torchvision network with ``conv1`` replaced *after* construction by a 3x3 stride-1 conv without bias
  (so it keeps PyTorch's default conv init), the max-pool removed (``maxpool=False``, the attribute is deleted so
  the children are conv1, bn1, relu, layer1..4, avgpool[, fc]) or kept (``maxpool=True``, ASCL STL-10 /
  Tiny-ImageNet), and with ``bn_splits > 1`` every BatchNorm2d built as ``SplitBatchNorm(num_splits=bn_splits)``.

All models are :class:`ResNet` (a torchvision ``ResNet`` subclass, so state_dict keys are torchvision's) with
``feature_dim``, ``forward_features(x)`` (pooled, flattened) and ``fc`` (``nn.Identity`` when ``num_classes=0``).
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from torchvision.models import resnet as tv_resnet
from torchvision.models.resnet import BasicBlock, Bottleneck

from common.backbones.splitbn import SplitBatchNorm

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "IMAGENET_RESNETS", "make_imagenet_resnet", "make_cifar_resnet"]


class ResNet(tv_resnet.ResNet):
    """torchvision ResNet with ``feature_dim`` / ``forward_features`` and an optional classifier."""

    def __init__(self, block, layers, num_classes: int = 1000, **kwargs):
        # torchvision always builds fc; build it with 1 output when no classifier is wanted, then drop it
        super().__init__(block, layers, num_classes=max(num_classes, 1), **kwargs)
        self.feature_dim = 512 * block.expansion
        self.num_classes = num_classes
        if num_classes <= 0:
            self.fc = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if hasattr(self, "maxpool"):
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


# name -> (block, layers, extra kwargs of torchvision's ResNet)
IMAGENET_RESNETS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], {}),
    "resnet34": (BasicBlock, [3, 4, 6, 3], {}),
    "resnet50": (Bottleneck, [3, 4, 6, 3], {}),
    "resnet101": (Bottleneck, [3, 4, 23, 3], {}),
    "resnet152": (Bottleneck, [3, 8, 36, 3], {}),
    "resnet200": (Bottleneck, [3, 24, 36, 3], {}),
    "resnext50_32x4d": (Bottleneck, [3, 4, 6, 3], {"groups": 32, "width_per_group": 4}),
    "resnext101_32x4d": (Bottleneck, [3, 4, 23, 3], {"groups": 32, "width_per_group": 4}),
    "resnext101_32x8d": (Bottleneck, [3, 4, 23, 3], {"groups": 32, "width_per_group": 8}),
    "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], {"width_per_group": 128}),
    "wide_resnet101_2": (Bottleneck, [3, 4, 23, 3], {"width_per_group": 128}),
}


def make_imagenet_resnet(name: str, num_classes: int = 0, **kwargs) -> ResNet:
    """torchvision-layout ResNet ``name``; ``kwargs`` go to torchvision's ResNet (e.g. ``zero_init_residual``,
    ``norm_layer``)."""
    block, layers, arch_kwargs = IMAGENET_RESNETS[name]
    return ResNet(block, layers, num_classes=num_classes, **{**arch_kwargs, **kwargs})


def make_cifar_resnet(name: str, num_classes: int = 0, maxpool: bool = False, bn_splits: int = 0,
                      **kwargs) -> ResNet:
    """ASCL / AttentioNCE CIFAR-stem ResNet (``name`` in resnet18 / resnet34 / resnet50)."""
    if bn_splits and bn_splits > 1:
        kwargs.setdefault("norm_layer", partial(SplitBatchNorm, num_splits=bn_splits))
    model = make_imagenet_resnet(name, num_classes=num_classes, **kwargs)
    # created after torchvision's init loop, so it keeps PyTorch's default conv init (as in the originals)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    if not maxpool:
        del model.maxpool
    return model
