"""Run directories and logging (tensorboardX scalars + a plain-text ``log.txt``), rank 0 only."""
from __future__ import annotations

import datetime
import os
import sys


def runs_root(root: str | None = None) -> str:
    """The folder that holds ``<method>/<name>/``: ``<root>/runs`` when ``root`` is given, else ``$CL_RUNS_DIR``
    itself, else ``./runs`` under the working directory."""
    if root:
        return os.path.abspath(os.path.join(root, "runs"))
    if os.environ.get("CL_RUNS_DIR"):
        return os.path.abspath(os.environ["CL_RUNS_DIR"])
    return os.path.abspath("runs")


def make_run_dir(method: str, name: str, root: str | None = None, create: bool = True) -> str:
    """``<runs_root(root)>/<method>/<name>/``, created with parents (unless ``create=False``)."""
    path = os.path.join(runs_root(root), method, name)
    if create:
        os.makedirs(path, exist_ok=True)
    return path


class RunLogger:
    """Scalars to tensorboardX event files and messages to stdout + ``<run_dir>/log.txt``.

    Disabled (every call a no-op, ``info`` prints nothing) when ``enabled`` is False and always on
    non-zero ranks (create it after ``init_distributed``). The SummaryWriter is created lazily on the
    first scalar, so a run that only prints does not leave an empty events file.
    """

    def __init__(self, run_dir: str, enabled: bool = True, log_name: str = "log.txt"):
        from common.distributed import is_main_process
        self.run_dir = run_dir
        self.enabled = bool(enabled) and is_main_process()
        self.log_path = os.path.join(run_dir, log_name)
        self._writer = None
        if enabled:
            os.makedirs(run_dir, exist_ok=True)

    @property
    def writer(self):
        if self._writer is None and self.enabled:
            from tensorboardX import SummaryWriter
            self._writer = SummaryWriter(logdir=self.run_dir)
        return self._writer

    def scalar(self, tag: str, value, step: int) -> None:
        if not self.enabled:
            return
        if hasattr(value, "item"):
            value = value.item()
        self.writer.add_scalar(tag, float(value), int(step))

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        for tag, value in values.items():
            self.scalar(prefix + tag, value, step)

    def info(self, msg: str = "", file=None) -> None:
        """Print ``msg`` and append it (time-stamped) to ``log.txt``."""
        if not self.enabled:
            return
        print(msg, file=file or sys.stdout, flush=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "a") as f:
            for line in str(msg).splitlines() or [""]:
                f.write(f"[{stamp}] {line}\n")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
