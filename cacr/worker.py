"""What the workers of the ImageNet-scale entry points share (``imagenet_pretraining/main_pretrain.py`` and
``main_lincls.py``, ``large_scale_shift_experiments/{imagenet,webvision}/main_ours.py``): the start of a worker
process (process group, seeds, the run of ``common.engine``), the original's DDP key layout of the checkpoints, and
the pre-training loader whose batches do not depend on the number of processes."""
from __future__ import annotations

import sys

import torch

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


def args_record(args) -> dict:
    """The command's arguments as plain values (``args`` of the checkpoints; run-time objects as strings)."""
    return {k: (v if v is None or isinstance(v, (bool, int, float, str, list, tuple)) else str(v))
            for k, v in vars(args).items()}


def ddp_state_dict(model: torch.nn.Module) -> dict:
    """The model's state dict with the ``module.`` keys of the original's DDP model, whatever the wrapping here (the
    originals' ``main_lincls.py`` select ``module.encoder_q.*`` / ``module.base_encoder.*`` by that prefix)."""
    return {"module." + k: v for k, v in cdist.unwrap_model(model).state_dict().items()}


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
