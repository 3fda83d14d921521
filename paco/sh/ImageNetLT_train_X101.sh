#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:4
# The original SLURM script (4 GPUs, batch 128 in total = 32 per GPU). Data come from environment variables:
#   DATA  image root the list paths are joined to      LISTS  folder with ImageNet_LT/ iNaturalist18/ Places_LT/ lists
# Extra flags are appended last ("$@"), so they override, e.g. --nproc-per-node 2 --dist-backend gloo on CPU.
# The flags the three ImageNet-LT networks share are in _imagenetlt_train.sh; this script's own are, in order:
# arch, lr, moco-t, aug, randaug_n, mark.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# sbatch runs a spool copy of this file: then sh/ is found from the submit directory (paco/ or paco/sh/)
[ -f "$HERE/_launch.sh" ] || HERE="${SLURM_SUBMIT_DIR:-$PWD}/sh"; [ -f "$HERE/_launch.sh" ] || HERE="${HERE%/sh}"
[ -f "$HERE/_launch.sh" ] || { echo "error: paco/sh/ not found; submit from paco/: cd paco && sbatch sh/<this script>.sh" >&2; exit 2; }
exec bash "$HERE/_imagenetlt_train.sh" resnext101_32x4d 0.03 0.2 randclsstack_sim 3 \
  X101_mocot0.2_augrandclsstack_sim_400epochs_lr0.03_t1 "$@"
