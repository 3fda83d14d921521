"""MoCo-v3 Vision Transformers on torchvision's ``VisionTransformer`` layout (spec §e.3, quirk §k.9 fixed).

Changes to the plain torchvision ViT (as the original ``vits.py`` made to timm's):
* fixed (``requires_grad=False``) 2-D sin-cos position embedding, zero for the CLS token;
* DINO-style bicubic interpolation of the patch position embedding for other input sizes (96-px local crops),
  scale factors (w0 + 0.1)/14;
* MoCo-v3 init: q / k / v weights uniform(±√(6/(out/3 + in))) each, other Linears Xavier-uniform, biases 0,
  CLS token N(0, 1e-6²), patch projection uniform(±√(6/(3·p·p + width))), bias 0;
* optional convolutional stem (``vit_conv_*``, 4× conv3×3-s2 + BN + ReLU, then a 1×1 conv) with one block fewer.
The original only built ``vit_base`` correctly (patch size / width were not forwarded to timm); here every
variant is built as intended.  State-dict keys follow torchvision (``conv_proj``, ``encoder.layers``, ``heads.head``).
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

__all__ = ["VisionTransformerMoCo", "ConvStem", "vit_small", "vit_base", "vit_conv_small", "vit_conv_base",
           "vit_tiny", "build_2d_sincos_position_embedding", "VITS", "build_vit"]


def build_2d_sincos_position_embedding(grid_h: int, grid_w: int, width: int, temperature: float = 10000.0):
    """(1, 1 + grid_h·grid_w, width): zero for CLS; for patch p = a·grid_w + b:
    [sin(a·ω), cos(a·ω), sin(b·ω), cos(b·ω)] with ω_j = temperature^(−j/(width/4))."""
    if width % 4 != 0:
        raise ValueError("the 2-D sin-cos position embedding needs a width divisible by 4")
    a, b = torch.meshgrid(torch.arange(grid_h, dtype=torch.float32), torch.arange(grid_w, dtype=torch.float32),
                          indexing="ij")
    pos_dim = width // 4
    omega = 1.0 / (temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim))
    out_a = a.flatten()[:, None] * omega[None]
    out_b = b.flatten()[:, None] * omega[None]
    patches = torch.cat([torch.sin(out_a), torch.cos(out_a), torch.sin(out_b), torch.cos(out_b)], dim=1)
    return torch.cat([torch.zeros(1, width), patches], dim=0).unsqueeze(0)


class ConvStem(nn.Module):
    """MoCo-v3 convolutional stem replacing the 16×16 patch projection: (N, 3, H, W) → (N, width, H/16, W/16)."""

    def __init__(self, width: int = 768, patch_size: int = 16):
        super().__init__()
        if patch_size != 16 or width % 8 != 0:
            raise ValueError("ConvStem needs patch size 16 and a width divisible by 8")
        layers, in_dim, out_dim = [], 3, width // 8
        for _ in range(4):
            layers += [nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_dim),
                       nn.ReLU(inplace=True)]
            in_dim, out_dim = out_dim, out_dim * 2
        layers.append(nn.Conv2d(in_dim, width, kernel_size=1))
        self.proj = nn.Sequential(*layers)

    def forward(self, x):
        return self.proj(x)


class VisionTransformerMoCo(VisionTransformer):
    """torchvision ``VisionTransformer`` with the MoCo-v3 changes; ``forward`` returns the head of the final-norm
    CLS token (the CLS token itself when ``num_classes == 0``) and accepts any multiple of the patch size."""

    def __init__(self, image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072,
                 num_classes=1000, conv_stem=False, stop_grad_conv1=False):
        super().__init__(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim,
                         num_classes=max(num_classes, 1), norm_layer=partial(nn.LayerNorm, eps=1e-6))
        if num_classes == 0:
            self.heads.head = nn.Identity()
        self.feature_dim = hidden_dim
        grid = image_size // patch_size
        self.encoder.pos_embedding = nn.Parameter(build_2d_sincos_position_embedding(grid, grid, hidden_dim),
                                                  requires_grad=False)
        if conv_stem:
            self.conv_proj = ConvStem(hidden_dim, patch_size)
        self._init_moco_v3()
        if stop_grad_conv1:
            for p in self.conv_proj.parameters():
                p.requires_grad = False

    def _init_moco_v3(self):
        for name, m in self.named_modules():
            if isinstance(m, nn.MultiheadAttention):
                # q, k and v are initialised as three separate (width × width) matrices
                val = math.sqrt(6.0 / float(m.in_proj_weight.shape[0] // 3 + m.in_proj_weight.shape[1]))
                nn.init.uniform_(m.in_proj_weight, -val, val)
                nn.init.zeros_(m.in_proj_bias)
            elif isinstance(m, nn.Linear) and not name.startswith("heads"):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.class_token, std=1e-6)
        if isinstance(self.conv_proj, nn.Conv2d):
            val = math.sqrt(6.0 / float(3 * self.patch_size * self.patch_size + self.hidden_dim))
            nn.init.uniform_(self.conv_proj.weight, -val, val)
            nn.init.zeros_(self.conv_proj.bias)

    def interpolate_pos_encoding(self, n_patches_h: int, n_patches_w: int) -> torch.Tensor:
        pos = self.encoder.pos_embedding
        n_ref = pos.shape[1] - 1
        if n_patches_h * n_patches_w == n_ref and n_patches_h == n_patches_w:
            return pos
        side = int(math.sqrt(n_ref))
        patch_pos = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        # DINO: +0.1 avoids floating-point errors in the interpolation's output size
        patch_pos = F.interpolate(patch_pos, scale_factor=((n_patches_h + 0.1) / side, (n_patches_w + 0.1) / side),
                                  mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
        return torch.cat([pos[:, :1], patch_pos], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x)                                     # N × width × h × w
        n, c, h, w = x.shape
        x = x.reshape(n, c, h * w).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = x + self.interpolate_pos_encoding(h, w)
        x = self.encoder.ln(self.encoder.layers(self.encoder.dropout(x)))
        return x[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.forward_features(x))


def vit_small(**kwargs):
    return VisionTransformerMoCo(patch_size=16, hidden_dim=384, num_layers=12, num_heads=12, mlp_dim=1536, **kwargs)


def vit_base(**kwargs):
    return VisionTransformerMoCo(patch_size=16, hidden_dim=768, num_layers=12, num_heads=12, mlp_dim=3072, **kwargs)


def vit_conv_small(**kwargs):
    # minus one block to compensate for the conv stem
    return VisionTransformerMoCo(patch_size=16, hidden_dim=384, num_layers=11, num_heads=12, mlp_dim=1536,
                                 conv_stem=True, **kwargs)


def vit_conv_base(**kwargs):
    return VisionTransformerMoCo(patch_size=16, hidden_dim=768, num_layers=11, num_heads=12, mlp_dim=3072,
                                 conv_stem=True, **kwargs)


def vit_tiny(**kwargs):
    """Not in the original: a 2-block, 64-wide ViT for CPU smoke tests."""
    return VisionTransformerMoCo(patch_size=16, hidden_dim=64, num_layers=2, num_heads=4, mlp_dim=128, **kwargs)


VITS = {"vit_small": vit_small, "vit_base": vit_base, "vit_conv_small": vit_conv_small,
        "vit_conv_base": vit_conv_base, "vit_tiny": vit_tiny}


def build_vit(arch: str, image_size: int, **kwargs) -> VisionTransformerMoCo:
    """The ``-a/--arch`` ViT of the pre-training, linear and k-NN entry points for crops of ``image_size`` (rounded
    down to whole patches; 224 below one patch); an unknown name is a ``UserError`` listing the known ones."""
    from common.utils import UserError
    if arch not in VITS:
        raise UserError(f"unknown ViT '{arch}'; choose one of {', '.join(VITS)}")
    return VITS[arch](image_size=image_size - image_size % 16 or 224, **kwargs)
