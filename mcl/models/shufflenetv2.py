"""ShuffleNetV2 (CIFAR) multi-network wrappers (original ``models/shufflenetv2.py``, spec §e.3)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from mcl.models.multinet import IndependentNetworks, MultiBranchNetwork

__all__ = ["ShuffleNetV2_n", "ShuffleNetV2_b", "ShuffleNetV2_05x", "ShuffleNetV2_1x"]


class ShuffleNetV2_n(IndependentNetworks):
    pass


class ShuffleNetV2_b(MultiBranchNetwork):
    """Shared conv1 / bn1 / layer1; per branch ``layer2_i``, ``layer3_i``, ``conv2_i``, ``bn2_i``,
    ``classifier_i`` (the plain ``linear``)."""

    def __init__(self, backbone: str, num_classes: int, number_net: int):
        super().__init__()
        self.number_net = number_net
        nets = self.plain_networks(backbone, num_classes, number_net)
        self.conv1, self.bn1, self.layer1 = nets[0].conv1, nets[0].bn1, nets[0].layer1
        for i, net in enumerate(nets):
            setattr(self, f"layer2_{i}", net.layer2)
            setattr(self, f"layer3_{i}", net.layer3)
            setattr(self, f"conv2_{i}", net.conv2)
            setattr(self, f"bn2_{i}", net.bn2)
            setattr(self, f"classifier_{i}", net.linear)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = nets[0].feature_dim

    def stem(self, x):
        return self.layer1(F.relu(self.bn1(self.conv1(x))))

    def branch(self, i, x):
        x = getattr(self, f"layer3_{i}")(getattr(self, f"layer2_{i}")(x))
        x = F.relu(getattr(self, f"bn2_{i}")(getattr(self, f"conv2_{i}")(x)))
        embedding = self.avgpool(x).flatten(1)
        return getattr(self, f"classifier_{i}")(embedding), embedding


def _factory(backbone):
    def factory(num_classes: int = 100, number_net: int = 2):
        if number_net == 2:
            return ShuffleNetV2_n(num_classes, number_net, backbone=backbone)
        return ShuffleNetV2_b(backbone, num_classes, number_net)
    factory.__name__ = backbone
    return factory


ShuffleNetV2_05x = _factory("ShuffleNetV2_05x")
ShuffleNetV2_1x = _factory("ShuffleNetV2_1x")
