"""What the workers of the ImageNet-scale entry points share (``imagenet_pretraining/main_pretrain.py`` and
``main_lincls.py``, ``large_scale_shift_experiments/{imagenet,webvision}/main_ours.py``): the start of a worker
process (process group, seeds, the run of ``common.engine``). Their checkpoints' DDP key layout is
``common.distributed.module_state_dict``, their loader ``common.training.rank_split_loader``."""
from __future__ import annotations

import sys

from common import distributed as cdist
from common.engine import Run
from common.utils import seed_everything

METHOD = "cacr"


def open_run(local_rank: int, args, **run_options) -> Run:
    """Join the process group, seed every rank differently (``seed + rank``, deterministic) and open the run
    (``common.engine.Run.open(METHOD, args, **run_options)``); its log records the command line first. An explicit
    ``--resume FILE`` continues that file whatever the folder holds (as ``--no-auto-resume`` starts over it)."""
    cdist.init_distributed(args, local_rank)
    if args.seed is not None:
        seed_everything(args.seed + args.rank, deterministic=True)
    run_options.setdefault("overwrite", bool(args.resume) or not args.auto_resume)
    run = Run.open(METHOD, args, **run_options)
    run.info(" ".join(sys.argv))
    return run
