#!/usr/bin/env bash
# README command 2 (main_simple.py, no wandb).  The README passed --K 5, which in main_simple.py is the QUEUE
# size (quirk 5); the intended 5 neighbours are --nn_num 5.  DATA = the folder holding cifar-100-python/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/CIFAR100}
GPU=${GPU:-0}
python main_simple.py --epochs 200 --gpuid "$GPU" --dataset cifar100 --data_path "$DATA" --nn_num 5 --type ascl \
  --t1 0.1 --t2 0.05 --aug weak_augment "$@"
