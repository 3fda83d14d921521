#!/usr/bin/env bash
# The paper's SimCLR baseline rows (2 views, NT-Xent, same network / optimiser / 400 epochs), e.g.
#   DATASET=cifar10 bash sh/simclr.sh        (DATASET: cifar10 | cifar100 | stl10 | tinyImageNet)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-../data}
DATASET=${DATASET:-cifar10}
exec python "$HERE/image/main.py" --loss simclr --dataset_name "$DATASET" --root "$DATA" "$@"
