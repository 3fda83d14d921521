"""ASCL on ImageNet-1K: moco's ``main_moco.py`` with the ASCL builder (run from ``ascl/``).

    python ImageNet-1K/main_moco.py -a resnet50 --lr 0.03 --batch-size 256 --mlp --aug-plus --cos \
        --multiprocessing-distributed --world-size 1 --rank 0 --dist-url tcp://127.0.0.1:10001 /path/to/imagenet

The code is in ``ascl.imagenet_main_moco``.
"""
from common.utils import run_main
from ascl.imagenet_main_moco import main

if __name__ == "__main__":
    run_main(main)
