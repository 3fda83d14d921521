#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:1
# CIFAR-100-LT (1 GPU). DATA = the CIFAR-100 python folder (cifar-100-python/ or its parent). Extra flags ("$@") override.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-./cifar}
PORT=$((10000 + RANDOM))
python "$HERE/LT/paco_cifar.py" \
  --dist-url tcp://localhost:$PORT --multiprocessing-distributed --world-size 1 --rank 0 \
  --data "$DATA" \
  --dataset cifar100 \
  -a resnet32 \
  --epochs 400 \
  -b 128 \
  --lr 0.05 \
  --wd 5e-4 \
  --warmup_epochs 10 \
  --alpha 0.01 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-t 0.05 \
  --moco-k 1024 \
  --moco-dim 32 \
  --mlp \
  --aug cifar100 \
  --imb-factor 0.1 \
  --num_classes 100 \
  --feat_dim 64 \
  --mark CIFAR100_imb0.1_R32_mocot0.05_400epochs_lr0.05 \
  "$@"
