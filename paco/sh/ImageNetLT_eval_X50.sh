#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:4
# Evaluation as in the original: exactly the flags of ImageNetLT_train_X50.sh plus --evaluate --reload (RELOAD = the checkpoint).
# DATA / LISTS as in the train script; extra flags are appended last ("$@"), so they override.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RELOAD=${RELOAD:-./pretrained_models/imagenetlt_x50.pth}
exec bash "$HERE/ImageNetLT_train_X50.sh" --evaluate --reload "$RELOAD" "$@"
