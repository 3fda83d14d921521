"""convert_to_deit.py writes the original's output: timm / DeiT key names and shapes (spec §b.9, §e: the original's
ViT-B/16 is a timm 0.4.9 VisionTransformer; its base encoder minus the projector head is 150 tensors holding
85,798,656 numbers, the spec's backbone parameter count including the fixed position embedding)."""
from __future__ import annotations

import pytest
import torch

from cacr.imagenet_pretraining.convert_to_deit import convert, deit_key, main
from cacr.imagenet_pretraining.vits import VITS
from common.utils import UserError


def timm_vit_keys(depth: int, width: int, mlp: int, tokens: int, patch: int = 16) -> dict:
    """Key → shape of the original's converted output (timm ``VisionTransformer`` without its head)."""
    keys = {"cls_token": (1, 1, width), "pos_embed": (1, tokens, width),
            "patch_embed.proj.weight": (width, 3, patch, patch), "patch_embed.proj.bias": (width,)}
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update({b + "norm1.weight": (width,), b + "norm1.bias": (width,),
                     b + "attn.qkv.weight": (3 * width, width), b + "attn.qkv.bias": (3 * width,),
                     b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
                     b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                     b + "mlp.fc1.weight": (mlp, width), b + "mlp.fc1.bias": (mlp,),
                     b + "mlp.fc2.weight": (width, mlp), b + "mlp.fc2.bias": (width,)})
    keys.update({"norm.weight": (width,), "norm.bias": (width,)})
    return keys


def pretraining_state(backbone: torch.nn.Module) -> dict:
    """What main_pretrain.py saves under DDP: base encoder (its head = the projector), momentum encoder, predictor."""
    state = {}
    for part in ("base_encoder", "momentum_encoder"):
        state.update({f"module.{part}.{k}": v for k, v in backbone.state_dict().items()})
        state.update({f"module.{part}.heads.head.0.weight": torch.zeros(8, 4),
                      f"module.{part}.heads.head.1.running_mean": torch.zeros(8)})
    state["module.predictor.0.weight"] = torch.zeros(8, 4)
    return state


def test_vit_base_gives_the_originals_150_keys_and_shapes():
    with torch.device("meta"):  # shapes only: no 86M-parameter allocation
        backbone = VITS["vit_base"](num_classes=0)
    out = convert(pretraining_state(backbone))
    expected = timm_vit_keys(depth=12, width=768, mlp=3072, tokens=197)
    assert len(expected) == 150
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert sum(v.numel() for v in out.values()) == 85_798_656


def test_script_output_and_values(tmp_path):
    torch.manual_seed(0)
    backbone = VITS["vit_tiny"](num_classes=0, image_size=32)
    state = pretraining_state(backbone)
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "checkpoint.pth.tar")
    main(["--input", str(tmp_path / "checkpoint.pth.tar"), "--output", str(tmp_path / "deit" / "vit.pth")])
    model = torch.load(tmp_path / "deit" / "vit.pth", weights_only=False)["model"]
    assert {k: tuple(v.shape) for k, v in model.items()} == timm_vit_keys(depth=2, width=64, mlp=128, tokens=5)
    tv = backbone.state_dict()
    assert torch.equal(model["blocks.1.attn.qkv.weight"],
                       tv["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"])
    assert torch.equal(model["blocks.0.mlp.fc2.bias"], tv["encoder.layers.encoder_layer_0.mlp.3.bias"])
    assert torch.equal(model["pos_embed"], tv["encoder.pos_embedding"])
    # an original (timm-layout) checkpoint passes through unchanged, without 'module.' too
    assert convert({f"base_encoder.{k}": v for k, v in model.items()}).keys() == model.keys()


def test_conv_stem_keys():
    assert deit_key("conv_proj.proj.0.weight") == "patch_embed.proj.0.weight"
    assert deit_key("conv_proj.proj.12.bias") == "patch_embed.proj.12.bias"


def test_resnet_checkpoint_is_a_user_error():
    with pytest.raises(UserError, match="not a ViT backbone weight"):
        convert({"module.base_encoder.conv1.weight": torch.zeros(1)})
