"""Thin launcher keeping the original path `small_scale_experiments/cifar10/main_ours.py`: the code is
`cacr.small_scale_experiments.main_ours` with `--dataset cifar10` as default."""
from common.utils import run_main

from cacr.small_scale_experiments.main_ours import main

if __name__ == "__main__":
    run_main(lambda: main(dataset_default="cifar10"))
