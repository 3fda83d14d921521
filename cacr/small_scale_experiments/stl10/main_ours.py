"""Thin launcher keeping the original path `small_scale_experiments/stl10/main_ours.py`: the code is
`cacr.small_scale_experiments.main_ours` with `--dataset stl10` as default."""
from common.utils import run_main

from cacr.small_scale_experiments.main_ours import main

if __name__ == "__main__":
    run_main(lambda: main(dataset_default="stl10"))
