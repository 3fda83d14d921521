#!/usr/bin/env bash
# README CIFAR-100 command (spec c.1): Ny 4, Ns 128, alpha 1, beta 1, tau_pos 1, tau_neg 2.0.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data}
python small_scale_experiments/cifar100/main_ours.py --data_folder "$DATA" \
  --Ny 4 --Ns 128 --alpha 1.0 --beta 1.0 --tau_pos 1.0 --tau_neg 2.0 "$@"
