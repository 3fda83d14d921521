#!/usr/bin/env bash
# Embedded default: AttentioNCE on scikit-learn's digits (no data needed), CPU, a few minutes on 2 cores.
# Small settings chosen for a CPU: ResNet-20 (option A) encoder, 16 px training crops (tested at the native
# 32 px, like the original's STL-10 / Tiny-ImageNet protocol), batch 64, 8 epochs, batched augmentation;
# the loss and everything else are the paper's (CIFAR-10 setting d_pos 1, d_neg 10, T 0.5, Adam 1e-3).
# Prints "initial linear top-1: ..." (untrained encoder) and "final linear top-1: ..." (linear probe on frozen
# features).  Extra flags are forwarded and override these (e.g. --epochs 2, --arch resnet50, --eval knn).
set -euo pipefail
# one thread per process: on a small shared CPU, two threads of tiny convolutions mostly contend
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec python "$HERE/image/main.py" --dataset_name digits --arch resnet20_option_a --crop_size 16 --batch_size 64 \
    --epochs 8 --d_pos 1 --d_neg 10 --augment batched --workers 0 --seed 0 --eval linear --save_every 8 "$@"
