"""Backbone registry shared by the five methods.

``build_backbone(name, num_classes=0, **kwargs)``: ``num_classes == 0`` → ``forward(x)`` returns the pooled,
flattened feature ``(B, model.feature_dim)`` (the classifier attribute is an ``nn.Identity``);
``num_classes > 0`` → the original's classifier (``fc`` / ``classifier`` / ``linear`` / ``heads``) is attached and
``forward`` returns logits. Every model also has ``forward_features(x)`` (the pooled feature, whatever
``num_classes`` is), ``feature_dim`` and ``num_classes``.

=========================================  =====================  ==============  ======================================
name                                       module                 classifier      source / kwargs
=========================================  =====================  ==============  ======================================
resnet32, resnet56, resnet110              resnet_cifar           ``classifier``  MCL models/resnet.py (projection
                                                                                  shortcut; resnet110 = Bottleneck)
resnet{20,32,44,56,110,1202}_option_a      resnet_cifar           ``fc``          PaCo LT/models/resnet_cifar.py
wrn_16_2, wrn_40_2, wrn_28_4               wrn                    ``fc``          MCL models/wrn.py
ShuffleNetV2_05x, ShuffleNetV2_1x          shufflenetv2           ``linear``      MCL models/shufflenetv2.py
hcgnet_A1, hcgnet_A2                       hcgnet                 ``classifier``  MCL models/hcgnet.py
cifar_resnet18, cifar_resnet34,            resnet_imagenet        ``fc``          ASCL / AttentioNCE: 3x3 stride-1 conv1;
cifar_resnet50                                                                    ``maxpool=False`` (True keeps it),
                                                                                  ``bn_splits=0`` (>1 → SplitBatchNorm)
resnet18/34/50/101/152/200,                resnet_imagenet        ``fc``          torchvision layout (+ resnet200,
resnext50_32x4d, resnext101_32x4d,                                                resnext101_32x4d of PaCo);
resnext101_32x8d, wide_resnet50_2,                                                kwargs → torchvision ResNet
wide_resnet101_2                                                                  (e.g. ``zero_init_residual``)
small_alexnet                              alexnet                —               CACR encoder.py; ``feat_dim=128``,
                                                                                  ``input_size=32`` or ``64``
vit_b_16 (= vit_base), vit_small           vit                    ``heads``       torchvision ViT layout
=========================================  =====================  ==============  ======================================

Building blocks for multi-branch variants (MCL ``*_b``), importable from their modules:

* ``common.backbones.resnet_cifar``: ``BasicBlock``, ``Bottleneck``, ``make_resnet_layer``, ``init_resnet_weights``,
  ``CifarResNet``; option A: ``OptionABasicBlock``, ``PadShortcut``, ``ResNet_s``.
* ``common.backbones.wrn``: ``WideBasicBlock`` (= ``BasicBlock``), ``NetworkBlock``, ``WideResNet``.
* ``common.backbones.shufflenetv2``: ``ShuffleBlock``, ``SplitBlock``, ``ShuffleBasicBlock`` (= ``BasicBlock``),
  ``DownBlock``, ``make_shufflenet_layer``, ``CONFIGS``, ``ShuffleNetV2``.
* ``common.backbones.hcgnet``: ``BasicConv``, ``SMG``, ``HybridBlock``, ``Transition`` (also under the original
  private names ``_SMG`` / ``_HybridBlock`` / ``_Transition``), ``HCGNet``.
* ``common.backbones.resnet_imagenet``: ``ResNet`` (torchvision subclass), ``BasicBlock``, ``Bottleneck``.
* ``common.backbones.splitbn``: ``SplitBatchNorm``, ``convert_split_batchnorm``, ``convert_sync_batchnorm``,
  ``freeze_batchnorm``.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch.nn as nn

from common.backbones import alexnet, hcgnet, resnet_cifar, resnet_imagenet, shufflenetv2, vit, wrn
from common.backbones.splitbn import (SplitBatchNorm, convert_split_batchnorm, convert_sync_batchnorm,
                                     freeze_batchnorm)
from common.utils import UserError

__all__ = ["build_backbone", "list_backbones", "register_backbone", "SplitBatchNorm", "convert_split_batchnorm",
           "convert_sync_batchnorm", "freeze_batchnorm"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class UnknownBackboneError(UserError, ValueError):
    """An unknown backbone name. Still the ``ValueError`` of the registry's contract, and a ``UserError`` so that an
    entry point given a mistyped ``-a/--arch`` prints one ``error:`` line listing the known names, not a traceback."""


def register_backbone(name: str, factory: Callable[..., nn.Module]) -> None:
    """Register ``factory(num_classes=0, **kwargs) -> nn.Module`` under ``name`` (must be new)."""
    if name in _REGISTRY:
        raise ValueError(f"backbone {name!r} is already registered")
    _REGISTRY[name] = factory


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def build_backbone(name: str, num_classes: int = 0, **kwargs) -> nn.Module:
    """Build backbone ``name`` (see the module docstring for names and kwargs)."""
    if name not in _REGISTRY:
        raise UnknownBackboneError(f"unknown backbone {name!r}; known backbones: {', '.join(list_backbones())}")
    if num_classes is None or num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {num_classes}")
    return _REGISTRY[name](num_classes=num_classes, **kwargs)


for _name in ("resnet32", "resnet56", "resnet110"):
    register_backbone(_name, getattr(resnet_cifar, _name))
for _depth in (20, 32, 44, 56, 110, 1202):
    register_backbone(f"resnet{_depth}_option_a", getattr(resnet_cifar, f"resnet{_depth}_option_a"))
for _name in ("wrn_16_2", "wrn_40_2", "wrn_28_4"):
    register_backbone(_name, getattr(wrn, _name))
for _name in ("ShuffleNetV2_05x", "ShuffleNetV2_1x"):
    register_backbone(_name, getattr(shufflenetv2, _name))
for _name in ("hcgnet_A1", "hcgnet_A2"):
    register_backbone(_name, getattr(hcgnet, _name))
for _name in ("resnet18", "resnet34", "resnet50"):
    register_backbone(f"cifar_{_name}", partial(resnet_imagenet.make_cifar_resnet, _name))
for _name in resnet_imagenet.IMAGENET_RESNETS:
    # resnet32/56/110 above are MCL's CIFAR nets; every torchvision name is distinct from them
    register_backbone(_name, partial(resnet_imagenet.make_imagenet_resnet, _name))
register_backbone("small_alexnet", alexnet.small_alexnet)
register_backbone("vit_b_16", vit.vit_b_16)
register_backbone("vit_base", vit.vit_b_16)
register_backbone("vit_small", vit.vit_small)
del _name, _depth
