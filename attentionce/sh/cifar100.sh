#!/usr/bin/env bash
# README: CIFAR-100 pre-training, d_pos = 1, d_neg = 10.  $DATA (default ../data) holds cifar-100-python/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-../data}
exec python "$HERE/image/main.py" --dataset_name cifar100 --d_pos 1 --d_neg 10 --root "$DATA" "$@"
