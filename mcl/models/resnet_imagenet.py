"""ImageNet ResNet-18/34 multi-network wrappers (original ``models/resnet_imagenet.py``, spec §e.5)."""
from __future__ import annotations

import torch.nn as nn

from mcl.models.multinet import IndependentNetworks, MultiBranchNetwork

__all__ = ["ImageNetResNet_n", "ImageNetResNet_b", "resnet18", "resnet34"]


class ImageNetResNet_n(IndependentNetworks):
    pass


class ImageNetResNet_b(MultiBranchNetwork):
    """Shared conv1 … layer2; per branch ``layer3_i``, ``layer4_i``, ``classifier_i`` (the plain ``fc``)."""

    def __init__(self, backbone: str, num_classes: int, number_net: int):
        super().__init__()
        self.number_net = number_net
        nets = self.plain_networks(backbone, num_classes, number_net)
        first = nets[0]
        self.conv1, self.bn1, self.relu, self.maxpool = first.conv1, first.bn1, first.relu, first.maxpool
        self.layer1, self.layer2 = first.layer1, first.layer2
        for i, net in enumerate(nets):
            setattr(self, f"layer3_{i}", net.layer3)
            setattr(self, f"layer4_{i}", net.layer4)
            setattr(self, f"classifier_{i}", net.fc)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = first.feature_dim

    def stem(self, x):
        return self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))

    def branch(self, i, x):
        x = getattr(self, f"layer4_{i}")(getattr(self, f"layer3_{i}")(x))
        embedding = self.avgpool(x).flatten(1)
        return getattr(self, f"classifier_{i}")(embedding), embedding


def _factory(backbone):
    def factory(num_classes: int = 1000, number_net: int = 2):
        if number_net == 2:
            return ImageNetResNet_n(num_classes, number_net, backbone=backbone)
        return ImageNetResNet_b(backbone, num_classes, number_net)
    factory.__name__ = backbone
    return factory


resnet18 = _factory("resnet18")
resnet34 = _factory("resnet34")
