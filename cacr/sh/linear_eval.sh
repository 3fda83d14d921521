#!/usr/bin/env bash
# README testing command (spec c.1): linear evaluation of a pre-trained encoder.
#   ENCODER=runs/cacr/<run>/encoder.pth DATASET=cifar10 bash sh/linear_eval.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data}
DATASET=${DATASET:-cifar10}
ENCODER=${ENCODER:-}
python small_scale_experiments/${DATASET}/linear_eval.py --data_folder "$DATA" \
  ${ENCODER:+--encoder_checkpoint "$ENCODER"} "$@"
