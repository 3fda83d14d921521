#!/usr/bin/env bash
# Baseline (spec §c): N=2 networks trained with cross-entropy only (every MCL weight 0), 300 epochs, cosine LR 0.1.
#   DATA=/path/to/cifar bash sh/train_cifar_baseline.sh [extra flags]   (ARCHS="resnet32" to run a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA=${DATA:-./data/}
ARCHS=${ARCHS:-"resnet32 resnet56 resnet110 wrn_16_2 wrn_40_2 hcgnet_A1 ShuffleNetV2_05x ShuffleNetV2_1x"}
for arch in $ARCHS; do
    "$PYTHON" main_cifar.py --arch "$arch" --number-net 2 --alpha 0 --gamma 0 --beta 0 --lam 0 \
        --data "$DATA" "$@"
done
