"""Test-only fault injection: make a training run SIGKILL itself at a chosen point.

Set ``CL_FAULT_INJECT`` to comma-separated ``key=n`` items before the process starts; unset (the normal
case) nothing is installed and the hooks cost one integer comparison per checkpoint write, nothing per step.

* ``kill_after_steps=n`` — SIGKILL right after the n-th ``optimizer.step()`` of the process (a global
  ``torch.optim`` post-step hook, so every method's training loop is covered without touching it; a linear
  probe run *before* training would count too, so fault-injected runs keep such monitors off).
* ``kill_in_save=n`` — during the n-th :func:`common.checkpoint.atomic_torch_save` call of the process,
  write half of the serialised checkpoint to the temp file, fsync it, then SIGKILL: the state a crash in
  the middle of a checkpoint write leaves on disk (a partial ``.<name>.*.tmp``, the old file untouched).
* ``disk_full_in_save=n`` — the n-th checkpoint write fails part-way with ``OSError(ENOSPC)``, as on a full disk.

Example: ``CL_FAULT_INJECT=kill_after_steps=5 python main.py ...`` exits with return code -9 after five
steps. The variable is read once, when this module is first imported (``common.checkpoint`` imports it).
Counts are per process: a resumed run counts from zero again. Single-process runs only (in a multi-process
run every rank would count and only rank 0 writes checkpoints). ``tests/reliability/test_faults.py`` uses it.

A second test-only hook lives here for the same reason (a global torch hook instead of a change to every loop):
``CL_SHORT_RUN=1`` makes any documented command finish in seconds while running all of its code once.

* Every *training* data loader (one that draws its batches in a random or sampled order: a shuffling
  ``DistributedSampler``, a ``RandomSampler``, a custom batch sampler) yields its first batch only, and holds one
  batch even when ``drop_last`` would leave none (tiny test data smaller than the command's batch). Loaders that
  visit the data in order (evaluation, feature extraction, kNN memory banks) are left whole.
* Every loader loads in the calling process (``num_workers`` 0): workers never change what a run computes (they
  are not result flags), forking 32 of them for one batch costs more than the batch, and forked workers of an
  interpreter that already ran other commands (``ci/entry_batch.py``) can deadlock on a lock a thread held.
* A one-process ``mp.spawn`` (the originals' ``--multiprocessing-distributed`` on a CPU node) calls its function
  in the calling process, then leaves the process group as the spawned process's exit would: the same run,
  without a second interpreter (which ``ci/entry_batch.py`` exists to avoid).
* Epoch loops (:func:`epoch_range`, used by ``common.engine.fit`` and the loops that do not go through it) run
  only their *last* epoch, so every file the command writes at its end carries the name and epoch number the
  original's next command reads (``..._400_2.0_0.5.pth``, ``checkpoint_0199.pth.tar``).

``CL_SHORT_EVAL=1`` (with ``CL_SHORT_RUN=1``) cuts the in-order loaders to their first batch as well, for a test that
checks what training did and not what an evaluation reports (PaCo's two-process Places test, whose bfloat16
evaluation passes of the whole test split cost more than its training step on a CPU).

Unset (the normal case) nothing is patched and :func:`epoch_range` is ``range``. ``tests/test_original_commands.py``
uses it to run the originals' command lines as typed.
"""
from __future__ import annotations

import errno
import io
import os
import signal
import sys

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from common.utils import UserError

FAULT_ENV = "CL_FAULT_INJECT"
SHORT_RUN_ENV = "CL_SHORT_RUN"
KNOWN_FAULTS = ("kill_after_steps", "kill_in_save", "disk_full_in_save")


def parse_fault_spec(spec: str) -> dict:
    """``'kill_after_steps=3,kill_in_save=2'`` → ``{'kill_after_steps': 3, 'kill_in_save': 2}``."""
    plan = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in KNOWN_FAULTS or not sep:
            raise UserError(f"{FAULT_ENV}: unknown item '{item}'; use comma-separated "
                            f"{'=<n>, '.join(KNOWN_FAULTS)}=<n> (or unset it)")
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise UserError(f"{FAULT_ENV}: '{item}' needs a positive integer count, e.g. {key}=2")
        plan[key] = count
    return plan


