"""Tiny-ImageNet pre-training (the original's ``tiny-Imagenet/main.py``): the same code as ``image/main.py``
with this copy's defaults (``--dataset_name tinyImageNet``, ``--root ../tiny-imagenet-200``, 4 workers,
checkpoints every 100 epochs).  The original's view-6 bug is fixed; ``--repeat_view4_bug`` reproduces it.

    cd attentionce && python tiny-Imagenet/main.py --d_pos 4 --d_neg 1 --root $DATA
"""
from attentionce.image.main import main
from common.utils import run_main

if __name__ == "__main__":
    run_main(lambda: main(variant="tiny"))
