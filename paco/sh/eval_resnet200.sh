#!/bin/bash
# Evaluation as in the original: exactly the flags of train_resnet200.sh plus --evaluate --reload (RELOAD = the checkpoint).
# DATA / LISTS as in the train script; extra flags are appended last ("$@"), so they override.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RELOAD=${RELOAD:-./pretrained_model/moco_ckpt.best.pth.tar}
exec bash "$HERE/train_resnet200.sh" --evaluate --reload "$RELOAD" "$@"
