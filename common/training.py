"""Boilerplate every main script repeats: resume / auto-resume, saving the training state, progress bars."""
from __future__ import annotations

import os
import time
from typing import Iterable

import torch

from common.checkpoint import (capture_rng_state, code_version, find_latest_checkpoint, load_checkpoint,
                               restore_rng_state, save_checkpoint)
from common.distributed import is_main_process, unwrap_model
from common.utils import UserError

DEFAULT_FILENAME = "checkpoint.pth.tar"


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


def save_training_state(run_dir: str, epoch: int, model: torch.nn.Module, optimizer=None, args=None,
                        scaler=None, extra: dict | None = None, filename: str = DEFAULT_FILENAME,
                        is_best: bool = False, **fields) -> str | None:
    """Atomically save everything needed to continue a run, on the main process only (returns the path,
    ``None`` on other ranks).

    ``epoch``: the number of completed epochs (the originals store ``epoch + 1``); a resumed run starts
    at this epoch. ``filename`` may contain ``{epoch}`` (e.g. ``'checkpoint_{epoch:04d}.pth.tar'``).
    ``extra``: ``{name: object with state_dict()}`` (LR scheduler, loss module holding a queue, ...).
    ``fields``: further plain values stored at the top level (``arch='resnet50'``, ``best_acc1=...``).
    """
    if not is_main_process():
        return None
    state = {
        "epoch": int(epoch),
        "state_dict": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "extra": {k: (v.state_dict() if hasattr(v, "state_dict") else v) for k, v in (extra or {}).items()},
        "rng_state": capture_rng_state(),
        "args": dict(vars(args)) if args is not None and not isinstance(args, dict) else args,
        "code_version": code_version(),
        "time": time.time(),
    }
    if state["args"]:
        # torch.device / other objects set at run time are stored as strings
        state["args"] = {k: (v if isinstance(v, (int, float, str, bool, list, tuple, dict, type(None)))
                             else str(v)) for k, v in state["args"].items()}
    state.update(fields)
    path = os.path.join(run_dir, filename.format(epoch=epoch))
    return save_checkpoint(state, path, is_best=is_best)


def resume_or_start(path_or_auto, run_dir: str | None, model: torch.nn.Module, optimizer=None, scaler=None,
                    extra: dict | None = None, auto: bool = True, restore_rng: bool = True,
                    return_state: bool = False, printer=print, pattern: str = "*.pth*"):
    """Continue a run, or start one. Returns ``start_epoch`` (or ``(start_epoch, state)`` with
    ``return_state``; ``state`` is ``None`` for a fresh start).

    * ``path_or_auto`` a path: load it; missing / corrupt / foreign → ``UserError``.
    * ``path_or_auto`` empty / None / ``'auto'``: when ``auto``, the newest loadable training checkpoint
      (has ``epoch`` and ``state_dict``) in ``run_dir`` matching ``pattern`` (truncated files skipped, see
      :func:`common.checkpoint.find_latest_checkpoint`); none → start at epoch 0.

    Restores the model (DDP or not), the optimizer, the AMP scaler, every ``extra`` object
    (``load_state_dict``) and the RNG state (that of rank 0 at save time).
    """
    path = path_or_auto
    if not path or path == "auto":
        path, state = (find_latest_checkpoint(run_dir, pattern, require_keys=("epoch", "state_dict"),
                                              return_state=True) if (auto and run_dir) else (None, None))
        if path is None:
            return (0, None) if return_state else 0
        printer(f"=> auto-resuming from '{path}'")
    else:
        printer(f"=> loading checkpoint '{path}'")
        state = load_checkpoint(path)
    if "state_dict" not in state or "epoch" not in state:
        raise UserError(f"'{path}' is not a training checkpoint of this code (keys: "
                        f"{list(state)[:8]}); use it with --pretrained instead of --resume, or pick another file")
    load_model_state(model, state["state_dict"], source=f"checkpoint '{path}'")
    if optimizer is not None and state.get("optimizer") is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise UserError(f"optimizer state in '{path}' does not match this run's optimizer ({e}); "
                            "were --optimizer / the parameter groups changed?") from None
    if scaler is not None and state.get("scaler"):
        # an empty dict comes from a disabled scaler (AMP off, or bfloat16 on CPU): nothing to restore
        scaler.load_state_dict(state["scaler"])
    for name, obj in (extra or {}).items():
        saved = (state.get("extra") or {}).get(name)
        if saved is None:
            raise UserError(f"checkpoint '{path}' has no saved state for '{name}'; it was written by "
                            "another method or version")
        try:
            if isinstance(obj, torch.nn.Module):
                load_model_state(obj, saved, source=f"'{name}' in checkpoint '{path}'")
            else:
                obj.load_state_dict(saved)
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"saved state of '{name}' in '{path}' does not fit: {e}") from None
    if restore_rng:
        restore_rng_state(state.get("rng_state"))
    start_epoch = int(state["epoch"])
    printer(f"=> resumed at epoch {start_epoch}")
    return (start_epoch, state) if return_state else start_epoch


def progress(iterable: Iterable, desc: str = "", enabled: bool = True, total: int | None = None, **kwargs):
    """A tqdm bar on the main process when ``enabled`` (the plain iterable otherwise)."""
    if not (enabled and is_main_process()):
        return iterable
    from tqdm import tqdm
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, total=total, **kwargs)
