#!/bin/bash
# CIFAR-100-LT training, shared by CIFAR100_train_imb{0.01,0.02,0.1}.sh, which differ only in the imbalance factor.
# Usage: _cifar100_train.sh IMB_FACTOR [FLAGS...]   DATA = the CIFAR-100 python folder (cifar-100-python/ or its parent)
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA=${DATA:-./cifar}
imb=$1
shift
exec bash "$HERE/_launch.sh" LT/paco_cifar.py \
  --data "$DATA" \
  --dataset cifar100 \
  -a resnet32 \
  --epochs 400 \
  -b 128 \
  --lr 0.05 \
  --wd 5e-4 \
  --warmup_epochs 10 \
  --alpha 0.01 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-t 0.05 \
  --moco-k 1024 \
  --moco-dim 32 \
  --mlp \
  --aug cifar100 \
  --imb-factor "$imb" \
  --num_classes 100 \
  --feat_dim 64 \
  --mark "CIFAR100_imb${imb}_R32_mocot0.05_400epochs_lr0.05" \
  "$@"
