#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:1
# CIFAR-100-LT (1 GPU). DATA = the CIFAR-100 python folder (cifar-100-python/ or its parent). Extra flags ("$@") override.
# The flags of all three imbalance factors are in _cifar100_train.sh.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# sbatch runs a spool copy of this file: then sh/ is found from the submit directory (paco/ or paco/sh/)
[ -f "$HERE/_launch.sh" ] || HERE="${SLURM_SUBMIT_DIR:-$PWD}/sh"; [ -f "$HERE/_launch.sh" ] || HERE="${HERE%/sh}"
[ -f "$HERE/_launch.sh" ] || { echo "error: paco/sh/ not found; submit from paco/: cd paco && sbatch sh/<this script>.sh" >&2; exit 2; }
exec bash "$HERE/_cifar100_train.sh" 0.01 "$@"
