"""WebVision-v1 pre-training: ``imagenet/main_ours.py`` reading ``<root>/info/train_filelist_{google,flickr}.txt``."""
from common.utils import run_main

from cacr.large_scale_shift_experiments.imagenet.main_ours import main

if __name__ == "__main__":
    run_main(lambda: main(webvision=True))
