#!/usr/bin/env bash
# README large-scale testing command (spec c.2): linear evaluation on ImageNet-1K.
#   PRETRAINED=<checkpoint_0200.pth.tar> DATA=/path/to/imagenet1k bash sh/lincls_large.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data/imagenet1k}
GPUS=${GPUS:-0 1 2 3 4 5 6 7}
PORT=${PORT:-10001}
PRETRAINED=${PRETRAINED:-}
# shellcheck disable=SC2086
python large_scale_shift_experiments/imagenet/main_lincls.py -a resnet50 --lr 30.0 --batch-size 256 --gpus $GPUS \
  ${PRETRAINED:+--pretrained "$PRETRAINED"} --dist-url "tcp://localhost:${PORT}" --multiprocessing-distributed \
  --world-size 1 --rank 0 "$DATA" "$@"
