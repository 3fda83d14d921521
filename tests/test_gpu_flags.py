"""The originals' GPU-selecting flags (``--gpu``, ``--gpus``, ``--gpu-id``, ``--gpuid``, ``--gpu-ids``) on a machine
without CUDA: every entry point prints the same single notice line (``common.utils.gpus_available``) and runs on
the CPU. Each command is the smallest run of the method's smoke tests, run from the method folder. The flags the
originals' README commands carry (CACR's ``--gpus 0`` on small-scale training and linear evaluation, ``--gpus 0 1 …
7`` on large-scale training and lincls, ASCL's ``--gpuid 0``, MoCo-MCL's and its lincls' ``--gpu-ids 0,…,7``) are
checked, one notice each, on those very command lines by ``tests/test_original_commands.py``; here: the flags no
README line carries (PaCo's ``--gpu``, MCL's ``--gpu-id``, ASCL's ``--gpuid 1``) and a default that is not typed.

Speed: the commands run in one interpreter (``ci/entry_batch.py``: each entry file executed as ``__main__``
with its own argv, cwd, environment and captured file descriptors; a command that needs a checkpoint an earlier
one wrote finds it by glob), so torch is imported once. ``CL_GPU_FLAGS_ISOLATED=1`` runs every
command in its own ``python`` process instead (same assertions)."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from ci import warm
from ci.smoke import ROOT, scratch_dir, smoke_env
from common.utils import gpus_available, set_visible_gpus

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback needs a machine without CUDA")]

NOTICE = re.compile(r"^notice: (\S+) (.+) selects GPUs but CUDA is not available; running on the CPU$", re.M)


def assert_one_notice(result: dict, flag: str, ids: str) -> None:
    assert result["returncode"] == 0, result["stdout"][-1500:] + result["stderr"][-1500:]
    notices = NOTICE.findall(result["stdout"] + result["stderr"])
    assert notices == [(flag, ids)], result["stdout"][-1500:] + result["stderr"][-1500:]


def _commands(base: Path) -> list:
    """``(test, id, method, entry, argv, globs)``: each test's commands in order; ``{NAME}`` in ``argv`` is a file
    an earlier command wrote (``globs``, relative to the test's folder)."""
    return [
        ("paco", "train", "paco", "LT/paco_lt.py",
         ["--dataset", "digits", "-a", "resnet32", "--feat_dim", "64", "--epochs", "1", "-b", "32", "--moco-k", "64",
          "--moco-dim", "16", "--aug", "mocov2_mocov2", "--no-multiprocessing-distributed", "-j", "0", "--seed", "0",
          "--gpu", "0"], {}),
        ("ascl", "train", "ascl", "main.py",
         ["--dataset", "digits", "--arch", "resnet20_option_a", "--epochs", "1", "--eval_epochs", "1",
          "--iters_per_epoch", "2", "--batch-size", "16", "--mem_size", "32", "--workers", "0", "--knn_k", "10",
          "--no_progress", "--image_size", "16", "--gpuid", "1"], {}),
        ("mcl", "train", "mcl", "main_cifar.py",
         ["--dataset", "digits", "--arch", "resnet32", "--image-size", "16", "--epochs", "1", "--max-iters", "1",
          "--batch-size", "8", "--num-workers", "0", "--no-progress", "--gpu-id", "1"], {}),
        ("mcl_default", "train", "mcl", "main_cifar.py",
         ["--dataset", "digits", "--arch", "resnet32", "--image-size", "16", "--epochs", "1", "--max-iters", "1",
          "--batch-size", "8", "--num-workers", "0", "--no-progress"], {}),
    ]


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict:
    """``{test: {id: result, "dir": its runs folder}}`` of every command above, run in one batch."""
    with scratch_dir(request, tmp_path_factory, "gpu_flags") as base:
        yield _run_all(base)


def _run_all(base) -> dict:
    jobs = []
    for test, job_id, method, entry, argv, globs in _commands(base):
        folder = base / test
        folder.mkdir(exist_ok=True)
        env = smoke_env(folder)   # CL_RUNS_DIR / CL_ORIGINAL_OUTPUTS of the test's own folder
        jobs.append({"id": f"{test}:{job_id}", "cwd": str(ROOT / method), "entry": entry,
                     "argv": argv, "timeout": 300,
                     "env": {k: env[k] for k in ("CL_RUNS_DIR", "CL_ORIGINAL_OUTPUTS")},
                     "globs": {name: str(folder / pattern) for name, pattern in globs.items()}})
    (base / "jobs.json").write_text(json.dumps(jobs))
    isolated = ["--isolated"] if os.environ.get("CL_GPU_FLAGS_ISOLATED") == "1" else []
    env = smoke_env(base)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = warm.run([sys.executable, str(ROOT / "ci" / "entry_batch.py"), *isolated, str(base / "jobs.json"),
                     str(base / "results.json")], ROOT, env, 1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((base / "results.json").read_text())
    out = {}
    for job in jobs:
        test, job_id = job["id"].split(":")
        out.setdefault(test, {"dir": base / test})[job_id] = results[job["id"]]
    return out


def test_helper(capsys, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(sys, "argv", ["main.py", "--gpus", "0", "1", "--gpu-id=3"])
    assert gpus_available("--gpus", None) is False and capsys.readouterr().err == ""
    assert gpus_available("--gpuid", 0) is False and capsys.readouterr().err == ""   # a default, not typed
    assert set_visible_gpus("--gpus", [0, 1]) is False
    import os
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert capsys.readouterr().err == ("notice: --gpus 0 1 selects GPUs but CUDA is not available; running on the "
                                       "CPU\n")
    assert set_visible_gpus("--gpu-id", "3", keep_existing=True) is False
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_paco_gpu(runs):
    assert_one_notice(runs["paco"]["train"], "--gpu", "0")


def test_ascl_gpuid(runs):
    assert_one_notice(runs["ascl"]["train"], "--gpuid", "1")


def test_mcl_gpu_id(runs):
    assert_one_notice(runs["mcl"]["train"], "--gpu-id", "1")


def test_default_gpu_id_is_no_notice(runs):
    """MCL's --gpu-id defaults to 0 (ASCL's --gpuid too): a CPU run that does not type it gets no notice."""
    result = runs["mcl_default"]["train"]
    assert result["returncode"] == 0, result["stderr"][-2000:]
    assert not NOTICE.findall(result["stdout"] + result["stderr"]), result["stderr"][-1500:]
