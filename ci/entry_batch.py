"""Run many short entry-point invocations in one Python process, each as ``python <entry> <argv>`` would run.

    python ci/entry_batch.py JOBS.json RESULTS.json            # one interpreter for every job
    python ci/entry_batch.py --isolated JOBS.json RESULTS.json # one subprocess per job (for auditing)

Each job of ``JOBS.json`` is ``{"id", "cwd", "entry", "argv", "env", "timeout", "watch", "globs"}``
(all but ``id``, ``cwd``, ``entry`` and ``argv`` optional); ``RESULTS.json`` receives ``{id: {"returncode",
"stdout", "stderr", "seconds", "before", "after"}}``, rewritten after every job so a crash of the batch keeps
the finished ones. ``watch``: a directory whose files are listed with size, mtime and SHA-1 right before and
after the job (``before`` / ``after``, relative paths), which is how a caller sees what one job of a batch wrote.
``globs``: ``{"NAME": "/abs/pattern"}`` (``**`` matches any depth); ``{NAME}`` in ``argv`` becomes the newest match at the job's start
(a file an earlier job of the batch wrote, e.g. the checkpoint to resume).

Why: a bad-input test spends ~3 s importing torch per subprocess and well under a second in the entry point
itself, so a table of a hundred failing invocations would cost minutes. Here the import is paid once per
batch. What a job sees is what a fresh ``python <entry>`` sees: the entry file is executed as ``__main__``
(``runpy.run_path``) with ``sys.argv``, ``sys.path[0]``, the working directory and ``os.environ`` set for it
and restored afterwards, torch's RNG reset to a fresh interpreter's state, file descriptors 1 and 2 redirected
to the job's own files (so spawned processes and C-level writes are captured too), and its exit status
derived as the interpreter does: ``SystemExit`` → its code, any other uncaught exception → the traceback on
stderr and status 1. What is shared: already imported modules (their code is the same; module-level caches
persist) and process-wide settings an earlier job changed. ``--isolated`` runs every job in its own
interpreter with the same result format, so a table can be checked for cross-job leaks by running it both ways.
Jobs that spawn or fork worker processes belong in ``--isolated`` runs (or their own subprocess).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


class JobTimeout(BaseException):
    """Raised by SIGALRM inside a job that runs past its ``timeout``."""


def _on_alarm(signum, frame):
    raise JobTimeout()


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def snapshot(directory: str | None) -> dict:
    """``{relative path: [size, mtime_ns, sha1]}`` of every file under ``directory`` (symlinks not followed)."""
    files = {}
    if not directory:
        return files
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            st = os.stat(path)
            with open(path, "rb") as f:
                digest = hashlib.sha1(f.read()).hexdigest()
            files[os.path.relpath(path, directory)] = [st.st_size, st.st_mtime_ns, digest]
    return files


def resolve_argv(job: dict) -> list:
    argv = [str(a) for a in job["argv"]]
    for name, pattern in (job.get("globs") or {}).items():
        matches = sorted(glob.glob(pattern, recursive=True), key=os.path.getmtime)
        if matches:
            argv = [a.replace("{" + name + "}", matches[-1]) for a in argv]
    return argv


def run_in_process(job: dict, fresh_torch_rng) -> dict:
    import runpy
    import traceback

    import torch

    cwd = os.path.abspath(job["cwd"])
    entry = os.path.join(cwd, job["entry"])
    saved = dict(cwd=os.getcwd(), argv=list(sys.argv), path=list(sys.path), environ=dict(os.environ))
    out_fd, err_fd = os.dup(1), os.dup(2)
    with tempfile.TemporaryDirectory(prefix="entry_batch_") as capture:
        out_path, err_path = os.path.join(capture, "stdout"), os.path.join(capture, "stderr")
        sys.stdout.flush()
        sys.stderr.flush()
        out_file, err_file = open(out_path, "wb"), open(err_path, "wb")
        os.dup2(out_file.fileno(), 1)
        os.dup2(err_file.fileno(), 2)
        start = time.time()
        returncode = 0
        try:
            os.chdir(cwd)
            os.environ.update({k: str(v) for k, v in (job.get("env") or {}).items()})
            sys.argv = [entry, *resolve_argv(job)]
            sys.path[0] = os.path.dirname(entry)
            torch.set_rng_state(fresh_torch_rng)
            signal.alarm(int(job.get("timeout", 300)))
            try:
                runpy.run_path(entry, run_name="__main__")
            except SystemExit as e:
                if e.code is None:
                    returncode = 0
                elif isinstance(e.code, int):
                    returncode = e.code
                else:
                    print(e.code, file=sys.stderr)
                    returncode = 1
            except JobTimeout:
                print(f"entry_batch: job timed out after {job.get('timeout', 300)} s", file=sys.stderr)
                returncode = -signal.SIGALRM
            except BaseException:  # what the interpreter would print for an uncaught exception
                traceback.print_exc()
                returncode = 1
            finally:
                signal.alarm(0)
        finally:
            seconds = time.time() - start
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            os.close(out_fd)
            os.close(err_fd)
            out_file.close()
            err_file.close()
            os.chdir(saved["cwd"])
            sys.argv, sys.path[:] = saved["argv"], saved["path"]
            os.environ.clear()
            os.environ.update(saved["environ"])
        return {"returncode": returncode, "stdout": _read(out_path), "stderr": _read(err_path), "seconds": seconds}


def run_isolated(job: dict) -> dict:
    start = time.time()
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (job.get("env") or {}).items()})
    try:
        proc = subprocess.run([sys.executable, job["entry"], *resolve_argv(job)], cwd=job["cwd"], env=env,
                              capture_output=True, text=True, timeout=job.get("timeout", 300))
        result = {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
    except subprocess.TimeoutExpired as e:
        result = {"returncode": -signal.SIGALRM, "stdout": str(e.stdout or ""),
                  "stderr": f"entry_batch: job timed out after {job.get('timeout', 300)} s"}
    result["seconds"] = time.time() - start
    return result


def main(argv=None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    isolated = "--isolated" in args
    args = [a for a in args if a != "--isolated"]
    if len(args) != 2:
        sys.exit("usage: python ci/entry_batch.py [--isolated] JOBS.json RESULTS.json")
    with open(args[0]) as f:
        jobs = json.load(f)
    results = {}
    fresh_torch_rng = None
    if not isolated:
        import torch
        fresh_torch_rng = torch.get_rng_state()
        signal.signal(signal.SIGALRM, _on_alarm)
    for job in jobs:
        before = snapshot(job.get("watch"))
        results[job["id"]] = run_isolated(job) if isolated else run_in_process(job, fresh_torch_rng)
        results[job["id"]].update(before=before, after=snapshot(job.get("watch")))
        tmp = args[1] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f)
        os.replace(tmp, args[1])


if __name__ == "__main__":
    main()
