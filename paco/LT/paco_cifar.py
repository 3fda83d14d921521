"""PaCo entry point `LT/paco_cifar.py` (spec §b); the loop lives in `paco.main_paco`.

Run from the paco folder: `python LT/paco_cifar.py --help`.
"""
from common.utils import run_main
from paco.main_paco import main

if __name__ == "__main__":
    run_main(lambda: main("cifar"))
