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
# torchvision ImageNet weights of ResNet-152 (resnet152-b121ed2d.pth), used to initialise both encoders
TORCH_WEIGHTS=${TORCH_WEIGHTS:-./pretrained_models/resnet152-b121ed2d.pth}
python "$HERE/LT/paco_fp16_places.py" \
  --dist-url tcp://localhost:$PORT --multiprocessing-distributed --world-size 1 --rank 0 \
  --data "$DATA" \
  --list-dir "$LISTS" \
  --dataset places \
  -a resnet152 \
  --epochs 30 \
  -b 128 \
  --lr 0.02 \
  --wd 5e-4 \
  --warmup_epochs 5 \
  --alpha 0.05 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-t 0.2 \
  --moco-k 8192 \
  --moco-dim 128 \
  --mlp \
  --aug-plus \
  --cos \
  --aug sim_sim \
  --num_classes 365 \
  --feat_dim 2048 \
  --mark R152_mocot0.2_augsim_sim_30epochs_lr0.02_t1 \
  --fp16 \
  --reload_torch "$TORCH_WEIGHTS" \
  "$@"
