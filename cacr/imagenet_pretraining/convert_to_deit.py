"""Convert a ViT pre-training checkpoint to a DeiT-style ``{'model': state_dict}`` (spec §b.9).

Keeps ``module.base_encoder.*`` without the projection head, strips the prefix.
"""
from __future__ import annotations

import argparse
import os

from common.checkpoint import atomic_torch_save, load_checkpoint
from common.utils import UserError, run_main


def convert(state_dict: dict, prefix: str = "module.base_encoder.") -> dict:
    if not any(k.startswith(prefix) for k in state_dict) and any(k.startswith(prefix[7:]) for k in state_dict):
        prefix = prefix[7:]  # a one-process checkpoint has no 'module.'
    out = {k[len(prefix):]: v for k, v in state_dict.items()
           if k.startswith(prefix) and not k[len(prefix):].startswith(("head", "heads"))}
    if not out:
        raise UserError(f"no '{prefix}*' weights in the checkpoint; pass a main_pretrain.py checkpoint")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert a MoCo-v3 / CACR ViT checkpoint to DeiT format")
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
