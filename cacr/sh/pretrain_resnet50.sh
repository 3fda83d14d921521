#!/usr/bin/env bash
# README ResNet-50, 1000-epoch command (spec c.3). Note: no local crops, so the CACR weighting is inactive
# (quirk 7); add --use-local-crops for the paper's light multi-crop mode.
#   DATA=/path/to/imagenet NODES=2 NODE_RANK=0 ADDR=host PORT=port OUT=./output_dir bash sh/pretrain_resnet50.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data/imagenet}
NODES=${NODES:-1}
NODE_RANK=${NODE_RANK:-0}
ADDR=${ADDR:-localhost}
PORT=${PORT:-10001}
OUT=${OUT:-./runs/cacr/pretrain_resnet50}
python imagenet_pretraining/main_pretrain.py \
  --moco-m-cos --crop-min=.2 --lr=.3 --wd=1.5e-6 --moco-m=0.996 --epochs=1000 \
  --dist-url="tcp://${ADDR}:${PORT}" --multiprocessing-distributed --world-size="$NODES" --rank="$NODE_RANK" \
  --output_dir="$OUT" "$DATA" "$@"
