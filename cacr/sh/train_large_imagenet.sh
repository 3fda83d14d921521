#!/usr/bin/env bash
# README large-scale command (spec c.2) on an ImageFolder dataset (ImageNet-1K / ImageNet-100 / ImageNet-22K):
#   DATA=/path/to/imagenet100 bash sh/train_large_imagenet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data/imagenet}
GPUS=${GPUS:-0 1 2 3 4 5 6 7}
PORT=${PORT:-10001}
# shellcheck disable=SC2086
python large_scale_shift_experiments/imagenet/main_ours.py -a resnet50 --lr 0.03 --Ny 4 --Ns 256 --gpus $GPUS \
  --moco-k 65536 --tau_pos 1.0 --tau_neg 2.0 --alpha 1.0 --beta 1.0 --mlp --aug-plus --cos \
  --dist-url "tcp://localhost:${PORT}" --multiprocessing-distributed --world-size 1 --rank 0 "$DATA" "$@"
