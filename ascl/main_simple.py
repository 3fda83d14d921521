"""ASCL without wandb (text + tensorboardX logs only). Flag names of the original ``main_simple.py``:
``--K`` is the QUEUE SIZE (default 4096) and ``--nn_num`` the number of neighbours (quirk 5).

    python main_simple.py --epochs 200 --dataset cifar100 --data_path data/CIFAR100 --nn_num 5 --type ascl
"""
from common.utils import run_main
from ascl.pretrain import main

if __name__ == "__main__":
    run_main(lambda: main("main_simple"))
