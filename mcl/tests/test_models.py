"""Multi-network wrappers (§e, quirk 1): parameter counts of every architecture for N = 2, 3, 4 and of the
shared / per-branch children, feature dims, and the (logits, embeddings) interface."""
import json

import pytest
import torch

from common.golden import golden_file
from mcl.models import get_model
from mcl.utils import cal_param_size

CIFAR = ["resnet32", "resnet56", "resnet110", "wrn_16_2", "wrn_40_2", "wrn_28_4", "ShuffleNetV2_05x",
         "ShuffleNetV2_1x", "hcgnet_A1", "hcgnet_A2"]


@pytest.fixture(scope="module")
def archs():
    return json.loads(golden_file("mcl", "archs.json").read_text())


def children_params(model):
    out = {}
    for name, child in model.named_children():
        if name == "features" and not hasattr(model, "module_list"):
            for sub, grandchild in child.named_children():
                out[f"features.{sub}"] = sum(p.numel() for p in grandchild.parameters())
        else:
            out[name] = sum(p.numel() for p in child.parameters())
    return out


@pytest.mark.parametrize("arch", CIFAR + ["resnet18", "resnet34"])
def test_parameter_counts(arch, archs):
    ref = archs[arch]
    for n in (2, 3, 4):
        with torch.device("meta"):  # shapes only: parameter counting needs no memory or initialisation
            model = get_model(arch, ref["num_classes"], n)
        assert type(model).__name__.endswith("_n" if n == 2 else "_b")
        assert cal_param_size(model) == ref[f"params_number_net_{n}"], (arch, n)
        if n == 4:
            assert children_params(model) == {k: v for k, v in ref["children_params_number_net_4"].items()}
        assert model.feature_dim == ref["feature_dim"]


@pytest.mark.parametrize("arch,n", [("resnet32", 2), ("resnet32", 3), ("wrn_16_2", 4), ("ShuffleNetV2_05x", 4),
                                    ("hcgnet_A1", 3)])
def test_forward_returns_logits_and_embeddings(arch, n, archs):
    with torch.device("meta"):  # wiring and shapes only (the CPU suite stays fast)
        model = get_model(arch, 100, n).eval()
        logits, embeddings = model(torch.randn(2, 3, 32, 32))
    assert len(logits) == len(embeddings) == n
    assert all(t.shape == (2, 100) for t in logits)
    assert all(e.shape == (2, archs[arch]["feature_dim"]) for e in embeddings)
