#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:1
# CIFAR-100-LT (1 GPU). DATA = the CIFAR-100 python folder (cifar-100-python/ or its parent). Extra flags ("$@") override.
# The flags of all three imbalance factors are in _cifar100_train.sh.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$HERE/_cifar100_train.sh" 0.02 "$@"
