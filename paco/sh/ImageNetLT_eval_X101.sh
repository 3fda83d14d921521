#!/bin/bash
#SBATCH --job-name=paco
#SBATCH --gres=gpu:4
# The original SLURM script (4 GPUs, batch 128 in total = 32 per GPU). Data come from environment variables:
#   DATA  image root the list paths are joined to      LISTS  folder with ImageNet_LT/ iNaturalist18/ Places_LT/ lists
# Extra flags are appended last ("$@"), so they override, e.g. --nproc-per-node 2 --dist-backend gloo on CPU.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-./data}
LISTS=${LISTS:-./imagenet_inat/data}
PORT=$((10000 + RANDOM))
RELOAD=${RELOAD:-./pretrained_models/imagenetlt_x101.pth}
python "$HERE/LT/paco_lt.py" \
  --dist-url tcp://localhost:$PORT --multiprocessing-distributed --world-size 1 --rank 0 \
  --data "$DATA" \
  --list-dir "$LISTS" \
  -a resnext101_32x4d \
  --lr 0.03 \
  --moco-t 0.2 \
  --aug randclsstack_sim \
  --randaug_n 3 \
  --mark X101_mocot0.2_augrandclsstack_sim_400epochs_lr0.03_t1 \
  --dataset imagenet \
  --epochs 400 \
  -b 128 \
  --wd 5e-4 \
  --warmup_epochs 10 \
  --alpha 0.05 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-k 8192 \
  --moco-dim 128 \
  --mlp \
  --aug-plus \
  --cos \
  --num_classes 1000 \
  --feat_dim 2048 \
  --randaug_m 10 \
  --evaluate \
  --reload "$RELOAD" \
  "$@"
