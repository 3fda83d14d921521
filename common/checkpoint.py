"""Checkpoints: atomic save, load with clear errors, auto-resume discovery, RNG state capture."""
from __future__ import annotations

import argparse
import errno
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# write failures the user can fix (full disk, quota, read-only or foreign-owned folder)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def write_error(path: str, error: BaseException) -> UserError:
    """The ``UserError`` for a failed write of ``path`` (the previous file at ``path`` is untouched)."""
    directory = os.path.dirname(os.path.abspath(path))
    reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
    try:
        free = f"; {shutil.disk_usage(directory).free / 2 ** 20:.0f} MiB free there"
    except OSError:
        free = ""
    return UserError(f"could not write '{path}' ({reason}{free}); the previous checkpoint there is kept. Free disk "
                     f"space or fix the permissions of '{directory}', or write the run elsewhere (CL_RUNS_DIR / --name)")


def _is_write_failure(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in _WRITE_ERRNOS
    # torch.save reports a failed write of its zip stream as a RuntimeError ("unexpected pos ...",
    # "PytorchStreamWriter failed writing file ...")
    text = str(error)
    return isinstance(error, RuntimeError) and ("unexpected pos" in text or "PytorchStreamWriter failed" in text
                                                or "file write failed" in text)


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` to a temp file in the same directory, flush + fsync, then ``os.replace``.

    A crash at any point leaves either the old file or the complete new one at ``path``, never a
    half-written file (the temp file is removed on error; a SIGKILL can leave a ``.<name>.*.tmp``, which
    auto-resume never picks and :func:`remove_stale_temp_files` deletes on the next start). The file gets
    the mode the umask gives a new file (0644 under 022), not ``mkstemp``'s 0600, so teammates can read it.
    A full disk / read-only or foreign folder is one ``UserError`` that says the previous file is kept.
    ``CL_FAULT_INJECT=kill_in_save=n`` / ``disk_full_in_save=n`` act inside the n-th call (:mod:`common.faults`).
    """
    def write(f):
        faults.before_checkpoint_write(obj, f)
        torch.save(obj, f)
    _atomic_write(path, write)


def _atomic_write(path: str, write) -> None:
    """``write(f)`` into a temp file beside ``path`` (the umask's mode), flush + fsync, ``os.replace``; on any
    error the temp file is removed, and a failed write is one ``UserError`` (:func:`write_error`)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except OSError as e:
        raise (write_error(path, e) if _is_write_failure(e) else e) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError, RuntimeError)) and _is_write_failure(e):
            raise write_error(path, e) from None
        raise
    _fsync_dir(directory)


def remove_stale_temp_files(directory: str) -> list:
    """Delete the ``.<name>.*.tmp`` files an interrupted :func:`atomic_torch_save` left in ``directory``
    (call it only while holding the run folder's lock: a live run's temp file must not be touched).
    Returns the removed paths."""
    removed = []
    for p in glob.glob(os.path.join(glob.escape(directory), ".*.tmp")):
        try:
            os.unlink(p)
            removed.append(p)
        except OSError:
            pass
    return removed


def _tensors(obj, prefix: str = ""):
    """(dotted key, tensor) of every tensor nested in dicts / lists / tuples of ``obj``."""
    if torch.is_tensor(obj):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}" if prefix else str(i))


def refuse_non_finite(state: dict, path: str, epoch=None) -> None:
    """``UserError`` if any floating tensor anywhere in ``state`` (model weights under any key, heads, queues,
    memory banks, optimizer moments) holds NaN / inf. A loss that diverges on the last step of an epoch is only
    caught by the next epoch's loss check; its weights must not replace the last good checkpoint. One fused
    reduction per save, not per step."""
    floats = [(k, v) for k, v in _tensors(state) if v.is_floating_point() or v.is_complex()]
    if not floats or bool(torch.stack([torch.isfinite(v).all() for _, v in floats]).all()):
        return
    bad = [k for k, v in floats if not bool(torch.isfinite(v).all())]
    when = f" after epoch {epoch}" if epoch is not None else ""
    raise UserError(f"the model has NaN / inf weights{when} (e.g. {', '.join(bad[:3])}); not writing '{path}', the "
                    "previous checkpoint is kept. Likely causes: learning rate too high (lower --lr or add warm-up), "
                    "float16 overflow with AMP, or bad input data.")


def to_plain(obj):
    """``obj`` made of what ``torch.load(path, weights_only=True)`` accepts: tensors, numbers, strings, None and
    dicts / lists / tuples of them (NumPy arrays → tensors, NumPy scalars → Python numbers, ``argparse.Namespace``
    → dict, anything else, e.g. ``torch.device``, → its string)."""
    if obj is None or isinstance(obj, (bool, int, float, str)) or torch.is_tensor(obj):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, dict):
        return {(k if isinstance(k, (str, int)) else str(k)): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj) if type(obj) in (list, tuple) else [to_plain(v) for v in obj]
    if isinstance(obj, torch.Size):
        return tuple(obj)
    return str(obj)


def save_checkpoint(state, path: str, is_best: bool = False, best_name: str = "model_best.pth.tar") -> str:
    """The one way every entry point writes a file of tensors (training checkpoints, best copies, exports, plain
    state dicts): every tensor checked finite whatever its key, the object made loadable with
    ``torch.load(path, weights_only=True)`` (:func:`to_plain`), written atomically with the umask's mode, and a
    full disk / unwritable folder reported as one ``UserError`` that keeps the previous file. With ``is_best`` it
    is also (atomically) copied to ``best_name`` in the same directory. Returns ``path``."""
    epoch = state.get("epoch") if isinstance(state, dict) else None
    refuse_non_finite(state if isinstance(state, dict) else {"": state}, path, epoch)
    state = to_plain(state)
    atomic_torch_save(state, path)
    if is_best:   # a real copy, as the originals make it: a file copied over the latest one in place (``cp``)
        # must not change the best one too, as it would through a hard link
        _copy_atomically(path, os.path.join(os.path.dirname(os.path.abspath(path)), best_name))
    return path


def _copy_atomically(source: str, dest: str) -> None:
    """``source``'s bytes written to ``dest`` like every checkpoint (temp file, fsync, ``os.replace``)."""
    def copy(f):
        with open(source, "rb") as original:
            shutil.copyfileobj(original, f)
    _atomic_write(dest, copy)


def link_or_copy(source: str, dest: str) -> str:
    """Make the finished file ``source`` also appear at ``dest``, atomically: a hard link where the file system
    allows it (no second copy of a checkpoint on disk, no time spent writing it), else a copy written like every
    checkpoint (temp file, fsync, ``os.replace``). The next save of ``source`` replaces its directory entry with a
    new file (checkpoints are never written in place), so ``dest`` keeps the content it linked.
    A full disk / unwritable folder is one ``UserError`` that keeps the previous ``dest``. Returns ``dest``."""
    directory = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + ".", suffix=".tmp", dir=directory)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise (write_error(dest, e) if _is_write_failure(e) else e) from None
    try:
        os.link(source, tmp)
    except OSError:   # no hard links here (another device, a file system without them): copy
        _copy_atomically(source, dest)
        return dest
    try:
        os.replace(tmp, dest)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise write_error(dest, e) from None
    _fsync_dir(directory)
    return dest


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
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        # as a tensor, so the checkpoint loads with weights_only=True
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
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
        kind, keys, pos, has_gauss, cached = state["numpy"]
        keys = keys.numpy() if torch.is_tensor(keys) else np.asarray(keys)
        np.random.set_state((kind, keys.astype(np.uint32), int(pos), int(has_gauss), float(cached)))
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