def _plan_from_env() -> dict:
    # read at import, before run_main is active: report a bad value the way run_main reports a UserError
    try:
        return parse_fault_spec(os.environ.get(FAULT_ENV, ""))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


_PLAN = _plan_from_env()
_KILL_AFTER_STEPS = _PLAN.get("kill_after_steps", 0)
_KILL_IN_SAVE = _PLAN.get("kill_in_save", 0)
_DISK_FULL_IN_SAVE = _PLAN.get("disk_full_in_save", 0)
_steps_taken = 0
_saves_started = 0


def _count_step(optimizer, args, kwargs) -> None:
    global _steps_taken
    _steps_taken += 1
    if _steps_taken == _KILL_AFTER_STEPS:
        _kill_self()


if _KILL_AFTER_STEPS:
    register_optimizer_step_post_hook(_count_step)


def before_checkpoint_write(obj, file) -> None:
    """Called by ``atomic_torch_save`` with the open temp file before ``torch.save`` writes ``obj`` to it."""
    global _saves_started
    if not (_KILL_IN_SAVE or _DISK_FULL_IN_SAVE):
        return
    _saves_started += 1
    if _saves_started == _DISK_FULL_IN_SAVE:
        # what the kernel answers a write on a full disk, after part of the file went out
        file.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if not _KILL_IN_SAVE:
        return
    if _saves_started == _KILL_IN_SAVE:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        data = buffer.getvalue()
        file.write(data[: len(data) // 2])
        file.flush()
        os.fsync(file.fileno())
        _kill_self()


SHORT_RUN = os.environ.get(SHORT_RUN_ENV, "") not in ("", "0")
SHORT_EVAL_ENV = "CL_SHORT_EVAL"
SHORT_EVAL = SHORT_RUN and os.environ.get(SHORT_EVAL_ENV, "") not in ("", "0")


def epoch_range(start: int, end: int) -> range:
    """The epochs ``start .. end-1`` an epoch loop runs: all of them, or only the last with ``CL_SHORT_RUN=1``."""
    return range(max(start, end - 1), end) if SHORT_RUN else range(start, end)


def _visits_in_order(loader) -> bool:
    from torch.utils.data import BatchSampler, DistributedSampler, SequentialSampler
    batches = loader.batch_sampler
    sampler = batches.sampler if isinstance(batches, BatchSampler) else (loader.sampler if batches is None else None)
    return isinstance(sampler, SequentialSampler) or (isinstance(sampler, DistributedSampler) and not sampler.shuffle)


def _install_short_run() -> None:
    import itertools

    from torch.utils.data import BatchSampler, DataLoader

    original_init, original_iter, original_len = DataLoader.__init__, DataLoader.__iter__, DataLoader.__len__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.num_workers = 0
        batches = self.batch_sampler
        if not _visits_in_order(self) and isinstance(batches, BatchSampler) and batches.drop_last \
                and len(batches) == 0:
            batches.drop_last = False   # data smaller than one batch: the one (short) batch instead of none

    def whole(loader) -> bool:
        return _visits_in_order(loader) and not SHORT_EVAL

    def __iter__(self):
        it = original_iter(self)
        return it if whole(self) else itertools.islice(it, 1)

    def __len__(self):
        n = original_len(self)
        return n if whole(self) else min(n, 1)

    DataLoader.__init__, DataLoader.__iter__, DataLoader.__len__ = __init__, __iter__, __len__

    import torch.multiprocessing as mp
    original_spawn = mp.spawn

    def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
        if nprocs != 1 or not join:
            return original_spawn(fn, args=args, nprocs=nprocs, join=join, daemon=daemon, start_method=start_method)
        try:
            fn(0, *args)
        except SystemExit as e:   # the spawned process's exit status, as mp.spawn reports it to its caller
            if e.code not in (None, 0):
                raise mp.ProcessExitedException(f"process 0 terminated with exit code {e.code}", error_index=0,
                                                error_pid=os.getpid(), exit_code=e.code) from None
        finally:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    mp.spawn = spawn


if SHORT_RUN:
    _install_short_run()
