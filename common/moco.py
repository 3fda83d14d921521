"""The MoCo v2 encoder pair, built the same way by the queue-MoCo methods (ASCL's ImageNet builder, CACR's
large-scale builder, MoCo-MCL's N pairs) as in facebookresearch/moco's ``builder.py``."""
from __future__ import annotations

import torch.nn as nn


def moco_encoder_pair(base_encoder, dim: int, mlp: bool = False) -> tuple[nn.Module, nn.Module]:
    """``(encoder_q, encoder_k)``: ``base_encoder(num_classes=dim)`` twice (its ``fc`` outputs ``dim``). ``mlp``: MoCo
    v2's head, a hidden ``Linear(d, d)`` + ReLU in front of each ``fc``. The key encoder starts as a copy of the query
    encoder and gets no gradient (a momentum update moves it).

    The order of construction is the original's (query, key, then the query's and the key's hidden layers), so a
    seeded run draws the same initial weights, and the module names (``fc.0``, ``fc.2``) load its checkpoints."""
    encoder_q = base_encoder(num_classes=dim)
    encoder_k = base_encoder(num_classes=dim)
    if mlp:
        for encoder in (encoder_q, encoder_k):
            dim_mlp = encoder.fc.weight.shape[1]
            encoder.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), encoder.fc)
    for param_q, param_k in zip(encoder_q.parameters(), encoder_k.parameters()):
        param_k.data.copy_(param_q.data)
        param_k.requires_grad = False
    return encoder_q, encoder_k
