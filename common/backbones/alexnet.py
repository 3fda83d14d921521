"""SmallAlexNet of CACR's small-scale experiments (``encoder.py::SmallAlexNet``, spec cacr.md §e.1).

Eight blocks in ``blocks`` (an ``nn.ModuleList``): five conv blocks, fc6, fc7, fc8 (+ L2 normalisation).
``forward(x, layer_index=-1)`` runs blocks 0..layer_index (negative indices count from the end); linear
evaluation uses ``layer_index=-2`` (fc7, 4096-d). ``input_size`` 32 (CIFAR, fc6 input 192*3*3) or 64 (STL-10,
192*7*7). Init: conv / linear weights N(0, 0.02^2), biases 0, BN 1 / 0.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["L2Norm", "SmallAlexNet", "small_alexnet"]


class L2Norm(nn.Module):
    """x / ||x||_2 along dim 1, without epsilon (as the original)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(p=2, dim=1, keepdim=True)


def _conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
              nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


class SmallAlexNet(nn.Module):
    def __init__(self, in_channel: int = 3, feat_dim: int = 128, input_size: int = 32):
        super().__init__()
        if input_size not in (32, 64):
            raise ValueError(f"SmallAlexNet: input_size must be 32 (CIFAR) or 64 (STL-10), got {input_size}")
        spatial = 3 if input_size == 32 else 7
        self.input_size = input_size
        self.feature_dim = feat_dim
        blocks = [
            _conv_block(in_channel, 96, pool=True),
            _conv_block(96, 192, pool=True),
            _conv_block(192, 384, pool=False),
            _conv_block(384, 384, pool=False),
            _conv_block(384, 192, pool=True),
            # fc6
            nn.Sequential(nn.Flatten(), nn.Linear(192 * spatial * spatial, 4096, bias=False),
                          nn.BatchNorm1d(4096), nn.ReLU(inplace=True)),
            # fc7
            nn.Sequential(nn.Linear(4096, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(inplace=True)),
            # fc8
            nn.Sequential(nn.Linear(4096, feat_dim), L2Norm()),
        ]
        self.blocks = nn.ModuleList(blocks)
        self.init_weights_()

    def init_weights_(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(m.weight, 0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, *, layer_index: int = -1) -> torch.Tensor:
        if layer_index < 0:
            layer_index += len(self.blocks)
        for block in self.blocks[:layer_index + 1]:
            x = block(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def small_alexnet(num_classes: int = 0, feat_dim: int = 128, input_size: int = 32, **kwargs) -> SmallAlexNet:
    if num_classes:
        raise ValueError("small_alexnet has no classifier in the original (CACR trains a separate linear head on "
                         "layer_index=-2, 4096-d); build it with num_classes=0 and feat_dim=<output dim>")
    return SmallAlexNet(feat_dim=feat_dim, input_size=input_size, **kwargs)
