#!/bin/bash
# Full ImageNet (README: 4 GPUs, batch 256 in total). DATA = ImageFolder root with train/ and val/.
# Extra flags ("$@") are appended last and override.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-./data}
PORT=$((10000 + RANDOM))
RELOAD=${RELOAD:-./pretrained_model/moco_ckpt.best.pth.tar}
python "$HERE/Full-ImageNet/paco_imagenet.py" \
  --dist-url tcp://localhost:$PORT --multiprocessing-distributed --world-size 1 --rank 0 \
  --data "$DATA" \
  -a resnet200 \
  --dataset imagenet \
  --epochs 400 \
  -b 256 \
  --lr 0.04 \
  --wd 1e-4 \
  --warmup_epochs 10 \
  --alpha 0.05 \
  --beta 1.0 \
  --gamma 1.0 \
  --moco-t 0.2 \
  --moco-k 8192 \
  --mlp \
  --aug-plus \
  --cos \
  --aug randclsstack_sim \
  --rand_n 3 \
  --rand_m 12 \
  --mark paco_r200_fullImageNet \
  --fp16 \
  --reload "$RELOAD" \
  --evaluate \
  "$@"
