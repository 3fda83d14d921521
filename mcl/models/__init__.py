"""Architecture factories looked up by name, ``factory(num_classes, number_net)`` (spec §e): N == 2 →
independent networks (``*_n``), any other N → shared-stem multi-branch network (``*_b``, quirk 1)."""
from __future__ import annotations

from common.utils import UserError
from mcl.models.hcgnet import hcgnet_A1, hcgnet_A2
from mcl.models.resnet import resnet32, resnet56, resnet110
from mcl.models.resnet_imagenet import resnet18, resnet34
from mcl.models.shufflenetv2 import ShuffleNetV2_05x, ShuffleNetV2_1x
from mcl.models.wrn import wrn_16_2, wrn_28_4, wrn_40_2

CIFAR_ARCHS = ("resnet32", "resnet56", "resnet110", "wrn_16_2", "wrn_40_2", "wrn_28_4",
               "ShuffleNetV2_05x", "ShuffleNetV2_1x", "hcgnet_A1", "hcgnet_A2")
IMAGENET_ARCHS = ("resnet18", "resnet34")
_FACTORIES = {f.__name__: f for f in (resnet32, resnet56, resnet110, wrn_16_2, wrn_40_2, wrn_28_4,
                                      ShuffleNetV2_05x, ShuffleNetV2_1x, hcgnet_A1, hcgnet_A2,
                                      resnet18, resnet34)}


def get_model(arch: str, num_classes: int, number_net: int, choices=None):
    """``models.<arch>(num_classes, number_net)`` with a clear error for unknown names and N < 2."""
    known = tuple(choices or _FACTORIES)
    if arch not in known:
        raise UserError(f"unknown --arch '{arch}'; choose one of: {', '.join(known)}")
    if number_net < 2:
        raise UserError(f"--number-net {number_net}: MCL needs at least 2 networks (quirk 21)")
    return _FACTORIES[arch](num_classes=num_classes, number_net=number_net)
