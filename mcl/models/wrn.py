"""Wide-ResNet multi-network wrappers (original ``models/wrn.py``, spec §e.2)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from mcl.models.multinet import IndependentNetworks, MultiBranchNetwork

__all__ = ["WideResNet_n", "WideResNet_b", "wrn_16_2", "wrn_40_2", "wrn_28_4"]


class WideResNet_n(IndependentNetworks):
    pass


class WideResNet_b(MultiBranchNetwork):
    """Shared conv1 + block1; per branch ``block2_i``, ``block3_i``, ``bn_i``, ``classifier_i``.

    The original's ``_b`` init: convs kaiming-normal (fan_out) — the same distribution as the plain net's
    N(0, sqrt(2/(k·k·out))) — BN 1/0, and Linear layers with PyTorch's default init (bias not zeroed), so
    the classifiers are fresh ``nn.Linear`` here.
    """

    def __init__(self, backbone: str, num_classes: int, number_net: int):
        super().__init__()
        self.number_net = number_net
        nets = self.plain_networks(backbone, num_classes, number_net)
        self.conv1, self.block1 = nets[0].conv1, nets[0].block1
        for i, net in enumerate(nets):
            setattr(self, f"block2_{i}", net.block2)
            setattr(self, f"block3_{i}", net.block3)
            setattr(self, f"bn_{i}", net.bn1)
            setattr(self, f"classifier_{i}", nn.Linear(net.fc.in_features, net.fc.out_features))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = nets[0].feature_dim
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x):
        return self.block1(self.conv1(x))

    def branch(self, i, x):
        x = getattr(self, f"block3_{i}")(getattr(self, f"block2_{i}")(x))
        x = F.relu(getattr(self, f"bn_{i}")(x))
        embedding = self.avgpool(x).flatten(1)
        return getattr(self, f"classifier_{i}")(embedding), embedding


def _factory(backbone):
    def factory(num_classes: int = 100, number_net: int = 2):
        if number_net == 2:
            return WideResNet_n(num_classes, number_net, backbone=backbone)
        return WideResNet_b(backbone, num_classes, number_net)
    factory.__name__ = backbone
    return factory


wrn_16_2 = _factory("wrn_16_2")
wrn_40_2 = _factory("wrn_40_2")
wrn_28_4 = _factory("wrn_28_4")
