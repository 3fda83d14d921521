#!/usr/bin/env bash
# README item 3: ImageNet-1K with the official MoCo recipe and the ASCL builder (ResNet-50, MoCo v2 settings:
# batch 256, lr 0.03 cosine, 200 epochs, MLP head, aug-plus; queue 65536, T1 0.1, T2 0.05, k_nn 1).
# DATA = ImageNet root holding train/<wnid>/*.JPEG.  One node, all its GPUs (CPU: add --nproc-per-node N).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/imagenet}
PORT=${PORT:-10001}
python ImageNet-1K/main_moco.py -a resnet50 --lr 0.03 --batch-size 256 --epochs 200 --mlp --aug-plus --cos \
  --moco-k 65536 --moco-t1 0.1 --moco-t2 0.05 \
  --dist-url "tcp://127.0.0.1:${PORT}" --multiprocessing-distributed --world-size 1 --rank 0 "$DATA" "$@"
