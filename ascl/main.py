"""ASCL pre-training + kNN monitor + linear evaluation (CIFAR-10/100, STL-10, Tiny-ImageNet, digits).

    python main.py --epochs 200 --dataset cifar100 --data_path data/CIFAR100 --K 5 --type ascl --t1 0.1 --t2 0.05

``--K`` (alias ``--nn_num``) is the number of neighbours and ``--mem_size`` the queue size, as in ``main_simple.py``.
"""
from common.utils import run_main
from ascl.pretrain import main

if __name__ == "__main__":
    run_main(lambda: main("main"))
