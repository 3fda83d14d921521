#!/usr/bin/env bash
# ImageNet-100 by symlinks (spec b.5):  DATA=/path/to/imagenet SUBSET=./data/imagenet100 bash sh/create_imagenet100.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data/imagenet}
SUBSET=${SUBSET:-./data/imagenet100}
python large_scale_shift_experiments/imagenet/scripts/create_imagenet_subset.py "$DATA" "$SUBSET" "$@"
