#!/usr/bin/env bash
# MCL(x4) + logit distillation on CIFAR-100 (spec §c): alpha 0.1, gamma 1, beta 0.1, lam 1, --logit-distill.
#   DATA=/path/to/cifar bash sh/train_cifar_mcl_logit.sh [extra flags]   (ARCHS selects a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA=${DATA:-./data/}
ARCHS=${ARCHS:-"wrn_16_2 wrn_40_2 wrn_28_4 ShuffleNetV2_1x hcgnet_A2"}
for arch in $ARCHS; do
    "$PYTHON" main_cifar.py --arch "$arch" --number-net 4 --logit-distill \
        --alpha 0.1 --gamma 1.0 --beta 0.1 --lam 1.0 --data "$DATA" "$@"
done
