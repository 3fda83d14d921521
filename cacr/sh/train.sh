#!/usr/bin/env bash
# Embedded default: CACR small-scale pre-training on the `digits` dataset (scikit-learn, shipped), CPU, a few
# minutes. Prints "initial linear top-1" (untrained encoder) and "final linear top-1" (trained encoder).
# Small settings chosen for 2 CPU cores: a CIFAR ResNet-20 encoder instead of the 27M-parameter SmallAlexNet,
# 3 views (Ny 2), batch 128, 30 epochs. Any flag can be overridden: bash sh/train.sh --epochs 5
set -euo pipefail
cd "$(dirname "$0")/.."
python small_scale_experiments/main_ours.py --dataset digits \
  --arch resnet20_option_a --Ny 2 --Ns 128 --alpha 1.0 --beta 1.0 --tau_pos 1.0 --tau_neg 0.9 \
  --epochs 30 --lr 0.06 --lr_decay_epochs 24 27 --num_workers 2 --log_interval 1000 --monitor-epochs 100 \
  --name digits_default "$@"
