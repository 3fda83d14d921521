#!/usr/bin/env bash
# README STL-10 command (spec c.1): Ny 4, Ns 128, alpha 1, beta 1, tau_pos 1, tau_neg 2.0 (train+unlabeled, 64 px).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data}
python small_scale_experiments/stl10/main_ours.py --data_folder "$DATA" \
  --Ny 4 --Ns 128 --alpha 1.0 --beta 1.0 --tau_pos 1.0 --tau_neg 2.0 "$@"
