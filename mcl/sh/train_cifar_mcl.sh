#!/usr/bin/env bash
# MCL(x2) and MCL(x4) on CIFAR-100 (spec §c): alpha 0.1, gamma 1, beta 0.1, lam 1, 300 epochs, cosine LR 0.1.
#   DATA=/path/to/cifar bash sh/train_cifar_mcl.sh [extra flags]   (ARCHS / NUMBER_NETS select a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA=${DATA:-./data/}
ARCHS=${ARCHS:-"resnet32 resnet56 resnet110 wrn_16_2 wrn_40_2 hcgnet_A1 ShuffleNetV2_05x ShuffleNetV2_1x"}
NUMBER_NETS=${NUMBER_NETS:-"2 4"}
for number_net in $NUMBER_NETS; do
    for arch in $ARCHS; do
        "$PYTHON" main_cifar.py --arch "$arch" --number-net "$number_net" \
            --alpha 0.1 --gamma 1.0 --beta 0.1 --lam 1.0 --data "$DATA" "$@"
    done
done
