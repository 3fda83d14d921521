"""Shared fixtures: tiny datasets in the real formats (``common.data.fake``) and a subprocess runner."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from ci import warm

CACR_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, runs_dir, env=None, timeout=240, check=True):
    """Run ``cmd`` inside cacr/ with runs written under ``runs_dir``; returns the CompletedProcess."""
    full_env = dict(os.environ)
    # the originals' output paths (common.engine.publish) under the test's folder, not in the source tree
    full_env.update({"CL_RUNS_DIR": str(runs_dir), "CL_ORIGINAL_OUTPUTS": str(Path(runs_dir) / "original_outputs"),
                     "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    if isinstance(cmd[0], str) and cmd[0].endswith(".py"):
        cmd = [sys.executable, *cmd]
    proc = warm.run(cmd, CACR_DIR, full_env, timeout)  # python FILE.py: see ci/warm.py
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory):
    from common.data import fake
    root = tmp_path_factory.mktemp("cacr_data")
    paths = {}
    paths["cifar"] = fake.write_cifar10(root / "cifar", n_train=40, n_test=20)
    fake.write_cifar100(root / "cifar", n_train=40, n_test=20)
    paths["stl10"] = fake.write_stl10(root / "stl", n_train=20, n_test=10, n_unlabeled=20)
    paths["imagenet"] = fake.write_imagefolder(root / "imagenet", n_classes=3, n_per_class=6, size=40)
    paths["webvision"] = fake.write_webvision(root / "webvision", n_classes=3, n_google_per_class=3,
                                              n_flickr_per_class=3, size=40)
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cacr_runs")


@pytest.fixture(scope="session")
def cacr_run(runs_dir):
    """``cacr_run(cmd, env=None, check=True, runs=None)`` → CompletedProcess (cwd cacr/, runs under ``runs_dir``)."""
    def _run(cmd, env=None, check=True, runs=None, timeout=240):
        return run(cmd, runs or runs_dir, env=env, check=check, timeout=timeout)
    return _run


@pytest.fixture
def port():
    return free_port()
