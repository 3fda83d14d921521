#!/usr/bin/env bash
# README command 2 (main_simple.py, no wandb), as typed: --K 5 = 5 neighbours, as in main.py (the original
# main_simple.py read --K as the queue size, quirk 5; here the queue is --mem_size, default 4096, and main_simple.py
# prints one notice about --K).  DATA = the folder holding cifar-100-python/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/CIFAR100}
GPU=${GPU:-0}
python main_simple.py --epochs 200 --gpuid "$GPU" --dataset cifar100 --data_path "$DATA" --K 5 --type ascl \
  --t1 0.1 --t2 0.05 --aug weak_augment "$@"
