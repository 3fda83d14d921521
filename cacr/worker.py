"""What the workers of the ImageNet-scale entry points share (``imagenet_pretraining/main_pretrain.py`` and
``main_lincls.py``, ``large_scale_shift_experiments/{imagenet,webvision}/main_ours.py``): the start of a worker
process, and the pre-training loader whose batches do not depend on the number of processes."""
from __future__ import annotations

import os
import sys

import torch

from common import distributed as cdist
from common.logger import RunLogger
from common.utils import seed_everything


def start_worker(local_rank: int, args, out_dir: str, what: str = "output directory") -> RunLogger:
    """Join the process group, seed every rank differently (``seed + rank``, deterministic), create ``out_dir`` on
    rank 0 and return its logger, which records ``out_dir`` (as ``what``) and the command line first."""
    cdist.init_distributed(args, local_rank)
    if args.seed is not None:
        seed_everything(args.seed + args.rank, deterministic=True)
    main_proc = cdist.is_main_process()
    if main_proc:
        os.makedirs(out_dir, exist_ok=True)
    logger = RunLogger(out_dir, enabled=main_proc)
    logger.info(f"{what}: {out_dir}")
    logger.info(" ".join(sys.argv))
    return logger


def seeded_loader(dataset, batch_size: int, workers: int, args):
    """The pre-training loader of a ``SeededTransformDataset``: the same global batches for any number of processes
    (rank r takes every W-th sample of each), shuffled as a function of (seed, epoch) only so that a resumed run
    sees the batches it would have seen. Returns ``(loader, set_epoch)``; call ``set_epoch(epoch)`` before each
    epoch."""
    sampler = cdist.rank_split_sampler(dataset, shuffle=True, drop_last=True, seed=args.seed or 0)
    generator = torch.Generator()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None,
                                         num_workers=workers, pin_memory=args.device.type == "cuda",
                                         sampler=sampler, drop_last=True, generator=generator)

    def set_epoch(epoch: int) -> None:
        cdist.set_sampler_epoch(sampler, epoch)
        dataset.set_epoch(epoch)
        generator.manual_seed((args.seed or 0) * 100003 + epoch)

    return loader, set_epoch
