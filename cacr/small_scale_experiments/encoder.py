"""Encoders of the small-scale experiments (spec §e.1).

``SmallAlexNet`` itself is shared (``common.backbones``, name ``small_alexnet``).  Other backbones of
``common.backbones`` (used for quick CPU runs, e.g. the embedded ``digits`` default) get the same interface:
``forward(x, layer_index=-1)``, −1 = L2-normalised ``feat_dim`` embedding, −2 = the feature before the head.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from common.backbones import build_backbone
from common.utils import UserError


class L2Norm(nn.Module):
    """x / ‖x‖ along dim 1, without epsilon (as the original)."""

    def forward(self, x):
        return x / x.norm(p=2, dim=1, keepdim=True)


class ProjectedBackbone(nn.Module):
    """Any ``common.backbones`` feature extractor + Linear(feature_dim, feat_dim) + L2Norm."""

    def __init__(self, arch: str, feat_dim: int = 128):
        super().__init__()
        self.backbone = build_backbone(arch, num_classes=0)
        self.fc = nn.Linear(self.backbone.feature_dim, feat_dim)
        self.l2norm = L2Norm()
        self.feature_dim = self.backbone.feature_dim

    def forward(self, x, layer_index: int = -1):
        h = self.backbone(x)
        if layer_index in (-2, 1):
            return h
        if layer_index not in (-1, 2):
            raise ValueError(f"layer_index {layer_index}: a {type(self.backbone).__name__} encoder exposes -2 "
                             "(backbone feature) and -1 (normalised embedding) only")
        return self.l2norm(self.fc(h))


def build_encoder(arch: str = "small_alexnet", feat_dim: int = 128, input_size: int = 32) -> nn.Module:
    """SmallAlexNet (``input_size`` 32 for CIFAR / digits, 64 for STL-10) or a projected common backbone."""
    if arch == "small_alexnet":
        if input_size not in (32, 64):
            raise UserError(f"SmallAlexNet takes 32- or 64-pixel inputs, not {input_size}; drop --image-size or "
                            "choose another --arch")
        return build_backbone("small_alexnet", feat_dim=feat_dim, input_size=input_size)
    try:
        return ProjectedBackbone(arch, feat_dim)
    except ValueError as e:
        raise UserError(f"--arch {arch}: {e}") from None


@torch.no_grad()
def feature_dim(encoder: nn.Module, layer_index: int, input_size: int) -> int:
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    dim = encoder(torch.zeros(2, 3, input_size, input_size, device=device), layer_index=layer_index).flatten(1).shape[1]
    encoder.train(was_training)
    return dim
