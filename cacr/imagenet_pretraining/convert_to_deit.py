"""Convert a ViT pre-training checkpoint to a DeiT-style ``{'model': state_dict}`` (spec §b.9).

Keeps ``module.base_encoder.*`` without the projection head, strips the prefix and writes the key names of the
original's output: the original's ViT is a timm ``VisionTransformer``, so DeiT (timm) loads its output directly.
The project's ViT has torchvision's layout (``vits.py``), so its keys are renamed with the table below; tensors
keep their shapes, which are the same in both layouts (timm's ``attn.qkv`` and torchvision's ``in_proj`` both stack
q, k, v in that order). ViT-B/16 gives 150 tensors: ``cls_token``, ``pos_embed``, ``patch_embed.proj.{weight,bias}``,
12 per block (``blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2`` weights and biases),
``norm.{weight,bias}``. Checkpoints already in timm's layout (the original's) pass through unchanged.
"""
from __future__ import annotations

import argparse
import os
import re

from common.checkpoint import atomic_torch_save, load_checkpoint
from common.utils import HelpFormatter, UserError, run_main

# torchvision VisionTransformer key (regex, after the prefix) → timm / DeiT key
TORCHVISION_TO_TIMM = (
    (r"class_token", r"cls_token"),
    (r"encoder\.pos_embedding", r"pos_embed"),
    (r"conv_proj\.proj\.(.+)", r"patch_embed.proj.\1"),  # the conv stem (MoCo-v3's ConvStem.proj Sequential)
    (r"conv_proj\.(weight|bias)", r"patch_embed.proj.\1"),  # the 16×16 patch conv
    (r"encoder\.layers\.encoder_layer_(\d+)\.ln_1\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (r"encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (r"encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layers\.encoder_layer_(\d+)\.ln_2\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (r"encoder\.layers\.encoder_layer_(\d+)\.mlp\.0\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (r"encoder\.layers\.encoder_layer_(\d+)\.mlp\.3\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"encoder\.ln\.(weight|bias)", r"norm.\1"),
)
# the timm names themselves (a checkpoint of the original code)
TIMM_KEYS = (r"cls_token", r"pos_embed", r"patch_embed\.proj\..+",
             r"blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)",
             r"norm\.(weight|bias)")
_TABLE = [(re.compile(src + r"\Z"), dst) for src, dst in TORCHVISION_TO_TIMM]
_TIMM = [re.compile(k + r"\Z") for k in TIMM_KEYS]


def deit_key(name: str) -> str:
    """The DeiT (timm) name of a ViT backbone key in torchvision or timm layout; UserError for anything else."""
    for pattern, replacement in _TABLE:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    if any(p.match(name) for p in _TIMM):
        return name
    raise UserError(f"'{name}' is not a ViT backbone weight; convert_to_deit.py converts the checkpoint of a "
                    f"ViT pre-training (main_pretrain.py -a vit_base ...), not of a ResNet")


def convert(state_dict: dict, prefix: str = "module.base_encoder.") -> dict:
    if not any(k.startswith(prefix) for k in state_dict) and any(k.startswith(prefix[7:]) for k in state_dict):
        prefix = prefix[7:]  # a one-process checkpoint has no 'module.'
    out = {}
    for k, v in state_dict.items():
        name = k[len(prefix):]
        if k.startswith(prefix) and not name.startswith(("head", "heads")):  # the projector is the head
            out[deit_key(name)] = v
    if not out:
        raise UserError(f"no '{prefix}*' weights in the checkpoint; pass a main_pretrain.py checkpoint")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert a MoCo-v3 / CACR ViT checkpoint to DeiT format "
                                                 "({'model': state_dict} with timm's key names)",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--input", type=str, required=True, help="input checkpoint")
    parser.add_argument("--output", type=str, required=True, help="output path")
    args = parser.parse_args(argv)
    state = load_checkpoint(args.input)
    state_dict = convert(state.get("state_dict", state))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    atomic_torch_save({"model": state_dict}, args.output)
    print(f"wrote {len(state_dict)} tensors to {args.output}")


if __name__ == "__main__":
    run_main(main)
