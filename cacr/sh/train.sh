#!/usr/bin/env bash
# Embedded default: CACR small-scale pre-training on the `digits` dataset (scikit-learn, shipped), CPU, a few
# minutes. Prints "initial linear top-1" (untrained encoder) and "final linear top-1" (trained encoder): a linear
# classifier on the frozen 128-d embedding of the train split (BN statistics re-estimated on it), test split top-1.
# Small settings chosen for 2 CPU cores: a CIFAR ResNet-20 encoder (+ linear head, L2 norm) instead of the
# 27M-parameter SmallAlexNet (whose random fc7 features already give ~98% linear accuracy on digits), 3 views
# (Ny 2), batch 128, 4 epochs; the loss uses the README CIFAR-10 values. Override anything: bash sh/train.sh --epochs 8
set -euo pipefail
cd "$(dirname "$0")/.."
python small_scale_experiments/main_ours.py --dataset digits \
  --arch resnet20_option_a --Ny 2 --Ns 128 --alpha 1.0 --beta 1.0 --tau_pos 1.0 --tau_neg 0.9 \
  --epochs 4 --lr 0.06 --lr_decay_epochs 3 --num_workers 2 --log_interval 1000 \
  --monitor linear --monitor-layer -1 --name digits_default "$@"
