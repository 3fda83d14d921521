#!/usr/bin/env bash
# README: Tiny-ImageNet pre-training (tiny-Imagenet/main.py), d_pos = 4, d_neg = 1; checkpoints every 100
# epochs.  $DATA (default ../tiny-imagenet-200): the tiny-imagenet-200 folder or its parent.  The original's
# view-6 bug is fixed; add --repeat_view4_bug to reproduce the published setting.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-../tiny-imagenet-200}
exec python "$HERE/tiny-Imagenet/main.py" --dataset_name tinyImageNet --d_pos 4 --d_neg 1 --root "$DATA" "$@"
