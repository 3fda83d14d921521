"""What a run folder says can be trusted: each method's main training entry point, end to end (``common.engine``).

One chain of commands per method on tiny CIFAR-100 files (``ci.entry_points``), 2 epochs of 2-3 steps:

1. a run killed one step into epoch 2 (its epoch-1 checkpoint is the resume checkpoint);
2. a second process while a live run holds the folder's lock → refused at once, naming the holder;
3. the resume checkpoint truncated → refused naming the file, the file left as it was;
4. the good file back, the same command with other workers → resumes at epoch 1 and finishes;
5. the identical command again → ``run complete`` with the final metric, exit 0, nothing trained;
6. another learning rate under the same explicit name → refused, listing the flag and the ways out, record unchanged;
7. another learning rate with the default name → a new folder that trains with it; with a full disk at its
   second checkpoint write → one ``error:`` line and the first checkpoint kept; rerun → finishes from there;
8. every file of every run folder loads with ``torch.load(path, weights_only=True)`` and holds finite tensors only.

Plus a read-only output folder (a read-only tmpfs in a private mount namespace; skipped where ``unshare`` is not
permitted) → one ``error:`` line before any training, and PaCo's error path under its default launch (mp.spawn).
"""
from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ci import warm
from ci.entry_points import METHODS
from ci.smoke import ROOT, smoke_env
from common.faults import FAULT_ENV

EPOCHS = 2
KILLED = -9


@pytest.fixture(scope="module")
def cifar100_root(tmp_path_factory) -> str:
    from common.data.fake import write_cifar100
    return write_cifar100(tmp_path_factory.mktemp("cifar100"), n_train=200, n_test=64)


def _command(method, data, *extra):
    flags = [flag.format(data=data) for flag in method.flags]
    return [sys.executable, method.entry, *flags, "--epochs", str(EPOCHS), *extra]


