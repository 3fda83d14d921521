#!/usr/bin/env bash
# README CIFAR-10 command (spec c.1): Ny 4, Ns 128, alpha 1, beta 1, tau_pos 1, tau_neg 0.9, 200 epochs.
# Data: CIFAR-10 python pickles under $DATA (default ./data). Add --imbalanced for the imbalanced subset.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data}
python small_scale_experiments/cifar10/main_ours.py --data_folder "$DATA" \
  --Ny 4 --Ns 128 --alpha 1.0 --beta 1.0 --tau_pos 1.0 --tau_neg 0.9 "$@"
