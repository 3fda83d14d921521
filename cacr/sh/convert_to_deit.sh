#!/usr/bin/env bash
# Convert a ViT pre-training checkpoint to DeiT format (spec b.9):  INPUT=<ckpt> OUTPUT=<out.pth> bash sh/convert_to_deit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
INPUT=${INPUT:-}
OUTPUT=${OUTPUT:-}
python imagenet_pretraining/convert_to_deit.py ${INPUT:+--input "$INPUT"} ${OUTPUT:+--output "$OUTPUT"} "$@"
