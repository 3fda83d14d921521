"""Tiny-ImageNet linear evaluation (the original's ``tiny-Imagenet/linear.py``): the same code as
``image/linear.py`` with this copy's defaults (``--dataset_name tinyImageNet``, ``--root ../tiny-imagenet-200``,
2 workers, Adam lr 1e-3).

    cd attentionce && python tiny-Imagenet/linear.py --root $DATA --model_path runs/attentionce/<run>/<file>.pth
"""
from attentionce.image.linear import main
from common.utils import run_main

if __name__ == "__main__":
    run_main(lambda: main(variant="tiny"))
