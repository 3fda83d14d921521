#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:4
# The original SLURM script (4 GPUs, batch 128 in total = 32 per GPU). Data come from environment variables:
#   DATA  image root the list paths are joined to      LISTS  folder with ImageNet_LT/ iNaturalist18/ Places_LT/ lists
# Extra flags are appended last ("$@"), so they override, e.g. --nproc-per-node 2 --dist-backend gloo on CPU.
# The flags shared with PlacesLT_eval_R152.sh are in _placeslt_r152.sh.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# sbatch runs a spool copy of this file: then sh/ is found from the submit directory (paco/ or paco/sh/)
[ -f "$HERE/_launch.sh" ] || HERE="${SLURM_SUBMIT_DIR:-$PWD}/sh"; [ -f "$HERE/_launch.sh" ] || HERE="${HERE%/sh}"
[ -f "$HERE/_launch.sh" ] || { echo "error: paco/sh/ not found; submit from paco/: cd paco && sbatch sh/<this script>.sh" >&2; exit 2; }
# torchvision ImageNet weights of ResNet-152 (resnet152-b121ed2d.pth), used to initialise both encoders
TORCH_WEIGHTS=${TORCH_WEIGHTS:-./pretrained_models/resnet152-b121ed2d.pth}
exec bash "$HERE/_placeslt_r152.sh" --fp16 --reload_torch "$TORCH_WEIGHTS" "$@"
