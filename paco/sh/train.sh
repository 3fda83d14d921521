#!/bin/bash
# Embedded default: PaCo on a long-tailed subset of scikit-learn digits (32x32, imbalance 0.1: 133 -> 13 images per
# class), tested on the balanced digits test split with top-1 and many / medium / few-shot accuracy.
# The ImageNet-LT entry point (warm-up + cosine LR, T 0.2, alpha 0.05) scaled down for one CPU process: the CIFAR
# ResNet-32, batch 32, queue 512, projection 32, 20 epochs, MoCo-v2 views.
# Extra flags ("$@") override, e.g.  bash sh/train.sh --epochs 2
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python "$HERE/LT/paco_lt.py" \
  --dataset digits -a resnet32 --feat_dim 64 \
  --epochs 20 --warmup_epochs 2 -b 32 --lr 0.05 --wd 5e-4 \
  --alpha 0.05 --beta 1.0 --gamma 1.0 --moco-t 0.2 --moco-k 512 --moco-dim 32 --aug mocov2_mocov2 \
  --no-multiprocessing-distributed --seed 0 -j 0 --mark digits_default \
  "$@"
