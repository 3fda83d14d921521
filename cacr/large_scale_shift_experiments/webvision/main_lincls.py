"""Linear evaluation of a queue-MoCo CACR encoder (spec §b.4): ``module.encoder_q.*`` weights, SGD lr 30,
×0.1 at 60 / 80, 100 epochs, batch 256 per node; the code is ``cacr.imagenet_pretraining.main_lincls``."""
from common.utils import run_main

from cacr.imagenet_pretraining.main_lincls import main

if __name__ == "__main__":
    run_main(lambda: main(variant="large"))
