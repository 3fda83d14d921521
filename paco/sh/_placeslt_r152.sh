#!/bin/bash
# The Places-LT ResNet-152 flags, shared by PlacesLT_train_R152.sh (which adds --fp16 --reload_torch) and
# PlacesLT_eval_R152.sh (which adds --evaluate --reload, and no --fp16, as in the original).
# Usage: _placeslt_r152.sh [FLAGS...]
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$HERE/_lt_launch.sh" LT/paco_fp16_places.py \
  --dataset places \
  -a resnet152 \
  --epochs 30 \
  -b 128 \
  --lr 0.02 \
  --wd 5e-4 \
  --warmup_epochs 5 \
  --alpha 0.05 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-t 0.2 \
  --moco-k 8192 \
  --moco-dim 128 \
  --mlp \
  --aug-plus \
  --cos \
  --aug sim_sim \
  --num_classes 365 \
  --feat_dim 2048 \
  --mark R152_mocot0.2_augsim_sim_30epochs_lr0.02_t1 \
  "$@"
