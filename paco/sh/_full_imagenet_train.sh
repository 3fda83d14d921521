#!/bin/bash
# Full-ImageNet training, shared by train_resnet{50,101,200}.sh (and through them the eval scripts), which differ
# only in the values below (resnet200 also passes --fp16 as its first extra flag). DATA = ImageFolder root.
# Usage: _full_imagenet_train.sh ARCH AUG RAND_N RAND_M MARK [FLAGS...]
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA=${DATA:-./data}
arch=$1 aug=$2 rand_n=$3 rand_m=$4 mark=$5
shift 5
exec bash "$HERE/_launch.sh" Full-ImageNet/paco_imagenet.py \
  --data "$DATA" \
  -a "$arch" \
  --dataset imagenet \
  --epochs 400 \
  -b 256 \
  --lr 0.04 \
  --wd 1e-4 \
  --warmup_epochs 10 \
  --alpha 0.05 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-t 0.2 \
  --moco-k 8192 \
  --mlp \
  --aug-plus \
  --cos \
  --aug "$aug" \
  --rand_n "$rand_n" \
  --rand_m "$rand_m" \
  --mark "$mark" \
  "$@"
