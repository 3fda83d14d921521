#!/bin/bash
# Full ImageNet (README: 4 GPUs, batch 256 in total). DATA = ImageFolder root with train/ and val/.
# Extra flags ("$@") are appended last and override. The flags the three networks share are in
# _full_imagenet_train.sh; this script's own are, in order: arch, aug, rand_n, rand_m, mark, --fp16.
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$HERE/_full_imagenet_train.sh" resnet200 randclsstack_sim 3 12 paco_r200_fullImageNet --fp16 "$@"
