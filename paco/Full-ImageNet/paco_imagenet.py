"""PaCo entry point `Full-ImageNet/paco_imagenet.py` (spec §b.2); the loop lives in `paco.main_paco`.

This folder's name has a hyphen (not importable), so the file stays thin. Run: `python Full-ImageNet/paco_imagenet.py --help`.
"""
from common.utils import run_main
from paco.main_paco import main

if __name__ == "__main__":
    run_main(lambda: main("imagenet"))
