#!/usr/bin/env bash
# README k-NN command (spec c.3): torchrun --nproc_per_node=$NPROC main_knn.py ...
#   ARCH=vit_base PRETRAINED=<ckpt> DATA=/path/to/imagenet DUMP=./knn_features bash sh/knn.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data/imagenet}
ARCH=${ARCH:-vit_base}
NPROC=${NPROC:-1}
PRETRAINED=${PRETRAINED:-}
DUMP=${DUMP:-./runs/cacr/knn_${ARCH}}
torchrun --standalone --nproc_per_node="$NPROC" imagenet_pretraining/main_knn.py --arch "$ARCH" \
  ${PRETRAINED:+--pretrained_weights "$PRETRAINED"} --data_path "$DATA" --dump_features "$DUMP" "$@"
