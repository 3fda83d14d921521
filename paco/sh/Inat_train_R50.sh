#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:4
# The original SLURM script (4 GPUs, batch 128 in total = 32 per GPU). Data come from environment variables:
#   DATA  image root the list paths are joined to      LISTS  folder with ImageNet_LT/ iNaturalist18/ Places_LT/ lists
# Extra flags are appended last ("$@"), so they override, e.g. --nproc-per-node 2 --dist-backend gloo on CPU.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# sbatch runs a spool copy of this file: then sh/ is found from the submit directory (paco/ or paco/sh/)
[ -f "$HERE/_launch.sh" ] || HERE="${SLURM_SUBMIT_DIR:-$PWD}/sh"; [ -f "$HERE/_launch.sh" ] || HERE="${HERE%/sh}"
[ -f "$HERE/_launch.sh" ] || { echo "error: paco/sh/ not found; submit from paco/: cd paco && sbatch sh/<this script>.sh" >&2; exit 2; }
exec bash "$HERE/_lt_launch.sh" LT/paco_lt.py \
  --dataset inat \
  -a resnet50 \
  --epochs 400 \
  -b 128 \
  --lr 0.02 \
  --wd 1e-4 \
  --warmup_epochs 10 \
  --alpha 0.05 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-t 0.2 \
  --moco-k 8192 \
  --moco-dim 128 \
  --mlp \
  --aug-plus \
  --cos \
  --aug randcls_sim \
  --randaug_n 2 \
  --randaug_m 10 \
  --num_classes 8142 \
  --feat_dim 2048 \
  --mark R50_mocot0.2_augrandcls_sim_400epochs_lr0.02_t1 \
  "$@"
