"""Helpers under common.engine: loading a state dict into a (DDP) model with one clear error, progress bars, the
linear-probe pass the linear evaluations share."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F

from common.distributed import is_main_process, unwrap_model
from common.utils import UserError


def _strip_prefix(state_dict: dict, prefix: str = "module.") -> dict:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def load_model_state(model: torch.nn.Module, state_dict: dict, source: str = "checkpoint",
                     strict: bool = True) -> None:
    """Load ``state_dict`` into ``model`` (DDP-wrapped or not, ``module.`` prefixes tolerated) and turn
    missing / unexpected keys and shape mismatches into one ``UserError`` naming a few of them."""
    target = unwrap_model(model)
    state_dict = _strip_prefix(dict(state_dict))
    try:
        # the model's own load hooks run here (e.g. renaming an original repository's key layout)
        target.load_state_dict(state_dict, strict=strict)
        return
    except RuntimeError:
        pass
    own = target.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state_dict.items()
              if k in own and torch.is_tensor(v) and tuple(v.shape) != tuple(own[k].shape)]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:4])})")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:4])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
    raise UserError(f"{source} does not match this model: {'; '.join(problems) or 'incompatible tensors'}. Was it "
                    "written by another method or architecture (-a/--arch, --num-classes, --dim)?")


def progress(iterable: Iterable, desc: str = "", enabled: bool = True, total: int | None = None, **kwargs):
    """A tqdm bar on the main process when ``enabled`` (the plain iterable otherwise)."""
    if not (enabled and is_main_process()):
        return iterable
    from tqdm import tqdm
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, total=total, **kwargs)


def train_batches(run, loader, model, args, desc: str = ""):
    """Put ``model`` in training mode (its BatchNorm frozen with ``--freeze-bn``) and return ``(iterations, batches)``:
    ``batches`` yields ``(i, batch)`` of ``loader`` behind the run's progress bar (``--no-progress``) and stops after
    ``--max-iters`` batches (0: all; like the loops it replaces, it still draws the batch after the last)."""
    from common.backbones import freeze_batchnorm
    model.train()
    if args.freeze_bn:
        freeze_batchnorm(model)
    total = min(len(loader), args.max_iters) if args.max_iters else len(loader)

    def batches():
        for i, batch in enumerate(run.progress(loader, desc, total=total, enabled=args.progress)):
            if args.max_iters and i >= args.max_iters:
                break
            yield i, batch
    return total, batches()


def classifier_pass(model, loader, device, optimizer=None, max_iters: int = 0, bar=None, on_batch=None,
                    run=None) -> torch.Tensor:
    """One pass of a classifier (a linear probe over a frozen encoder) over ``loader``, the model in the mode the
    caller set: with ``optimizer`` a training pass (cross-entropy, one step per batch, counted in ``run.step``),
    else an evaluation under no-grad. ``max_iters`` stops after that many batches (0: all); ``bar`` is what to
    iterate instead of ``loader`` (a progress bar over it). ``on_batch(i, loss, acc1, acc5, n, sums)`` follows each
    batch (logging, NaN checks). Returns ``(4,)`` on ``device``: the sums over the samples seen of the loss, top-1
    and top-5 (in %), and their count (a caller combining processes all-reduces it)."""
    from common.eval.metrics import accuracy
    train = optimizer is not None
    sums = torch.zeros(4, device=device)
    with torch.set_grad_enabled(train):
        for i, (images, targets) in enumerate(loader if bar is None else bar):
            if max_iters and i >= max_iters:
                break
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            logits = model(images)
            loss = F.cross_entropy(logits, targets)
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if run is not None:
                    run.step += 1
            n = images.shape[0]
            acc1, acc5 = accuracy(logits.detach(), targets, topk=(1, 5))
            sums[:3] += torch.stack([loss.detach(), acc1, acc5]) * n
            sums[3] += n
            if on_batch is not None:
                on_batch(i, loss, acc1, acc5, n, sums)
    return sums