def _run(method, runs: Path, data: str, *extra, fault: str | None = None, prefix=()):
    env = smoke_env(runs, {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return warm.run([*prefix, *_command(method, data, *extra)], ROOT / method.folder, env, 300)


def _show(proc) -> str:
    return f"exit {proc.returncode}\n" + "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])


def _assert_one_error_line(proc, *needles) -> str:
    assert proc.returncode == 2, _show(proc)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, _show(proc)
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _run_folders(runs: Path) -> set:
    return {p.parent for p in runs.rglob("run.json")}


def _tensor_files(folder: Path):
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
            and (".pth" in p.name or p.suffix in (".pt", ".tar"))]


def _assert_files_trustworthy(folder: Path) -> None:
    files = _tensor_files(folder)
    assert files, f"no checkpoint in {folder}"
    for path in files:
        state = torch.load(path, weights_only=True, map_location="cpu")   # no pickled objects inside

        def walk(obj, where):
            if torch.is_tensor(obj):
                assert not obj.is_floating_point() or bool(torch.isfinite(obj).all()), f"{path}: {where}"
            elif isinstance(obj, dict):
                for k, v in obj.items():
                    walk(v, f"{where}.{k}")
            elif isinstance(obj, (list, tuple)):
                for i, v in enumerate(obj):
                    walk(v, f"{where}[{i}]")
        walk(state, path.name)


@pytest.mark.parametrize("method_name", list(METHODS))
def test_run_folder_can_be_trusted(method_name, tmp_path, cifar100_root):
    method = METHODS[method_name]
    runs, name = tmp_path / "runs", "chain"
    lr, other_lr = method.lr_values
    named = (method.name_flag, name, method.lr_flag, lr)

    # 1. killed one step into epoch 2
    proc = _run(method, runs, cifar100_root, *named, fault=f"kill_after_steps={method.steps_per_epoch + 1}")
    assert proc.returncode == KILLED, _show(proc)
    (folder,) = _run_folders(runs)
    resume_file = folder / method.checkpoint
    good = resume_file.read_bytes()

    # 2. a live run holds the folder
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.seek(0)
        lock.truncate()
        lock.write("pid 4242 on testhost")
        lock.flush()
        proc = _run(method, runs, cifar100_root, *named)
        _assert_one_error_line(proc, "in use by a live run", "pid 4242")
    assert resume_file.read_bytes() == good

    # 3. a truncated resume checkpoint is never silently replaced
    resume_file.write_bytes(good[: len(good) // 2])
    proc = _run(method, runs, cifar100_root, *named)
    _assert_one_error_line(proc, method.checkpoint)
    assert resume_file.read_bytes() == good[: len(good) // 2]

    # 4. the good file back; a flag that cannot change the result does not block the resume
    resume_file.write_bytes(good)
    proc = _run(method, runs, cifar100_root, *named)
    assert proc.returncode == 0, _show(proc)
    final = [line for line in proc.stdout.splitlines() if line.startswith("final ")]
    assert final, _show(proc)
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "complete"

    # 5. the identical command over the finished run reports it and trains nothing
    written = {p: p.stat().st_mtime_ns for p in _tensor_files(folder)}
    proc = _run(method, runs, cifar100_root, *named)
    assert proc.returncode == 0, _show(proc)
    value = final[-1].split(":")[-1].strip()
    assert "run complete" in proc.stdout and f"{float(value):.2f}" in proc.stdout, _show(proc)
    assert {p: p.stat().st_mtime_ns for p in _tensor_files(folder)} == written

    # 6. another learning rate under the same explicit name is refused; the record stays as it was
    proc = _run(method, runs, cifar100_root, method.name_flag, name, method.lr_flag, other_lr)
    _assert_one_error_line(proc, method.lr_flag.lstrip("-").replace("-", "_"), method.name_flag)
    assert json.loads((folder / "run.json").read_text()) == record

    # 7. ... and with the default name it is a run of its own, which trains with it; a full disk at its second
    #    checkpoint write is one error line and keeps the first checkpoint
    proc = _run(method, runs, cifar100_root, method.lr_flag, other_lr, fault="disk_full_in_save=2")
    _assert_one_error_line(proc, "No space left on device", "kept")
    (new_folder,) = _run_folders(runs) - {folder}
    assert new_folder != folder
    flags = json.loads((new_folder / "run.json").read_text())["flags"]
    assert str(flags[method.lr_flag.lstrip("-").replace("-", "_")]) in (other_lr, str(float(other_lr)))
    proc = _run(method, runs, cifar100_root, method.lr_flag, other_lr)
    assert proc.returncode == 0 and "final " in proc.stdout, _show(proc)

    # 8. every file loads without unpickling objects and holds finite tensors only
    for f in (folder, new_folder):
        _assert_files_trustworthy(f)


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro,size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -m` (a private mount namespace) to mount a "
                                                 "read-only folder; the in-process write-error tests cover the rest")
@pytest.mark.parametrize("method_name", list(METHODS))
def test_read_only_output_folder_is_one_error_before_training(method_name, tmp_path, cifar100_root):
    method = METHODS[method_name]
    runs = tmp_path / "ro"
    runs.mkdir()
    script = (f"mount -t tmpfs -o ro,size=64k tmpfs {runs} && exec \"$@\"")
    proc = _run(method, runs, cifar100_root, method.name_flag, "ro",
                prefix=("unshare", "-m", "sh", "-c", script, "sh"))
    line = _assert_one_error_line(proc)
    assert "Read-only file system" in line, line
    # refused before the first epoch: no training step was logged, no initial evaluation ran
    assert not re.search(r"(?i)epoch\s*[\[:]?\s*\d|^initial ", proc.stdout, re.M), _show(proc)


def test_paco_error_path_under_its_default_launch(tmp_path, cifar100_root):
    """PaCo launches with mp.spawn by default: a refusal there is one error line, no thread traceback."""
    method = METHODS["paco"]
    runs = tmp_path / "runs"
    flags = [f for f in _command(method, cifar100_root, method.name_flag, "x")
             if f != "--no-multiprocessing-distributed"]
    env = smoke_env(runs, {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.pop(FAULT_ENV, None)
    first = warm.run(flags, ROOT / method.folder, env, 300)
    assert first.returncode == 0, _show(first)
    (folder,) = _run_folders(runs)
    (folder / method.checkpoint).write_bytes(b"\x00" * 100)
    (folder / "run.json").unlink()
    proc = warm.run(flags, ROOT / method.folder, env, 300)
    _assert_one_error_line(proc, method.checkpoint)
    assert "handle is closed" not in proc.stderr and "Exception in thread" not in proc.stderr, proc.stderr
