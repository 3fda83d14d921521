#!/usr/bin/env bash
# Linear evaluation of network 0 of a MoCo-MCL checkpoint (README command): lr 30, batch 256, 100 epochs.
#   DATA=/path/to/ImageNet PRETRAINED=checkpoint/checkpoint_0199.pth.tar bash sh/train_lincls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA=${DATA:-./data/ImageNet/}
PRETRAINED=${PRETRAINED:-checkpoint/checkpoint_0199.pth.tar}
PORT=${PORT:-10002}
"$PYTHON" main_lincls.py -a resnet18 --lr 30.0 --batch-size 256 --pretrained "$PRETRAINED" \
    --dist-url "tcp://localhost:$PORT" --multiprocessing-distributed --world-size 1 --rank 0 \
    --data "$DATA" "$@"
