"""AttentioNCE ``Model`` (spec §e): CIFAR-style ResNet-50 encoder ``f`` + MLP projection head ``g``.

``f`` is an ``nn.Sequential`` of the backbone's children in the original's order (conv1, bn1, relu,
layer1 ... layer4, avgpool; the max-pool and fc dropped), so state-dict keys are the original's
(``f.0.weight`` ... ``g.3.bias``) and its checkpoints load.  Other ``--arch`` names from
``common.backbones`` (small networks for CPU runs) are used as they are.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.backbones import build_backbone

# --arch value -> common.backbones name; the original is torchvision resnet50 with a 3x3 stride-1 conv1 and
# no max-pool, i.e. common's cifar_resnet50
ARCH_ALIASES = {"resnet50": "cifar_resnet50", "resnet18": "cifar_resnet18", "resnet34": "cifar_resnet34"}
RESNET_CHILDREN = ("conv1", "bn1", "relu", "layer1", "layer2", "layer3", "layer4", "avgpool")


def build_encoder(arch: str) -> tuple[nn.Module, int]:
    backbone = build_backbone(ARCH_ALIASES.get(arch, arch), num_classes=0)
    feature_dim = int(backbone.feature_dim)
    children = dict(backbone.named_children())
    if all(name in children for name in RESNET_CHILDREN):
        return nn.Sequential(*(children[name] for name in RESNET_CHILDREN)), feature_dim
    return backbone, feature_dim


class Model(nn.Module):
    """``forward(x)`` → (L2-normalised flattened feature ``(B, F)``, L2-normalised projection ``(B, D)``).

    Head: Linear(F→512, no bias) → BatchNorm1d(512) → ReLU → Linear(512→feature_dim).
    """

    def __init__(self, feature_dim: int = 128, arch: str = "resnet50"):
        super().__init__()
        self.f, self.encoder_dim = build_encoder(arch)
        self.g = nn.Sequential(nn.Linear(self.encoder_dim, 512, bias=False), nn.BatchNorm1d(512),
                               nn.ReLU(inplace=True), nn.Linear(512, feature_dim, bias=True))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalised pooled encoder feature ``(B, F)`` (the input of the linear classifier)."""
        return torch.flatten(self.f(x), start_dim=1)

    def forward(self, x: torch.Tensor):
        feature = self.features(x)
        out = self.g(feature)
        return F.normalize(feature, dim=-1), F.normalize(out, dim=-1)


def add_module_prefix(state_dict: dict) -> dict:
    """Keys as the original saved them (its model was wrapped in ``nn.DataParallel``): ``module.f.0.weight``."""
    return {k if k.startswith("module.") else "module." + k: v for k, v in state_dict.items()}


def strip_module_prefix(state_dict: dict) -> dict:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
