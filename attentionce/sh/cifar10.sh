#!/usr/bin/env bash
# README: CIFAR-10 pre-training, d_pos = 1, d_neg = 10 (T 0.5, batch 256, 400 epochs, Adam 1e-3).
# Data: $DATA (default ../data) holds cifar-10-batches-py/.  Extra flags are forwarded (and override these).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-../data}
exec python "$HERE/image/main.py" --dataset_name cifar10 --d_pos 1 --d_neg 10 --root "$DATA" "$@"
