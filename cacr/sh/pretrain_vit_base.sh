#!/usr/bin/env bash
# README ViT-B/16, 300-epoch command (spec c.3); dist-url env:// (MASTER_ADDR / MASTER_PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data/imagenet}
NODES=${NODES:-1}
NODE_RANK=${NODE_RANK:-0}
OUT=${OUT:-./runs/cacr/pretrain_vit_base}
python imagenet_pretraining/main_pretrain.py \
  -a vit_base --optimizer=adamw --lr=1.5e-4 --weight-decay=.1 --epochs=300 --warmup-epochs=40 \
  --moco-m-cos --moco-t=.2 --multiprocessing-distributed --world-size="$NODES" --rank="$NODE_RANK" \
  --output_dir="$OUT" "$DATA" "$@"
