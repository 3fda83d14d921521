#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:4
# Evaluation as in the original: the flags of PlacesLT_train_R152.sh without --fp16 / --reload_torch, plus
# --evaluate --reload (RELOAD = the checkpoint). DATA / LISTS as in the train script; extra flags are appended
# last ("$@"), so they override. The shared flags are in _placeslt_r152.sh.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# sbatch runs a spool copy of this file: then sh/ is found from the submit directory (paco/ or paco/sh/)
[ -f "$HERE/_launch.sh" ] || HERE="${SLURM_SUBMIT_DIR:-$PWD}/sh"; [ -f "$HERE/_launch.sh" ] || HERE="${HERE%/sh}"
[ -f "$HERE/_launch.sh" ] || { echo "error: paco/sh/ not found; submit from paco/: cd paco && sbatch sh/<this script>.sh" >&2; exit 2; }
RELOAD=${RELOAD:-./pretrained_models/places_resnet152.pth}
exec bash "$HERE/_placeslt_r152.sh" --evaluate --reload "$RELOAD" "$@"
