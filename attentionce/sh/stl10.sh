#!/usr/bin/env bash
# README: STL-10 pre-training on train+unlabeled, d_pos = 2, d_neg = 0.5.  $DATA (default ../data) holds
# stl10_binary/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-../data}
exec python "$HERE/image/main.py" --dataset_name stl10 --d_pos 2 --d_neg 0.5 --root "$DATA" "$@"
