#!/usr/bin/env bash
# Embedded default: ASCL (MoCo framework) on the scikit-learn digits, CPU, a few minutes. Prints the kNN monitor
# (initial / per epoch / final) and the linear evaluation of the trained network.
# Small settings chosen for 2 CPU cores and 1,347 training images: a 32-key queue (one batch; with 10 classes a
# larger queue is mostly false negatives), 3 neighbours, and a linear projection head (--projector linear, not
# in the original: the BN-free MLP head stalls on this data, see README). Every flag can be overridden:
#   bash sh/train.sh --epochs 50 --projector mlp
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python main.py --dataset digits ${DATA:+--data_path "$DATA"} \
  --arch resnet20_option_a --image_size 16 --batch-size 32 --mem_size 32 --K 3 --type ascl --t1 0.1 --t2 0.05 \
  --projector linear --aug weak_augment --epochs 20 --warm_up 2 --lr 0.06 --eval_epochs 10 --eval_cos --eval_lr 0.1 \
  --eval_batch_size 512 --workers 0 --run_id digits --save_freq 1 "$@"
