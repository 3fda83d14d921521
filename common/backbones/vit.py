"""Plain torchvision Vision Transformer layouts (``vit_b_16``; ``vit_small`` = MoCo v3's intended ViT-S/16).

Method-specific changes (CACR's fixed 2-D sin-cos position embedding, MoCo-v3 init, stop-grad patch conv) stay
in the method folder; it can modify the returned :class:`VisionTransformer`. ``num_classes=0`` replaces the
``heads`` classifier by ``nn.Identity`` so ``forward`` returns the final-norm CLS token (``feature_dim``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models import vision_transformer as tv_vit

__all__ = ["VisionTransformer", "vit_b_16", "vit_small"]


class VisionTransformer(tv_vit.VisionTransformer):
    def __init__(self, num_classes: int = 0, **kwargs):
        super().__init__(num_classes=max(num_classes, 1), **kwargs)
        self.feature_dim = self.hidden_dim
        self.num_classes = num_classes
        if num_classes <= 0:
            self.heads = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._process_input(x)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.encoder(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.forward_features(x))


def vit_b_16(num_classes: int = 0, image_size: int = 224, **kwargs) -> VisionTransformer:
    """ViT-B/16: patch 16, width 768, depth 12, 12 heads, MLP 3072 (torchvision layout)."""
    return VisionTransformer(num_classes=num_classes, image_size=image_size, patch_size=16, num_layers=12,
                             num_heads=12, hidden_dim=768, mlp_dim=3072, **kwargs)


def vit_small(num_classes: int = 0, image_size: int = 224, **kwargs) -> VisionTransformer:
    """ViT-S/16 as MoCo v3 intends it: width 384, depth 12, 12 heads, MLP 1536 (torchvision layout)."""
    return VisionTransformer(num_classes=num_classes, image_size=image_size, patch_size=16, num_layers=12,
                             num_heads=12, hidden_dim=384, mlp_dim=1536, **kwargs)
