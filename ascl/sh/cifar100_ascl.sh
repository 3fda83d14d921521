#!/usr/bin/env bash
# README command 1: ASCL, MoCo framework, ResNet-18, 5 neighbours, T1 0.1, T2 0.05, weak teacher augmentation,
# queue 4096, batch 256, 200 epochs, then 100 linear-eval epochs.  DATA = the folder holding cifar-100-python/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/CIFAR100}
GPU=${GPU:-0}
python main.py --epochs 200 --gpuid "$GPU" --dataset cifar100 --data_path "$DATA" --K 5 --type ascl \
  --t1 0.1 --t2 0.05 --aug weak_augment "$@"
