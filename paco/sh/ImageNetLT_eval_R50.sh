#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:4
# Evaluation as in the original: exactly the flags of ImageNetLT_train_R50.sh plus --evaluate --reload (RELOAD = the checkpoint).
# DATA / LISTS as in the train script; extra flags are appended last ("$@"), so they override.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# sbatch runs a spool copy of this file: then sh/ is found from the submit directory (paco/ or paco/sh/)
[ -f "$HERE/_launch.sh" ] || HERE="${SLURM_SUBMIT_DIR:-$PWD}/sh"; [ -f "$HERE/_launch.sh" ] || HERE="${HERE%/sh}"
[ -f "$HERE/_launch.sh" ] || { echo "error: paco/sh/ not found; submit from paco/: cd paco && sbatch sh/<this script>.sh" >&2; exit 2; }
RELOAD=${RELOAD:-./pretrained_models/imagenetlt_r50.pth}
exec bash "$HERE/ImageNetLT_train_R50.sh" --evaluate --reload "$RELOAD" "$@"
