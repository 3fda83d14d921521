"""The run engine: what every training and linear-evaluation entry point of the five methods shares.

A method supplies what is its own (its model, loss, optimizer and data, one epoch of training, its evaluation, the
layout of its checkpoint); :class:`Run` owns everything around it, once for all methods::

    with Run.open("paco", args, readable="cifar100_resnet32") as run:   # folder, identity, lock, logger
        state = run.resume_state(args.resume, "moco_ckpt.pth.tar")       # None for a new run
        start = run.restore(state, model, optimizer, scaler) if state else 0
        for epoch in range(start, args.epochs):
            loss = train_one_epoch(..., run)                             # run.progress / run.scalar inside
            run.save({"epoch": epoch + 1, "state_dict": ..., ...}, "moco_ckpt.pth.tar", is_best=...)
        run.finish("top1", acc)                                          # the run is complete

What it guarantees (every method alike):

* **Identity.** A run folder belongs to one set of *result flags*: every flag except those that cannot change the
  result (:data:`NON_RESULT_FLAGS`: workers, print frequency, progress bar, output and data locations, launch
  and device flags). The default name is a readable part plus an 8-character digest of the result flags, so a
  sweep over ``--lr`` gets one folder per value. With an explicit ``--name`` over a folder of other flags, or a
  checkpoint whose recorded flags differ, the run stops with one ``error:`` line listing the differing flags and
  the ways out (a new ``--name``, or ``--no-auto-resume`` / ``--resume`` to overwrite on purpose). An identical
  command over a finished run prints ``run complete`` with its final metric and exits 0. The record
  ``run.json`` is written only by a run that trained (at its first checkpoint) and when it finishes.
* **One process per folder.** Rank 0 holds an ``flock`` on ``<run>/.lock`` for the life of the run; a second
  process stops at once naming the holder; the lock of a dead process is released by the kernel.
* **Checkpoints** go through :func:`common.checkpoint.save_checkpoint` (atomic, finite, umask mode,
  ``weights_only``-loadable, one ``error:`` line on a full disk). Leftover temp files of a crash are removed at
  the next start; a damaged or foreign file under the resume name stops the run naming the file (never a silent
  fresh start, never an overwrite); the folder is checked writable before the first epoch.
* **Logging schema** (documented in ``common/README.md``): tags ``train/loss``, ``train/lr``, ``eval/top1``,
  ``eval/knn_top1``, ``eval/linear_top1`` …, every scalar against the number of optimizer steps taken; a time
  stamp on every line of ``log.txt``.
* **Errors**: the lock is released and the logger closed on every exit path (``with`` block); all ranks agree on
  whether to run (a refusal is printed once, by rank 0).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time
from typing import Iterable

import torch

from common import distributed as dist_utils
from common.checkpoint import (capture_rng_state, code_version, link_or_copy, load_checkpoint,
                               remove_stale_temp_files, restore_rng_state, save_checkpoint, write_error)
from common.faults import epoch_range  # noqa: F401  (the loops outside fit import it from here)
from common.logger import RunLogger, runs_root
from common.utils import UserError

RECORD = "run.json"
LOCK = ".lock"

# flags (argparse dest names) that never change what a run computes: they may differ between a run and its
# resumption. Everything else is a result flag.
NON_RESULT_FLAGS = frozenset({
    # bookkeeping of the run itself
    "name", "mark", "resume", "auto_resume", "resume_checkpoint", "start_epoch", "evaluate",
    # output and data locations (the data are identified by --dataset and the flags that subset them)
    "root", "root_path", "data", "data_folder", "data_dir", "dataset_dir", "list_dir", "checkpoint_dir", "save_dir",
    "save_folder", "output_dir", "log_dir", "logdir", "runs_dir", "tb_folder", "model_folder",
    "save_path", "results_dir",
    # speed, progress and printing
    "workers", "num_workers", "print_freq", "log_freq", "progress", "no_progress", "save_every", "save_freq",
    "save_interval", "snapshot_freq",
    # launch, devices and the run-time values init_distributed adds to args
    "world_size", "rank", "dist_url", "dist_backend", "dist_timeout", "multiprocessing_distributed",
    "nproc_per_node", "gpu", "gpus", "gpu_id", "device", "local_rank", "distributed", "ngpus_per_node",
    "run_dir",
})

# tags of the logging schema (the same kind of number has the same tag in every method)
TAGS = ("train/loss", "train/lr", "train/top1", "train/epoch", "eval/top1", "eval/top5", "eval/loss",
        "eval/knn_top1", "eval/linear_top1", "eval/many", "eval/medium", "eval/few")


class RunComplete(SystemExit):
    """Raised (exit status 0) when an identical command finds its run already finished."""

    def __init__(self):
        super().__init__(0)


def result_flags(args, ignore: Iterable[str] = ()) -> dict:
    """The flags of ``args`` that can change the result, as plain JSON values, sorted."""
    skip = NON_RESULT_FLAGS | set(ignore)
    values = vars(args) if not isinstance(args, dict) else args
    return {k: _jsonable(v) for k, v in sorted(values.items()) if k not in skip and not k.startswith("_")}


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def digest(flags: dict) -> str:
    """8 hex characters identifying a set of result flags."""
    return hashlib.sha1(json.dumps(flags, sort_keys=True).encode()).hexdigest()[:8]


def default_run_name(readable: str, flags: dict) -> str:
    """``<readable>-<digest of the result flags>``: readable for a person, unique for each set of flags."""
    return f"{readable}-{digest(flags)}" if readable else digest(flags)


def flag_differences(stored: dict, current: dict) -> list[str]:
    """``--flag: stored -> current`` for each result flag that differs (flags added in a later version of this
    code, absent from ``stored``, are compared only when their value is not the default None/False)."""
    out = []
    for k in sorted(set(stored) | set(current)):
        a, b = stored.get(k, _MISSING), current.get(k, _MISSING)
        if a is _MISSING and b in (None, False):
            continue
        if a != b:
            show = lambda v: "(not set)" if v is _MISSING else repr(v)  # noqa: E731
            out.append(f"--{k}: {show(a)} -> {show(b)}")
    return out


_MISSING = object()


def _process_description() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"


class _FolderLock:
    """An ``flock`` held on ``<run>/.lock`` (released by the kernel when the process dies, so a stale lock of a
    dead process never blocks). The file names its holder for the refusal message."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK)
        self.fd = None

    def acquire(self) -> None:
        import fcntl
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise write_error(self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"the run folder '{os.path.dirname(self.path)}' is in use by a live run ({holder}); "
                            "wait for it to finish, or give this run its own --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _process_description().encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing releases the flock; the file stays (deleting it would race)
            self.fd = None


class Run:
    """One run of one entry point: its folder, identity, lock, logger and checkpoints (see the module docstring).

    Create it with :meth:`open` inside the worker, after ``init_distributed``; use it as a context manager so the
    lock and the logger are released on every exit path. Only rank 0 touches the folder.
    """

    def __init__(self, method: str, run_dir: str, flags: dict, all_flags: dict, overwrite: bool,
                 log_name: str = "log.txt", steps_per_epoch: int = 0):
        self.method, self.run_dir, self.flags, self.all_flags = method, run_dir, flags, all_flags
        self.overwrite = overwrite
        self.main = dist_utils.is_main_process()
        self._lock = _FolderLock(run_dir)
        self.logger: RunLogger | None = None
        self.log_name = log_name
        self.step = 0                       # optimizer steps taken: the x-axis of every scalar
        self.recorded = False               # run.json written by this process
        self.started = time.time()
        self.resume_path = None             # the file resume_state read
        self.name_flag, self.overwrite_flag = "--name", "--no-auto-resume"

    # ------------------------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, method: str, args, readable: str = "", name: str | None = None, root: str | None = None,
             subdir: str = "", unique_subdir: bool = False, ignore: Iterable[str] = (),
             overwrite: bool | None = None,
             log_name: str = "log.txt", name_flag: str = "--name", overwrite_flag: str = "--no-auto-resume",
             folder: str | None = None) -> "Run":
        """Open (rank 0: create, lock, check) the folder ``<runs>/<method>/<name>[/<subdir>]``.

        ``name``: the user's ``--name`` (None → ``<readable>-<digest>``); ``unique_subdir``: the digest goes on
        ``subdir`` instead. ``root``: a method's own output-root flag
        (``<root>/runs/...``), else ``$CL_RUNS_DIR/<method>/<name>``, else ``./runs/<method>/<name>``. ``ignore``:
        further flags of this entry point that cannot change its result. ``overwrite``: the user asked not to
        continue what is there (``--no-auto-resume``; default: ``not args.auto_resume`` when that flag exists).
        ``name_flag`` / ``overwrite_flag``: this entry point's spellings, for the messages. ``folder``: the run
        folder itself, when the original names it with a flag (MoCo-v3's ``--output_dir``) or derives it from its
        input (next to ``--pretrained``); ``name`` then only labels the run. Sets ``args.run_dir``.
        """
        flags = result_flags(args, ignore)
        if name is None:
            name = default_run_name(readable, flags)
        if subdir and unique_subdir:     # the digest goes on the innermost folder (ASCL: <run_id>/<results>-<digest>)
            subdir = default_run_name(subdir, flags)
        if folder is not None:
            run_dir = os.path.abspath(folder)
        else:
            run_dir = os.path.join(runs_root(root), method, name, subdir) if subdir else \
                os.path.join(runs_root(root), method, name)
        if overwrite is None:
            overwrite = not getattr(args, "auto_resume", True)
        # --resume FILE continues that file into this folder: an explicit choice, like --no-auto-resume
        resume = getattr(args, "resume", None)
        overwrite = overwrite or (isinstance(resume, str) and resume not in ("", "auto", "run_dir"))
        run = cls(method, run_dir, flags, result_flags(args, ("name",)) | {"name": name}, overwrite, log_name)
        run.name_flag, run.overwrite_flag = name_flag, overwrite_flag
        args.run_dir = run_dir
        decision, message = "train", ""
        if run.main:
            try:
                decision = run._open_folder()
            except UserError as e:
                decision, message = "error", str(e)
            except BaseException:
                run._lock.release()
                raise
        decision, message = _agree((decision, message))
        if decision == "error":
            run._lock.release()
            if run.main:
                raise UserError(message)
            raise SystemExit(2)        # rank 0 prints the one error line
        if decision == "complete":
            run._lock.release()
            raise RunComplete()
        run.logger = RunLogger(run_dir, enabled=run.main, log_name=log_name)
        run.info(f"run folder: {run_dir}")
        return run

    def _open_folder(self) -> str:
        try:
            os.makedirs(self.run_dir, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the run folder '{self.run_dir}' ({e.strerror}); choose a writable "
                            "place with CL_RUNS_DIR (or the script's output flag) or another --name") from None
        self._lock.acquire()           # also proves the folder writable, before any training
        for path in remove_stale_temp_files(self.run_dir):
            print(f"=> removed '{path}', left by an interrupted checkpoint write", flush=True)
        record = self.read_record()
        if record is None or self.overwrite:
            return "train"
        differences = flag_differences(record.get("flags", {}), self.flags)
        if differences:
            raise UserError(self.refusal(differences, "was run"))
        if record.get("status") == "complete":
            final = record.get("final") or {}
            shown = f"; final {final['metric']}: {final['value']:.2f}" if "value" in final else ""
            print(f"run complete: {self.run_dir}{shown} (nothing to do; {self.overwrite_flag} trains it again)",
                  flush=True)
            return "complete"
        return "train"

    def refusal(self, differences: list[str], what: str) -> str:
        return (f"the run folder '{self.run_dir}' {what} with other flags ({'; '.join(differences[:8])}"
                f"{'; ...' if len(differences) > 8 else ''}); continuing it would mix two runs. Start a new run with "
                f"another {self.name_flag} (or leave {self.name_flag} unset: the default name carries a digest of the "
                f"flags), or overwrite it on purpose with {self.overwrite_flag} (or --resume FILE)")

    def read_record(self) -> dict | None:
        path = os.path.join(self.run_dir, RECORD)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"the run record '{path}' is unreadable ({e}); move it aside to continue this run, or "
                            "choose another --name") from None

    def _write_record(self, status: str, final: dict | None = None) -> None:
        record = {"method": self.method, "status": status, "flags": self.flags, "all_flags": self.all_flags,
                  "code_version": code_version(), "command": sys.argv, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
        if final:
            record["final"] = final
        path = os.path.join(self.run_dir, RECORD)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(record, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as e:
            raise write_error(path, e) from None
        self.recorded = True

    # ------------------------------------------------------------------------------------------------ resume
    def resume_state(self, explicit: str | None, resume_name: str, require: Iterable[str] = ("epoch",)) -> dict | None:
        """The checkpoint to continue from, or ``None`` for a new run (on every rank; all ranks read the file).

        ``explicit`` (``--resume FILE``): that file, whatever its recorded flags (the user asked for it).
        Otherwise, unless overwriting, ``<run>/<resume_name>`` (a glob pattern: its highest-numbered match): a damaged file there, or one without the keys
        ``require``, stops the run naming it; recorded result flags that differ from this command's stop it too.
        """
        if explicit:
            self.resume_path = explicit
            return load_checkpoint(explicit)
        path = os.path.join(self.run_dir, resume_name)
        if any(c in resume_name for c in "*?["):
            # per-epoch files (MoCo's checkpoint_0042.pth.tar): the highest-numbered one, damaged or not, so a
            # damaged newest file is reported instead of silently falling back to an older one
            import glob
            from common.checkpoint import _epoch_from_name
            found = sorted(glob.glob(os.path.join(glob.escape(self.run_dir), resume_name)), key=_epoch_from_name)
            if not found:
                return None
            path, resume_name = found[-1], os.path.basename(found[-1])
        if self.overwrite or not os.path.exists(path):
            return None
        self.resume_path = path
        try:
            state = load_checkpoint(path)
        except UserError as e:
            raise UserError(f"{e}. It is this run's resume checkpoint, so the run stops rather than start over it: "
                            f"move it aside (mv '{path}' '{path}.damaged') to start again, or use another "
                            f"{self.name_flag}") \
                from None
        missing = [k for k in require if k not in state]
        if missing:
            raise UserError(f"'{path}' is not a training checkpoint of this entry point (no {', '.join(missing)}; "
                            f"keys: {', '.join(map(str, list(state)[:8]))}); move it aside or use another {self.name_flag}")
        stored = state.get("run_flags")
        if stored is not None:
            differences = flag_differences(stored, self.flags)
            if differences:
                raise UserError(self.refusal(differences, f"holds a checkpoint ('{resume_name}') written"))
        return state

    def restore(self, state: dict, model=None, optimizer=None, scaler=None, extra: dict | None = None,
                model_key: str = "state_dict", rng: bool = True) -> int:
        """Load ``state`` into the given objects (model DDP or not; ``extra``: ``{key: object}`` restored from
        ``state[key]``) and the RNG; returns ``state['epoch']``. Mismatches are one ``UserError``."""
        from common.training import load_model_state
        source = f"checkpoint '{self.resume_path}'"
        if model is not None:
            load_model_state(model, state[model_key], source=source)
        if optimizer is not None and state.get("optimizer") is not None:
            try:
                optimizer.load_state_dict(state["optimizer"])
            except (ValueError, KeyError, RuntimeError) as e:
                raise UserError(f"optimizer state in {source} does not match this run's optimizer ({e})") from None
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        for key, obj in (extra or {}).items():
            if state.get(key) is None:
                raise UserError(f"{source} has no '{key}' entry; it was written by another method or version")
            if isinstance(obj, torch.nn.Module):
                load_model_state(obj, state[key], source=f"'{key}' of {source}")
            else:
                obj.load_state_dict(state[key])
        if rng:
            restore_rng_state(state.get("rng_state"))
        self.step = int(state.get("global_step", self.step) or 0)
        self.info(f"=> resumed at epoch {state['epoch']}")
        return int(state["epoch"])

    # ------------------------------------------------------------------------------------------------- saving
    def save(self, state: dict, filename: str, is_best: bool = False, best_name: str | None = None,
             bookkeeping: bool = True) -> str | None:
        """Write ``state`` to ``<run>/<filename>`` (rank 0 only; returns the path, None elsewhere) through
        :func:`common.checkpoint.save_checkpoint`. With ``bookkeeping`` the run's result flags, the optimizer-step
        count, RNG state and code version are added beside the method's own keys (the originals' layouts stay
        as they are); plain exports pass ``bookkeeping=False``. The first save records the run (``run.json``)."""
        if not self.main:
            return None
        if bookkeeping:
            state = dict(state)
            state.setdefault("run_flags", self.flags)
            state.setdefault("global_step", self.step)
            state.setdefault("rng_state", capture_rng_state())
            state.setdefault("code_version", code_version())
        path = filename if os.path.isabs(filename) else os.path.join(self.run_dir, filename)
        save_checkpoint(state, path, is_best=is_best, **({"best_name": best_name} if best_name else {}))
        if not self.recorded:
            self._write_record("running")
        return path

    def finish(self, metric: str | None = None, value: float | None = None) -> None:
        """The run is complete: record its final metric (an identical command then only reports it)."""
        if self.main:
            final = {"metric": metric, "value": float(value)} if metric is not None and value is not None else None
            self._write_record("complete", final)
        self.info(f"run folder: {self.run_dir}")
        self.info(f"wall time: {format_duration(time.time() - self.started)}")

    def report(self, when: str, metric: str, value: float, step: int | None = None) -> None:
        """The ``<when> <metric>: <value>`` line of a run's initial / final number (two decimals, a loss four) and,
        for an evaluation, its scalar (``eval_tag(metric)`` at ``step``)."""
        self.info(f"{when} {metric}: {value:.4f}" if metric == "loss" else f"{when} {metric}: {value:.2f}")
        if metric != "loss":
            self.scalar(eval_tag(metric), value, step)

    # ------------------------------------------------------------------------------------------------ logging
    def info(self, msg: str = "") -> None:
        if self.logger is not None:
            self.logger.info(msg)
        elif self.main:
            print(msg, flush=True)

    def scalar(self, tag: str, value, step: int | None = None) -> None:
        """One scalar of the schema, against ``step`` (default: the optimizer steps taken so far)."""
        if self.logger is not None:
            self.logger.scalar(tag, value, self.step if step is None else step)

    def scalars(self, values: dict, prefix: str = "", step: int | None = None) -> None:
        for tag, value in values.items():
            self.scalar(prefix + tag, value, step)

    def progress(self, iterable, desc: str = "", total: int | None = None, enabled: bool = True):
        from common.training import progress
        return progress(iterable, desc=desc, enabled=enabled and self.main, total=total)

    # ------------------------------------------------------------------------------------------------ closing
    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        self._lock.release()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def add_run_args(parser, name: str | None = None, auto_resume: str | None = "--auto-resume",
                 max_iters: bool = True, freeze_bn: str | None = None, progress: bool = True) -> None:
    """The flags this project adds to an original's (``auto_resume`` / ``freeze_bn``: this entry point's spelling,
    None: not added): ``--name`` (``name``: how the default is made), ``--auto-resume`` (a ``--no-`` spelling is
    the only switch; otherwise both ``--x`` and ``--no-x``), ``--device``, ``--max-iters``, ``--freeze-bn``,
    ``--no-progress``."""
    if name is not None:
        parser.add_argument("--name", default=None, type=str, help=f"run name (default {name})")
    if auto_resume and auto_resume.startswith("--no-"):
        parser.add_argument(auto_resume, dest="auto_resume", action="store_false",
                            help="train the run folder again instead of continuing (or reporting) it")
    elif auto_resume:
        parser.add_argument(auto_resume, dest="auto_resume", action=argparse.BooleanOptionalAction, default=True,
                            help=f"continue the run folder's checkpoint (--no-{auto_resume[2:]}: train it again)")
    parser.add_argument("--device", default=None, type=str, help="cpu / cuda (default: cuda if available)")
    if max_iters:
        parser.add_argument("--max-iters", default=0, type=int,
                            help="stop each epoch after this many iterations (0: all; smoke tests)")
    if freeze_bn:
        parser.add_argument(freeze_bn, action="store_true",
                            help="BatchNorm in eval mode while training (testing aid: per-process batch statistics "
                                 "make a multi-process run differ from one process; common.backbones.freeze_batchnorm)")
    if progress:
        parser.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bars")


ORIGINAL_OUTPUTS_ENV = "CL_ORIGINAL_OUTPUTS"


def original_output_path(script_dir: str, relative: str) -> str | None:
    """Where an original wrote a file that its next documented command reads: ``relative`` to the folder its
    scripts run in (``script_dir``, e.g. ``<repo>/attentionce/image`` for ``../results/stl10/x.pth``), so the
    originals' command chains run as typed. ``$CL_ORIGINAL_OUTPUTS=<dir>`` resolves it under ``<dir>/<script
    folder>/`` instead (the test suite does, to keep the source tree clean); ``=off`` → ``None`` (write none)."""
    base = os.environ.get(ORIGINAL_OUTPUTS_ENV)
    if base == "off":
        return None
    if base:
        script_dir = os.path.join(base, os.path.basename(os.path.normpath(script_dir)))
    return os.path.normpath(os.path.join(script_dir, relative))


def original_input(path: str, script_dir: str) -> str:
    """A file an original's documented command passes on (``--model_path ../results/...``, ``--pretrained
    checkpoint/...``): ``path`` as given when it exists (or is absolute), else relative to ``script_dir``, the folder
    the original ran its scripts in, else where :func:`original_output_path` published it; otherwise ``path``
    unchanged (the reader then names it in its error)."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return path
    for candidate in (os.path.join(script_dir, path), original_output_path(script_dir, path)):
        if candidate and os.path.exists(candidate):
            return candidate
    return path


def publish(src: str, dest: str | None) -> str | None:
    """Make the finished file ``src`` (in the run folder) also appear at ``dest`` (an original's output path): a hard
    link where the file system allows it, else an atomic copy (:func:`common.checkpoint.link_or_copy`). Rank 0
    only; returns ``dest``."""
    if dest is None or not dist_utils.is_main_process():
        return None
    return link_or_copy(src, dest)


def eval_tag(metric: str) -> str:
    """The schema's tag of an ``initial / final <metric>`` line: 'linear top-1' → 'eval/linear_top1'."""
    return "eval/" + metric.replace(" top-1", "_top1")


def args_record(args) -> dict:
    """The command's arguments as plain values (the ``args`` entry of a checkpoint; run-time objects such as the
    device as strings)."""
    return {k: (v if v is None or isinstance(v, (bool, int, float, str, list, tuple)) else str(v))
            for k, v in vars(args).items()}


def format_duration(seconds: float) -> str:
    """``'2 min 05 s'`` / ``'1 h 02 min'`` / ``'42.0 s'``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _agree(decision):
    """Rank 0's ``decision`` on every rank (a no-op without a process group)."""
    if not dist_utils.is_dist_initialized():
        return decision
    box = [decision]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def fit(run: Run, start_epoch: int, epochs: int, train_one_epoch, checkpoint, evaluate=None,
        metric: str = "top1", resume_name: str = "checkpoint.pth.tar", best_name: str | None = None,
        snapshot_every: int = 0, snapshot_name: str | None = None, best: float | None = None, on_saved=None):
    """The epoch loop every method shares: ``train_one_epoch(epoch) -> dict`` of training scalars (``loss``, ``lr``
    …), ``evaluate(epoch) -> dict | None`` of eval scalars (``metric`` among them for best-checkpoint tracking),
    ``checkpoint(epoch_done, metrics, best) -> dict`` the method's checkpoint in its own layout (``None``, or a
    callback returning ``None`` for an epoch: no checkpoint then, like the originals' linear evaluations). Epochs are 0-based;
    the checkpoint holds ``epoch_done = epoch + 1``. A ``{epoch}`` in ``resume_name`` is the 0-based epoch (MoCo's
    ``checkpoint_{epoch:04d}.pth.tar``: one file per epoch); ``on_saved(path, is_best)`` follows each save (the path
    is None on ranks > 0). Returns ``(last eval metrics, best)``."""
    metrics = None
    for epoch in epoch_range(start_epoch, epochs):   # all of them; the last only under CL_SHORT_RUN=1
        train = train_one_epoch(epoch) or {}
        run.scalars({k: v for k, v in train.items() if v is not None}, prefix="train/")
        run.scalar("train/epoch", epoch + 1)
        metrics = evaluate(epoch) if evaluate is not None else None
        is_best = False
        if metrics:
            run.scalars(metrics, prefix="eval/")
            if metric in metrics:
                is_best = best is None or metrics[metric] > best
                best = metrics[metric] if is_best else best
        summary = " ".join(f"{k} {v:.4f}" for k, v in {**train, **(metrics or {})}.items()
                           if isinstance(v, (int, float)))
        run.info(f"epoch {epoch + 1}/{epochs}: {summary}")
        state = checkpoint(epoch + 1, metrics, best) if checkpoint is not None else None
        if state is not None:
            path = run.save(state, resume_name.format(epoch=epoch), is_best=is_best and best_name is not None,
                            best_name=best_name)
            if on_saved is not None:
                on_saved(path, is_best)
            if snapshot_every and snapshot_name and (epoch + 1) % snapshot_every == 0:
                run.save(state, snapshot_name.format(epoch=epoch + 1))
        dist_utils.barrier()
    return metrics, best
