"""HCGNet multi-network wrappers (original ``models/hcgnet.py``, spec §e.4)."""
from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn
import torch.nn.functional as F

from mcl.models.multinet import IndependentNetworks, MultiBranchNetwork

__all__ = ["HCGNet_n", "HCGNet_b", "hcgnet_A1", "hcgnet_A2"]


class HCGNet_n(IndependentNetworks):
    pass


class HCGNet_b(MultiBranchNetwork):
    """Shared ``features`` = conv0, HybridBlock1, Transition1; per branch ``layer2_HybridBlock{j}``,
    ``layer2_Transition{j}``, ``layer3_HybridBlock{j}``, ``norm5_{j}``, ``linear_{j}``."""

    def __init__(self, backbone: str, num_classes: int, number_net: int):
        super().__init__()
        self.number_net = number_net
        nets = self.plain_networks(backbone, num_classes, number_net)
        for j, net in enumerate(nets):
            setattr(self, f"layer2_HybridBlock{j}", net.features.HybridBlock2)
            setattr(self, f"layer2_Transition{j}", net.features.Transition2)
        for j, net in enumerate(nets):
            setattr(self, f"layer3_HybridBlock{j}", net.features.HybridBlock3)
            setattr(self, f"norm5_{j}", net.features.norm5)
            setattr(self, f"linear_{j}", net.classifier)
        first = nets[0].features
        self.features = nn.Sequential(OrderedDict([("conv0", first.conv0), ("HybridBlock1", first.HybridBlock1),
                                                   ("Transition1", first.Transition1)]))
        self.feature_dim = nets[0].feature_dim

    def stem(self, x):
        return self.features(x)

    def branch(self, j, x):
        x = getattr(self, f"layer2_Transition{j}")(getattr(self, f"layer2_HybridBlock{j}")(x))
        x = getattr(self, f"norm5_{j}")(getattr(self, f"layer3_HybridBlock{j}")(x))
        embedding = F.adaptive_avg_pool2d(F.relu(x), (1, 1)).flatten(1)
        return getattr(self, f"linear_{j}")(embedding), embedding


def _factory(backbone):
    def factory(num_classes: int = 100, number_net: int = 2):
        if number_net == 2:
            return HCGNet_n(num_classes, number_net, backbone=backbone)
        return HCGNet_b(backbone, num_classes, number_net)
    factory.__name__ = backbone
    return factory


hcgnet_A1 = _factory("hcgnet_A1")
hcgnet_A2 = _factory("hcgnet_A2")
