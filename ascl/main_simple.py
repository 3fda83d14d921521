"""ASCL without wandb (text + tensorboardX logs only); otherwise ``main.py``, with the same flag meanings:
``--K`` (alias ``--nn_num``) is the number of neighbours and ``--mem_size`` the queue size. The original
``main_simple.py`` read ``--K`` as the queue size (quirk 5), so its README line ``--K 5`` asked for a queue of 5;
here it means 5 neighbours, and typing ``--K`` prints one notice saying so.

    python main_simple.py --epochs 200 --dataset cifar100 --data_path data/CIFAR100 --K 5 --type ascl
"""
from common.utils import run_main
from ascl.pretrain import main

if __name__ == "__main__":
    run_main(lambda: main("main_simple"))
