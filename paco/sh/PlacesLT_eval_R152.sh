#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:4
# Evaluation as in the original: the flags of PlacesLT_train_R152.sh without --fp16 / --reload_torch, plus
# --evaluate --reload (RELOAD = the checkpoint). DATA / LISTS as in the train script; extra flags are appended
# last ("$@"), so they override. The shared flags are in _placeslt_r152.sh.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RELOAD=${RELOAD:-./pretrained_models/places_resnet152.pth}
exec bash "$HERE/_placeslt_r152.sh" --evaluate --reload "$RELOAD" "$@"
