#!/usr/bin/env bash
# MoCo-MCL pre-training (README command): ResNet-18, 2 networks, lr 0.03, batch 256, 200 epochs, steps 120/160,
# MoCo-v1 augmentation, one process per GPU.
#   DATA=/path/to/ImageNet bash sh/train_moco_mcl.sh [extra flags]   (on CPU add --nproc-per-node 2 etc.)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA=${DATA:-./data/ImageNet/}
PORT=${PORT:-10001}
"$PYTHON" main_moco_mcl.py -a resnet18 --lr 0.03 --batch-size 256 --number-net 2 \
    --dist-url "tcp://localhost:$PORT" --multiprocessing-distributed --world-size 1 --rank 0 \
    --data "$DATA" "$@"
