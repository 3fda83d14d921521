#!/usr/bin/env bash
# MCL(x2) and MCL(x4) on ImageNet with memory banks (spec §c): alpha 0.1, gamma 1, beta 0.1, lam 1, 90 epochs,
# multistep LR 0.1 at 30/60/90, batch 256, tau 0.07, pos_k 1, neg_k 8192 (4096 gives similar accuracy).
#   DATA=/path/to/ImageNet bash sh/train_imagenet_mcl.sh [extra flags]   (ARCHS / NUMBER_NETS select a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA=${DATA:-./data/ImageNet/}
ARCHS=${ARCHS:-"resnet18 resnet34"}
NUMBER_NETS=${NUMBER_NETS:-"2 4"}
for number_net in $NUMBER_NETS; do
    for arch in $ARCHS; do
        "$PYTHON" main_imagenet.py --arch "$arch" --number-net "$number_net" \
            --alpha 0.1 --gamma 1.0 --beta 0.1 --lam 1.0 --data "$DATA" "$@"
    done
done
