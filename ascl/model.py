"""ASCL models (spec §e): ``ModelBase`` (CIFAR-style ResNet + MLP projector), the ``ASCL`` MoCo / BYOL wrapper
and ``LinearHead``.  ``SplitBatchNorm`` and the CIFAR-variant ResNets live in ``common.backbones``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.backbones import SplitBatchNorm, build_backbone, convert_split_batchnorm  # noqa: F401
from common.distributed import batch_shuffle_ddp, batch_unshuffle_ddp
from ascl.losses import ASCLLoss, RelabelOutput

ORIGINAL_ARCHS = ("resnet18", "resnet34", "resnet50")


class ModelBase(nn.Module):
    """Backbone (every BN → SplitBatchNorm) + projector Linear(feat → 2048) → ReLU → Linear(2048 → dim).

    ``arch`` resnet18/34/50 is the original's CIFAR-style torchvision ResNet (3×3 stride-1 conv1; max-pool
    removed for CIFAR / digits, kept for STL-10 and Tiny-ImageNet).  Any other ``common.backbones`` name is
    accepted as an extension (small networks for CPU runs); its BatchNorms are converted the same way.
    ``forward(x, feat=True)`` returns the pooled backbone feature, otherwise the (unnormalised) projection.
    ``projector='linear'`` (not in the original) replaces the MLP by one Linear(feat → dim).
    """

    def __init__(self, dataset: str = "cifar10", projection_dim: int = 128, arch: str = "resnet18",
                 bn_splits: int = 8, projector: str = "mlp"):
        super().__init__()
        self.original_arch = arch in ORIGINAL_ARCHS
        if arch in ORIGINAL_ARCHS:
            self.net = build_backbone(f"cifar_{arch}", maxpool=dataset in ("stl10", "tinyimagenet"),
                                      bn_splits=bn_splits)
        else:
            self.net = build_backbone(arch)
            if bn_splits > 1:
                self.net = convert_split_batchnorm(self.net, bn_splits)
        self.feature_dim = self.net.feature_dim
        if projector == "mlp":
            self.projector = nn.Sequential(nn.Linear(self.feature_dim, 2048), nn.ReLU(inplace=True),
                                           nn.Linear(2048, projection_dim))
        elif projector == "linear":
            # MoCo-v1-style head (an extension, see --projector): on 1,347 digits with a 64-d backbone the
            # BN-free MLP head maps every image into a narrow cone and the contrastive loss stalls
            self.projector = nn.Linear(self.feature_dim, projection_dim)
        else:
            raise ValueError(f"projector must be 'mlp' or 'linear', got {projector!r}")
        self._register_load_state_dict_pre_hook(self._rename_original_backbone_keys)

    def _rename_original_backbone_keys(self, state_dict, prefix, *args):
        """The original ModelBase keeps the ResNet's children in an ``nn.Sequential`` (``net.0`` = conv1, ``net.1`` =
        bn1, ``net.3`` = layer1 ... with the max-pool dropped for CIFAR), the order of ``self.net``'s children here:
        its checkpoints load by renaming ``net.<i>.`` to the i-th child's name."""
        names = [name for name, _ in self.net.named_children()]
        head = prefix + "net."
        for key in [k for k in state_dict if k.startswith(head) and k[len(head):].split(".", 1)[0].isdigit()]:
            index, rest = key[len(head):].split(".", 1)
            if int(index) < len(names):
                state_dict[f"{head}{names[int(index)]}.{rest}"] = state_dict.pop(key)

    def forward(self, x, feat: bool = False):
        h = self.net(x)
        return h if feat else self.projector(h)


