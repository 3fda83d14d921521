#!/bin/bash
# ImageNet-LT training, shared by ImageNetLT_train_{R50,X50,X101}.sh (and through them the eval scripts), which
# differ only in the six values below (spec §c).
# Usage: _imagenetlt_train.sh ARCH LR MOCO_T AUG RANDAUG_N MARK [FLAGS...]
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
arch=$1 lr=$2 moco_t=$3 aug=$4 randaug_n=$5 mark=$6
shift 6
exec bash "$HERE/_lt_launch.sh" LT/paco_lt.py \
  -a "$arch" \
  --lr "$lr" \
  --moco-t "$moco_t" \
  --aug "$aug" \
  --randaug_n "$randaug_n" \
  --mark "$mark" \
  --dataset imagenet \
  --epochs 400 \
  -b 128 \
  --wd 5e-4 \
  --warmup_epochs 10 \
  --alpha 0.05 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-k 8192 \
  --moco-dim 128 \
  --mlp \
  --aug-plus \
  --cos \
  --num_classes 1000 \
  --feat_dim 2048 \
  --randaug_m 10 \
  "$@"
