#!/usr/bin/env bash
# README linear-classification command (spec c.3), single node.
#   ARCH=resnet50 LR=0.1 PRETRAINED=<ckpt> DATA=/path/to/imagenet OUT=./lincls bash sh/lincls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data/imagenet}
ARCH=${ARCH:-resnet50}
LR=${LR:-0.1}
PORT=${PORT:-10001}
PRETRAINED=${PRETRAINED:-}
OUT=${OUT:-./runs/cacr/lincls_${ARCH}}
python imagenet_pretraining/main_lincls.py -a "$ARCH" --lr "$LR" --dist-url "tcp://localhost:${PORT}" \
  --multiprocessing-distributed --world-size 1 --rank 0 ${PRETRAINED:+--pretrained "$PRETRAINED"} \
  --output_dir "$OUT" "$DATA" "$@"
