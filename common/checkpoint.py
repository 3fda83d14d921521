"""Checkpoints: atomic save, load with clear errors, auto-resume discovery, RNG state capture."""
from __future__ import annotations

import glob
import os
import random
import re
import shutil
import subprocess
import tempfile

import numpy as np
import torch

from common import faults
from common.utils import UserError


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` to a temp file in the same directory, flush + fsync, then ``os.replace``.

    A crash at any point leaves either the old file or the complete new one at ``path``, never a
    half-written file (the temp file is removed on error; a SIGKILL can leave a ``.<name>.*.tmp``, which
    auto-resume never picks). ``CL_FAULT_INJECT=kill_in_save=n`` kills the process inside the n-th call
    (:mod:`common.faults`).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            faults.before_checkpoint_write(obj, f)
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def refuse_non_finite(state_dict: dict, path: str, epoch=None) -> None:
    """``UserError`` if a floating tensor of ``state_dict`` holds NaN / inf. A loss that diverges on the last step
    of an epoch is only caught by the next epoch's loss check; its weights must not replace the last good
    checkpoint. One fused reduction per save, not per step."""
    floats = [v for v in state_dict.values() if torch.is_tensor(v) and v.is_floating_point()]
    if not floats or bool(torch.stack([torch.isfinite(v).all() for v in floats]).all()):
        return
    bad = [k for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    when = f" after epoch {epoch}" if epoch is not None else ""
    raise UserError(f"the model has NaN / inf weights{when} (e.g. {', '.join(bad[:3])}); not writing '{path}', the "
                    "previous checkpoint is kept. Likely causes: learning rate too high (lower --lr or add warm-up), "
                    "float16 overflow with AMP, or bad input data.")


def save_checkpoint(state: dict, path: str, is_best: bool = False, best_name: str = "model_best.pth.tar") -> str:
    """Atomically save ``state`` to ``path``; with ``is_best`` also (atomically) copy it to ``best_name``
    in the same directory. ``state['args']`` given as an ``argparse.Namespace`` is stored as a dict so the
    checkpoint does not depend on pickling the namespace. Returns ``path``."""
    state = dict(state)
    if isinstance(state.get("state_dict"), dict):
        refuse_non_finite(state["state_dict"], path, state.get("epoch"))
    if "args" in state and state["args"] is not None and not isinstance(state["args"], dict):
        state["args"] = dict(vars(state["args"]))
    atomic_torch_save(state, path)
    if is_best:
        best = os.path.join(os.path.dirname(os.path.abspath(path)), best_name)
        directory = os.path.dirname(best)
        fd, tmp = tempfile.mkstemp(prefix="." + best_name + ".", suffix=".tmp", dir=directory)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, best)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    return path


def load_checkpoint(path: str, map_location="cpu", require_dict: bool = True):
    """Load a checkpoint, turning every failure into a ``UserError`` naming the file and the fix.

    Missing file, truncated / corrupt file (any unpickling or zip error) and a file that is not a dict
    (when ``require_dict``) are reported; ``weights_only=False`` because the originals' checkpoints hold
    plain Python objects (args, numpy RNG state).
    """
    if not path or not os.path.isfile(path):
        raise UserError(f"checkpoint '{path}' does not exist; check the --resume / --pretrained path")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, bad pickle, wrong format, ...
        raise UserError(f"checkpoint '{path}' is corrupt or truncated and cannot be loaded "
                        f"({type(e).__name__}: {e}); delete it or point --resume at another checkpoint") from None
    if require_dict and not isinstance(obj, dict):
        raise UserError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a checkpoint dict; "
                        "is this the right file?")
    return obj


def is_loadable(path: str) -> bool:
    try:
        load_checkpoint(path)
        return True
    except UserError:
        return False


def _epoch_from_name(path: str):
    nums = re.findall(r"(\d+)", os.path.basename(path))
    return int(nums[-1]) if nums else -1


def find_latest_checkpoint(run_dir: str, pattern: str = "checkpoint*.pth*",
                           require_keys: tuple = (), return_state: bool = False):
    """Newest *loadable* checkpoint in ``run_dir`` matching ``pattern`` (``None`` if there is none).

    Candidates are tried newest first: by the last number in the file name (``checkpoint_0042.pth.tar``),
    then by modification time; the first one that loads (truncated / corrupt files are skipped) and
    contains every key of ``require_keys`` wins, so only one file is normally read. Temp files of an
    interrupted save (``.<name>.*.tmp``) never match because they start with a dot.
    ``return_state=True`` returns ``(path, state)`` (``(None, None)``) to avoid loading the file twice.
    """
    found = (None, None)
    if run_dir and os.path.isdir(run_dir):
        candidates = [p for p in glob.glob(os.path.join(run_dir, pattern)) if os.path.isfile(p)]
        candidates.sort(key=lambda p: (_epoch_from_name(p), os.path.getmtime(p), p), reverse=True)
        for p in candidates:
            try:
                state = load_checkpoint(p)
            except UserError:
                continue
            if all(k in state for k in require_keys):
                found = (p, state)
                break
    return found if return_state else found[0]


def capture_rng_state() -> dict:
    """Python, numpy, torch CPU and (if present) every CUDA device's RNG state."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict | None) -> None:
    """Inverse of :func:`capture_rng_state` (missing parts are left alone)."""
    if not state:
        return
    if "python" in state:
        random.setstate(_to_python_state(state["python"]))
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [torch.as_tensor(s, dtype=torch.uint8).cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _to_python_state(s):
    # pickling can turn the inner tuple into a list; random.setstate needs tuples
    if isinstance(s, list):
        s = tuple(s)
    if len(s) == 3 and isinstance(s[1], list):
        s = (s[0], tuple(s[1]), s[2])
    return s


def code_version() -> str:
    """``git describe --always --tags`` of the repository this file lives in, else the package version.

    Read-only: no ``--dirty`` (it refreshes, i.e. writes, the index) and optional locks disabled.
    """
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "describe", "--always", "--tags"], cwd=repo,
                             env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"),
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return version("contrastive-monorepo")
    except Exception:
        return "unknown"
