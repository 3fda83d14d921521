#!/usr/bin/env bash
# Linear evaluation on Tiny-ImageNet (tiny-Imagenet/linear.py: Adam lr 1e-3, 2 workers), e.g.
#   MODEL_PATH=runs/attentionce/<run>/tinyImageNet_SimCLR_4model_256_400_4.0_1.0.pth bash sh/linear_tiny.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${DATA:-../tiny-imagenet-200}
MODEL_PATH=${MODEL_PATH:-../results/tinyImageNet/tinyImageNet_SimCLR_4model_256_400_4.0_1.0.pth}
exec python "$HERE/tiny-Imagenet/linear.py" --model_path "$MODEL_PATH" --root "$DATA" "$@"
