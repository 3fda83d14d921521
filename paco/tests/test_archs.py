"""The PaCo wrapper of every scripted combination has the original's size (tests/golden/paco/archs.json):
query encoder with the BN MLP head, classifier, momentum copies (linear_k only in the LT wrapper), queue shape."""
from __future__ import annotations

import json

import pytest
import torch

from common.golden import golden_file
from paco.main_paco import build_model, parse_args

COMBOS = {  # archs.json key → entry variant and flags as the scripts pass them
    "resnet32/cifar100": ("cifar", ["--imb-factor", "0.01", "--alpha", "0.01", "--feat_dim", "64",
                                    "--moco-dim", "32", "--moco-k", "1024"]),
    "resnet50/imagenet_lt": ("lt", ["-a", "resnet50"]),
    "resnext50_32x4d/imagenet_lt": ("lt", ["-a", "resnext50_32x4d"]),
    "resnext101_32x4d/imagenet_lt": ("lt", ["-a", "resnext101_32x4d"]),
    "resnet50/inat": ("lt", ["-a", "resnet50", "--dataset", "inat", "--num_classes", "8142"]),
    "resnet152/inat": ("lt", ["-a", "resnet152", "--dataset", "inat", "--num_classes", "8142"]),
    "resnet152/places": ("places", ["-a", "resnet152", "--dataset", "places"]),
    "resnet50/imagenet": ("imagenet", ["-a", "resnet50", "-b", "256"]),
    "resnet101/imagenet": ("imagenet", ["-a", "resnet101", "-b", "256"]),
    "resnet200/imagenet": ("imagenet", ["-a", "resnet200", "-b", "256"]),
}


@pytest.mark.parametrize("key", sorted(COMBOS))
def test_wrapper_sizes_match_original(key):
    expected = json.loads(golden_file("paco", "archs.json").read_text())[key]
    variant, flags = COMBOS[key]
    args = parse_args(variant, flags + ["--no-multiprocessing-distributed"])
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_model(args)
    count = lambda params: sum(p.numel() for p in params)  # noqa: E731
    assert count(p for p in model.parameters() if p.requires_grad) == expected["paco_trainable_params"]
    assert count(model.parameters()) == expected["paco_total_params_incl_momentum_copies"]
    assert count(model.encoder_q.parameters()) == expected["paco_encoder_q_params"]
    assert count(model.linear.parameters()) == expected["paco_classifier_params"]
    assert list(model.queue.shape) == expected["paco_queue_shape"]
    assert model.linear.in_features == expected["feat_dim"]
