#!/usr/bin/env bash
# Embedded default: ASCL (MoCo framework, 5 neighbours) on the scikit-learn digits, CPU, a few minutes.
# Small settings chosen for 2 CPU cores; every flag can be overridden: bash sh/train.sh --epochs 50
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-}
python main.py --dataset digits ${DATA:+--data_path "$DATA"} \
  --arch resnet20_option_a --image_size 16 --batch-size 32 --mem_size 512 --K 5 --type ascl --t1 0.1 --t2 0.05 \
  --aug weak_augment --epochs 30 --warm_up 2 --lr 0.06 --eval_epochs 5 --eval_cos --eval_batch_size 512 \
  --workers 0 --run_id digits --save_freq 1 "$@"
