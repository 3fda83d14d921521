"""CIFAR ResNet-32/56/110 multi-network wrappers (original ``models/resnet.py``, spec §e.1)."""
from __future__ import annotations

import torch.nn as nn

from mcl.models.multinet import IndependentNetworks, MultiBranchNetwork

__all__ = ["ResNet_n", "ResNet_b", "resnet32", "resnet56", "resnet110"]


class ResNet_n(IndependentNetworks):
    pass


class ResNet_b(MultiBranchNetwork):
    """Shared conv1 / bn1 / relu / layer1; per branch ``layer2_i``, ``layer3_i``, ``classifier_i``."""

    def __init__(self, backbone: str, num_classes: int, number_net: int):
        super().__init__()
        self.number_net = number_net
        nets = self.plain_networks(backbone, num_classes, number_net)
        self.conv1, self.bn1, self.relu, self.layer1 = nets[0].conv1, nets[0].bn1, nn.ReLU(inplace=True), nets[0].layer1
        for i, net in enumerate(nets):
            setattr(self, f"layer2_{i}", net.layer2)
            setattr(self, f"layer3_{i}", net.layer3)
            setattr(self, f"classifier_{i}", net.classifier)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = nets[0].feature_dim

    def stem(self, x):
        return self.layer1(self.relu(self.bn1(self.conv1(x))))

    def branch(self, i, x):
        x = getattr(self, f"layer3_{i}")(getattr(self, f"layer2_{i}")(x))
        embedding = self.avgpool(x).flatten(1)
        return getattr(self, f"classifier_{i}")(embedding), embedding


def _factory(backbone):
    def factory(num_classes: int = 100, number_net: int = 2):
        if number_net == 2:
            return ResNet_n(num_classes, number_net, backbone=backbone)
        return ResNet_b(backbone, num_classes, number_net)
    factory.__name__ = backbone
    return factory


resnet32 = _factory("resnet32")
resnet56 = _factory("resnet56")
resnet110 = _factory("resnet110")
