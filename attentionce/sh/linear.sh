#!/usr/bin/env bash
# README: linear evaluation (100 epochs, batch 512) of a pre-trained checkpoint, e.g.
#   MODEL_PATH=runs/attentionce/<run>/stl10_SimCLR_4model_256_400_2.0_0.5.pth DATASET=stl10 bash sh/linear.sh
# $DATASET: cifar10 | cifar100 | stl10 | tinyImageNet (default stl10, the README example); $DATA: data root.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-../data}
DATASET=${DATASET:-stl10}
MODEL_PATH=${MODEL_PATH:-../results/stl10/stl10_SimCLR_4model_256_400_2.0_0.5.pth}
exec python "$HERE/image/linear.py" --dataset_name "$DATASET" --model_path "$MODEL_PATH" --root "$DATA" "$@"
