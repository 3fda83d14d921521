"""common.backbones: parameter counts against every plain-network entry of tests/golden/*/archs.json, output shapes,
classifier attribute names, initialisation, SplitBatchNorm against the ASCL fixture, registry errors.

Large ImageNet models are built on the meta device (no memory, no forward) to count parameters cheaply.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from common.backbones import (SplitBatchNorm, build_backbone, convert_split_batchnorm, convert_sync_batchnorm,
                              list_backbones)
from common.golden import golden_dir, golden_file

ARCHS_METHODS = ("mcl", "paco", "ascl", "attentionce", "cacr")


def _archs(method: str) -> dict:
    # read at collection to parametrise the tests; a missing file leaves the table empty here and fails
    # test_archs_fixtures_are_present (an empty parametrisation alone would only be reported as skipped)
    path = golden_dir() / method / "archs.json"
    return json.loads(path.read_text()) if path.exists() else {}


MCL, PACO, ASCL, ATTENTIONCE, CACR = (_archs(m) for m in ARCHS_METHODS)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many tiny ops (HCGNet, ShuffleNet): intra-op threads only add overhead, badly so on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", ARCHS_METHODS)
def test_archs_fixtures_are_present(method):
    assert json.loads(golden_file(method, "archs.json").read_text())


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def n_buffers(module: nn.Module) -> int:
    return sum(b.numel() for b in module.buffers())


def build_meta(name: str, num_classes: int = 0, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return build_backbone(name, num_classes, **kwargs)


def _ids(entries):
    return [e[0] for e in entries]


# ------------------------------------------------------------------------------------------------------ MCL
MCL_SINGLE = [(k, v) for k, v in MCL.items() if isinstance(v, dict) and "single_net_params" in v]
CLASSIFIER_NAME = {"ResNet": {"classifier", "fc"}, "WideResNet": {"fc"}, "ShuffleNetV2": {"linear"},
                   "HCGNet": {"classifier"}}


@pytest.mark.parametrize("name,entry", MCL_SINGLE, ids=_ids(MCL_SINGLE))
def test_mcl_single_network_counts(name, entry):
    model = build_meta(name, entry["num_classes"])
    assert n_params(model) == entry["single_net_params"]
    assert model.feature_dim == entry["feature_dim"]
    for child, count in entry["single_net_children_params"].items():
        assert n_params(model.get_submodule(child)) == count, child
    # the classifier sits under the original's attribute name; without it only the classifier is missing
    head = [c for c in entry["single_net_children_params"] if c in ("classifier", "fc", "linear")]
    assert len(head) == 1
    assert isinstance(getattr(model, head[0]), nn.Linear)
    assert getattr(model, head[0]).out_features == entry["logit_dim"]
    no_head = build_meta(name, 0)
    assert n_params(no_head) == entry["single_net_params"] - entry["single_net_children_params"][head[0]]
    assert isinstance(getattr(no_head, head[0]), nn.Identity)


def test_mcl_moco_encoder_count():
    entry = MCL["moco_mcl_resnet18"]
    model = build_meta("resnet18", entry["output_dim"])
    assert n_params(model) == entry["encoder_params"]
    assert model.feature_dim == entry["feature_dim_before_fc"]


# ------------------------------------------------------------------------------------------------------ PaCo
PACO_NETS = [(k, v) for k, v in PACO.items() if isinstance(v, dict) and "backbone_with_fc_params" in v]


def paco_name(key: str) -> str:
    arch, variant = key.split("/")
    return f"{arch}_option_a" if variant.startswith("cifar") else arch


@pytest.mark.parametrize("key,entry", PACO_NETS, ids=_ids(PACO_NETS))
def test_paco_backbone_counts(key, entry):
    name = paco_name(key)
    with_fc = build_meta(name, entry["num_classes"])
    assert n_params(with_fc) == entry["backbone_with_fc_params"]
    assert isinstance(with_fc.fc, nn.Linear) and with_fc.fc.out_features == entry["num_classes"]
    without_fc = build_meta(name, 0)
    assert n_params(without_fc) == entry["backbone_without_fc_params"]
    assert without_fc.feature_dim == entry["feat_dim"]


# ------------------------------------------------------------------------------------------------------ ASCL
ASCL_NETS = [(k, v) for k, v in ASCL.items() if isinstance(v, dict) and "backbone_params" in v]


@pytest.mark.parametrize("key,entry", ASCL_NETS, ids=_ids(ASCL_NETS))
def test_ascl_backbone(key, entry):
    model = build_meta(f"cifar_{entry['arch']}", 0, maxpool=entry["maxpool_kept"], bn_splits=entry["bn_splits"])
    assert n_params(model) == entry["backbone_params"]
    assert model.feature_dim == entry["feat_dim"]
    assert hasattr(model, "maxpool") == entry["maxpool_kept"]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == entry["num_bn_layers"]
    assert all(isinstance(m, SplitBatchNorm) and m.num_splits == entry["bn_splits"] for m in bns)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.bias is None
    if entry["arch"] != "resnet18":
        return  # resnet18 covers the stem / max-pool shapes; the deeper nets only cost time
    torch.manual_seed(0)
    model = build_backbone(f"cifar_{entry['arch']}", 0, maxpool=entry["maxpool_kept"], bn_splits=entry["bn_splits"])
    model.eval()
    x = torch.randn(1, 3, entry["input_size"], entry["input_size"])
    with torch.no_grad():
        h = model.relu(model.bn1(model.conv1(x)))
        if entry["maxpool_kept"]:
            h = model.maxpool(h)
        h = model.layer4(model.layer3(model.layer2(model.layer1(h))))
        assert list(h.shape[1:]) == entry["last_stage_shape"]
        assert model(x).shape == (1, entry["feat_dim"])


# ------------------------------------------------------------------------------------------------ AttentioNCE
def test_attentionce_encoder():
    entry = ATTENTIONCE["resnet50_cifar_variant"]
    model = build_backbone("cifar_resnet50", 0)
    assert n_params(model) == entry["encoder_params"]
    head_bn_buffers = 2 * entry["projection_hidden_dim"] + 1  # BatchNorm1d(512) of the projection head
    assert n_buffers(model) == entry["buffers_numel"] - head_bn_buffers
    assert model.feature_dim == entry["feature_dim"]
    conv = entry["conv1"]
    assert model.conv1.kernel_size == tuple(conv["kernel_size"]) and model.conv1.stride == tuple(conv["stride"])
    assert model.conv1.padding == tuple(conv["padding"]) and model.conv1.out_channels == conv["out_channels"]
    assert model.conv1.bias is None
    kept = [type(c).__name__ for n, c in model.named_children() if n != "fc"]
    assert kept == entry["encoder_children"]
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2048)
    for size in ("10", "100", "200"):
        head = ATTENTIONCE[f"linear_head_{size}"]
        assert head["frozen_encoder_params"] == n_params(model)
        assert n_params(build_meta("cifar_resnet50", head["num_classes"])) - n_params(model) == head["params"]


# ------------------------------------------------------------------------------------------------------ CACR
CACR_ALEXNETS = [(k, v) for k, v in CACR.items() if k.startswith("small_alexnet")]


@pytest.mark.parametrize("key,entry", CACR_ALEXNETS, ids=_ids(CACR_ALEXNETS))
def test_cacr_small_alexnet_structure(key, entry):
    model = build_meta("small_alexnet", feat_dim=entry["output_dim"], input_size=entry["input_size"])
    assert n_params(model) == entry["total_params"]
    assert n_buffers(model) == entry["buffers_numel"]
    assert [n_params(b) for b in model.blocks] == entry["block_params"]
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == entry["param_shapes"]
    assert model.feature_dim == entry["output_dim"]


@pytest.mark.parametrize("input_size", [32, 64])
def test_cacr_small_alexnet_outputs(input_size):
    entry = next(v for _, v in CACR_ALEXNETS if v["input_size"] == input_size)
    torch.manual_seed(0)
    model = build_backbone("small_alexnet", feat_dim=entry["output_dim"], input_size=input_size).eval()
    x = torch.randn(2, 3, input_size, input_size)
    with torch.no_grad():
        for index, shape in entry["out_shape_by_layer_index"].items():
            assert list(model(x, layer_index=int(index)).shape[1:]) == shape, index
        out = model(x)
        lin = model(x, layer_index=entry["linear_eval_layer_index"])
    assert lin.shape[1] == entry["linear_eval_feature_dim"]
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_cacr_resnet_and_vit_counts():
    assert n_params(build_meta("resnet50", 1000)) == CACR["resnet50_lincls"]["total_params"]
    assert build_meta("resnet50").feature_dim == CACR["resnet50_lincls"]["feature_dim"]
    assert n_params(build_meta("resnet50")) == CACR["v3_moco_resnet50"]["backbone_params"]
    for key in ("large_scale_moco_resnet50_dim128_mlpFalse",):
        entry = CACR[key]
        assert n_params(build_meta("resnet50", entry["output_dim"])) == entry["encoder_q_params"]
    vit = build_meta("vit_b_16", 1000)
    assert n_params(vit) == CACR["vits_vit_base"]["total_params"]
    vit0 = build_meta("vit_b_16")
    assert n_params(vit0) == CACR["v3_moco_vit_base"]["backbone_params"]
    assert vit0.feature_dim == CACR["v3_moco_vit_base"]["backbone_feature_dim"]


# ------------------------------------------------------------------------------------------------ forward shapes
CIFAR_NETS = {  # name -> classifier attribute of the original
    "resnet32": "classifier", "resnet56": "classifier", "resnet110": "classifier",
    "resnet20_option_a": "fc", "resnet32_option_a": "fc",
    "wrn_16_2": "fc", "wrn_40_2": "fc", "wrn_28_4": "fc",
    "ShuffleNetV2_05x": "linear", "ShuffleNetV2_1x": "linear",
    "hcgnet_A1": "classifier", "hcgnet_A2": "classifier",
    "cifar_resnet18": "fc",
}


@pytest.mark.parametrize("name", sorted(CIFAR_NETS))
def test_cifar_forward_shapes(name):
    """num_classes=0 -> pooled feature (B, feature_dim); num_classes>0 -> logits from the original's classifier.
    16x16 inputs keep this cheap: every model pools globally, so shapes do not depend on the resolution."""
    no_head = build_meta(name)
    assert isinstance(no_head.feature_dim, int)
    assert isinstance(getattr(no_head, CIFAR_NETS[name]), nn.Identity)
    torch.manual_seed(0)
    model = build_backbone(name, num_classes=7)
    head = getattr(model, CIFAR_NETS[name])
    assert isinstance(head, nn.Linear) and head.in_features == model.feature_dim and head.out_features == 7
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        model.train()
        features = model.forward_features(x)
        assert features.shape == (2, model.feature_dim) and torch.isfinite(features).all()
        model.eval()
        logits = model(x)
        assert logits.shape == (2, 7)
        # forward == classifier(forward_features) for every model
        assert torch.allclose(logits, head(model.forward_features(x)), atol=1e-5)
    # with num_classes=0 forward is forward_features
    setattr(model, CIFAR_NETS[name], nn.Identity())
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_features(x))


def test_small_forward_other_models():
    torch.manual_seed(0)
    model = build_backbone("cifar_resnet18", 5, maxpool=True, bn_splits=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    vit = build_backbone("vit_small", image_size=32).eval()
    with torch.no_grad():
        assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 384)
    vit_head = build_backbone("vit_small", 3, image_size=32)
    assert isinstance(vit_head.heads.head, nn.Linear) and vit_head.heads.head.out_features == 3
    imagenet = build_backbone("resnet18", 4).eval()
    with torch.no_grad():
        assert imagenet(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d) and imagenet.conv1.kernel_size == (7, 7)


def test_option_a_structure():
    model = build_backbone("resnet32_option_a", 100)
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "bn1", "layer1", "layer2", "layer3", "avgpool", "fc"]
    # the option-A shortcut has no parameters: layer2.0 has only conv1/bn1/conv2/bn2 tensors
    keys = [k for k in model.state_dict() if k.startswith("layer2.0.")]
    assert all(k.split(".")[2] in ("conv1", "bn1", "conv2", "bn2") for k in keys)
    x = torch.randn(2, 16, 8, 8)
    out = model.layer2[0].shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and out[:, :8].abs().sum() == 0
    # MCL's resnet32 uses projection shortcuts instead
    mcl = build_backbone("resnet32", 100)
    assert "layer2.0.downsample.0.weight" in mcl.state_dict()
    assert [n for n, _ in mcl.named_children()] == ["conv1", "bn1", "relu", "layer1", "layer2", "layer3",
                                                     "avgpool", "classifier"]


def test_initialisation():
    torch.manual_seed(0)
    # PaCo option A: Kaiming-normal fan_in for Linear and Conv
    fc = build_backbone("resnet32_option_a", 100).fc
    assert abs(fc.weight.std().item() - math.sqrt(2.0 / 64)) < 0.02
    # MCL CIFAR ResNet: Kaiming fan_out convs, default Linear init (uniform within 1/sqrt(fan_in))
    net = build_backbone("resnet56", 100)
    assert net.classifier.weight.abs().max() <= 1 / math.sqrt(64)
    conv = net.layer3[0].conv2.weight
    assert abs(conv.std().item() - math.sqrt(2.0 / (9 * 64))) < 0.005
    # WRN: conv N(0, 2/(k*k*out)), Linear bias zero
    wrn = build_backbone("wrn_16_2", 10)
    assert torch.count_nonzero(wrn.fc.bias) == 0
    assert abs(wrn.block3.layer[0].conv2.weight.std().item() - math.sqrt(2.0 / (9 * 128))) < 0.005
    # SmallAlexNet: N(0, 0.02^2) weights, zero biases
    alex = build_backbone("small_alexnet")
    assert abs(alex.blocks[6][0].weight.std().item() - 0.02) < 0.001
    assert torch.count_nonzero(alex.blocks[7][0].bias) == 0
    # ASCL / AttentioNCE conv1 keeps PyTorch's default init (created after the torchvision init loop)
    stem = build_backbone("cifar_resnet18").conv1.weight
    assert stem.abs().max() <= 1 / math.sqrt(27)


# ------------------------------------------------------------------------------------------------------ split BN
def test_split_batchnorm_fixture():
    fixture = torch.load(golden_file("ascl", "split_batchnorm_s8.pt"), weights_only=True)
    t, h = fixture["tensors"], fixture["hparams"]
    bn = SplitBatchNorm(h["num_features"], h["num_splits"], eps=h["eps"], momentum=h["momentum"])
    bn.load_state_dict({k: t[k] for k in ("weight", "bias", "running_mean", "running_var")}, strict=False)
    bn.train()
    y_train = bn(t["x"])
    tol = dict(atol=1e-5, rtol=1e-4)
    assert torch.allclose(y_train, t["y_train"], **tol)
    assert torch.allclose(bn.running_mean, t["running_mean_after"], **tol)
    assert torch.allclose(bn.running_var, t["running_var_after"], **tol)
    assert bn.num_batches_tracked.item() == t["num_batches_tracked_after"].item()
    bn.eval()
    assert torch.allclose(bn(t["x_eval"]), t["y_eval"], **tol)


def test_split_batchnorm_math_and_conversion():
    torch.manual_seed(0)
    x = torch.randn(12, 3, 2, 2)
    bn = SplitBatchNorm(3, 4)
    y = bn(x)
    for s in range(4):  # split s = samples n with n % 4 == s, normalised with its own biased statistics
        part = x[s::4]
        mean = part.mean(dim=(0, 2, 3), keepdim=True)
        var = part.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        assert torch.allclose(y[s::4], (part - mean) / torch.sqrt(var + 1e-5), atol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        bn(torch.randn(6, 3, 2, 2))

    plain = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    with torch.no_grad():
        plain[1].running_mean.fill_(0.5)
        plain[1].weight.fill_(2.0)
    plain.eval()
    x = torch.randn(8, 3, 2, 2)
    expected = plain(x)
    converted = convert_split_batchnorm(plain, 8)
    assert isinstance(converted[1], SplitBatchNorm) and isinstance(converted[2][0], SplitBatchNorm)
    assert not converted[1].training
    assert torch.allclose(converted(x), expected, atol=1e-6)
    # with one split, SplitBatchNorm is plain batch norm (outputs and running stats)
    reference, single = nn.BatchNorm2d(3), SplitBatchNorm(3, 1)
    x = torch.randn(8, 3, 2, 2)
    assert torch.allclose(reference(x), single(x), atol=1e-6)
    assert torch.allclose(reference.running_var, single.running_var, atol=1e-6)


def test_convert_sync_batchnorm_is_noop_without_distributed():
    model = build_backbone("resnet20_option_a")
    assert convert_sync_batchnorm(model) is model
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


# ------------------------------------------------------------------------------------------------------ registry
def test_registry():
    names = list_backbones()
    contract = ["resnet20_option_a", "resnet32_option_a", "resnet44_option_a", "resnet56_option_a",
                "resnet110_option_a", "resnet1202_option_a", "resnet32", "resnet56", "resnet110", "wrn_16_2",
                "wrn_40_2", "wrn_28_4", "ShuffleNetV2_05x", "ShuffleNetV2_1x", "hcgnet_A1", "hcgnet_A2",
                "cifar_resnet18", "cifar_resnet34", "cifar_resnet50", "small_alexnet", "resnet18", "resnet34",
                "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
                "wide_resnet101_2", "resnet200", "resnext101_32x4d", "vit_b_16"]
    assert set(contract) <= set(names)
    with pytest.raises(ValueError) as info:
        build_backbone("resnet9000")
    message = str(info.value)
    assert "resnet9000" in message and "resnet32_option_a" in message and "hcgnet_A1" in message
    with pytest.raises(ValueError, match="num_classes"):
        build_backbone("resnet32", num_classes=-1)
    with pytest.raises(ValueError, match="classifier"):
        build_backbone("small_alexnet", num_classes=10)
    for name in set(names) - {"resnet1202_option_a"}:  # int feature_dim everywhere (1202 is built above)
        assert isinstance(build_meta(name).feature_dim, int), name
