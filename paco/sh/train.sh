#!/bin/bash
# Embedded default: PaCo on a long-tailed subset of scikit-learn digits (32x32, imbalance 0.1), CIFAR recipe
# scaled down (ResNet-32, small queue, few epochs), one CPU process. Extra flags ("$@") override, e.g.
#   bash sh/train.sh --epochs 2
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python "$HERE/LT/paco_cifar.py" \
  --dataset digits --imb-factor 0.1 -a resnet32 --feat_dim 64 \
  --epochs 15 --warmup_epochs 1 -b 32 --lr 0.05 --wd 5e-4 \
  --alpha 0.01 --beta 1.0 --gamma 1.0 --moco-t 0.05 --moco-k 512 --moco-dim 32 --aug cifar100 \
  --no-multiprocessing-distributed --seed 0 -j 0 --mark digits_default \
  "$@"
