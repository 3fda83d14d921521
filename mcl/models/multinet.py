"""Multi-network wrappers of spec §e, built from ``common.backbones``.

* ``*_n`` (number_net == 2): N independent copies of the plain network in ``module_list``.
* ``*_b`` (any other number_net): one multi-branch network, low-level stages shared, high-level stages and
  classifier duplicated per branch (quirk 1). The per-branch stages are taken from freshly built plain
  networks, so block structure and initialisation are the plain network's unless a family says otherwise.

``forward(x)`` returns ``(logits, embeddings)``: two lists of N tensors, (B, num_classes) and
(B, feature_dim) — the globally pooled penultimate feature that enters the classifier.
"""
from __future__ import annotations

import torch.nn as nn

from common.backbones import build_backbone


def classifier_attribute(net: nn.Module) -> str:
    for name in ("classifier", "fc", "linear"):
        if isinstance(getattr(net, name, None), nn.Linear):
            return name
    raise AttributeError(f"{type(net).__name__} has no Linear classifier named classifier / fc / linear")


class IndependentNetworks(nn.Module):
    """``*_n``: N independent plain networks. The embedding is the input of each network's classifier,
    captured with a forward pre-hook so the plain network (and its state_dict keys) stays untouched."""

    backbone = ""

    def __init__(self, num_classes: int, number_net: int = 2, backbone: str | None = None):
        super().__init__()
        self.number_net = number_net
        name = backbone or self.backbone
        self.module_list = nn.ModuleList([build_backbone(name, num_classes=num_classes) for _ in range(number_net)])
        self._captured = {}
        for i, net in enumerate(self.module_list):
            getattr(net, classifier_attribute(net)).register_forward_pre_hook(self._make_hook(i))
        self.feature_dim = self.module_list[0].feature_dim

    def _make_hook(self, i):
        def hook(module, inputs):
            self._captured[i] = inputs[0]
        return hook

    def forward(self, x):
        logits, embeddings = [], []
        for i, net in enumerate(self.module_list):
            logits.append(net(x))
            embeddings.append(self._captured.pop(i))
        return logits, embeddings


class MultiBranchNetwork(nn.Module):
    """``*_b`` base: subclasses register the shared stem and per-branch stages and implement
    ``stem(x)`` and ``branch(i, x) -> (logit, embedding)``."""

    def forward(self, x):
        x = self.stem(x)
        logits, embeddings = [], []
        for i in range(self.number_net):
            logit, embedding = self.branch(i, x)
            logits.append(logit)
            embeddings.append(embedding)
        return logits, embeddings

    @staticmethod
    def plain_networks(name: str, num_classes: int, number_net: int):
        return [build_backbone(name, num_classes=num_classes) for _ in range(number_net)]
