#!/usr/bin/env bash
# README large-scale command (spec c.2) on WebVision-v1 (root with info/train_filelist_{google,flickr}.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data/webvision}
GPUS=${GPUS:-0 1 2 3 4 5 6 7}
PORT=${PORT:-10001}
# shellcheck disable=SC2086
python large_scale_shift_experiments/webvision/main_ours.py -a resnet50 --lr 0.03 --Ny 4 --Ns 256 --gpus $GPUS \
  --moco-k 65536 --tau_pos 1.0 --tau_neg 2.0 --alpha 1.0 --beta 1.0 --mlp --aug-plus --cos \
  --dist-url "tcp://localhost:${PORT}" --multiprocessing-distributed --world-size 1 --rank 0 "$DATA" "$@"
