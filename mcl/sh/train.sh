#!/usr/bin/env bash
# Embedded default: MCL(x2) (alpha 0.1, gamma 1, beta 0.1, lam 1) with two ResNet-32 on the scikit-learn digits,
# resized to 16x16 (the digits are 8x8 originals) so it runs on CPU in a few minutes.
# Prints "initial top-1: ..." and "final top-1: ..." (best single network, in %).
#   cd mcl && bash sh/train.sh [extra main_cifar.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
"$PYTHON" main_cifar.py --dataset digits --arch resnet32 --number-net 2 \
    --alpha 0.1 --gamma 1.0 --beta 0.1 --lam 1.0 \
    --image-size 16 --epochs 4 --batch-size 20 --init-lr 0.05 --num-workers 2 --print-freq 10 \
    --name digits_resnet32_mcl_x2 "$@"