class ASCL(nn.Module):
    """Student ``encoder_q`` + EMA teacher ``encoder_k`` + ``criterion`` (:class:`ascl.losses.ASCLLoss`, holding
    the queue).  ``forward(im_q, im_k, labels)`` returns the :class:`RelabelOutput` of the step (``.loss``).

    ``model='byol'`` adds the predictor Linear(dim → 512) → BN1d → ReLU → Linear(512 → 128); the teacher then
    runs without shuffle-BN and the loss is the batch mean (quirk 4 fixed).
    """

    def __init__(self, dataset: str = "cifar10", model: str = "moco", dim: int = 128, mem_size: int = 4096,
                 m: float = 0.99, T1: float = 0.1, T2: float = 0.05, arch: str = "resnet18", type: str = "ascl",
                 nn_num: int = 1, bn_splits: int = 8, shuffle_bn: bool = True, projector: str = "mlp"):
        super().__init__()
        self.model, self.m, self.shuffle_bn = model, m, shuffle_bn
        self.encoder_q = ModelBase(dataset, dim, arch, bn_splits, projector)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for param_k in self.encoder_k.parameters():
            param_k.requires_grad = False
        if model == "byol":
            self.predictor = nn.Sequential(nn.Linear(dim, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                           nn.Linear(512, 128))
        self.criterion = ASCLLoss(dim, mem_size, T1, T2, type, nn_num, model)
        # checkpoints of the original keep the queue buffers at the top level
        self._register_load_state_dict_pre_hook(self._rename_original_buffers)

    @staticmethod
    def _rename_original_buffers(state_dict, prefix, *args):
        for name in ("queue", "labels", "queue_ptr"):
            if prefix + name in state_dict:
                state_dict[prefix + "criterion." + name] = state_dict.pop(prefix + name)

    def original_state_dict(self) -> dict:
        """``state_dict()`` in the original repository's key layout, which its ``--resume`` (``model.load_state_dict``)
        reads: the backbone's children numbered as in its ``nn.Sequential`` (``encoder_q.net.0.weight`` = conv1 ...)
        and the queue buffers at the top level. This model loads it back (see the load hooks)."""
        # only the original's architectures have its layout; other backbones (CPU extensions) keep their names
        numbered = self.encoder_q.original_arch
        names = {name: str(i) for i, name in enumerate(n for n, _ in self.encoder_q.net.named_children())}
        out = {}
        for key, value in self.state_dict().items():
            parts = key.split(".")
            if numbered and len(parts) > 3 and parts[0] in ("encoder_q", "encoder_k") and parts[1] == "net" \
                    and parts[2] in names:
                parts[2] = names[parts[2]]
            elif parts[0] == "criterion" and parts[1] in ("queue", "labels", "queue_ptr"):
                parts = parts[1:]
            out[".".join(parts)] = value
        return out

    @property
    def queue(self):
        return self.criterion.queue

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.mul_(self.m).add_(param_q.data, alpha=1.0 - self.m)

    def forward(self, im_q, im_k, labels=None) -> RelabelOutput:
        self._momentum_update_key_encoder()
        if self.model == "byol":
            q = F.normalize(self.predictor(self.encoder_q(im_q)), dim=1)
            with torch.no_grad():
                k = F.normalize(self.encoder_k(im_k), dim=1)
        else:
            q = F.normalize(self.encoder_q(im_q), dim=1)
            with torch.no_grad():
                if self.shuffle_bn:
                    im_k, idx_unshuffle = batch_shuffle_ddp(im_k)
                k = F.normalize(self.encoder_k(im_k), dim=1)
                if self.shuffle_bn:
                    k = batch_unshuffle_ddp(k, idx_unshuffle)
        with torch.autocast(q.device.type, enabled=False):   # --amp: the encoders in half precision, the loss not
            return self.criterion(q.to(self.queue.dtype), k.to(self.queue.dtype), labels)


class LinearHead(nn.Module):
    """Frozen backbone (features under no-grad) + Linear(dim_in → num_class), weight ~ N(0, 0.01²), bias 0."""

    def __init__(self, net: ModelBase, dim_in: int = 512, num_class: int = 10):
        super().__init__()
        self.net = net
        for param in self.net.parameters():
            param.requires_grad = False
        self.fc = nn.Linear(dim_in, num_class)
        self.fc.weight.data.normal_(mean=0.0, std=0.01)
        self.fc.bias.data.zero_()

    def forward(self, x):
        with torch.no_grad():
            feat = self.net(x, feat=True)
        return self.fc(feat)
