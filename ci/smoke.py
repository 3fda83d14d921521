"""Run a method's shell scripts end to end, as a user would, for the smoke tests.

    from ci.smoke import run_script
    result = run_script("paco", "sh/train.sh", "--epochs", "1", env={"DATA": str(tmp)}, runs_dir=tmp)

The script runs in the method folder with ``bash``; extra arguments are forwarded (every ``sh/*.sh`` passes
``"$@"`` on to its entry point, so flags override the script's defaults).  Runs are written under
``runs_dir`` (``$CL_RUNS_DIR``) so nothing lands in the source tree.  A non-zero exit raises
``AssertionError`` carrying the tail of the output, which is what a failing smoke test should show.

Also a command line: ``python ci/smoke.py paco sh/train.sh -- --epochs 1``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ci import warm

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def scratch_dir(request, tmp_path_factory, name: str):
    """A ``tmp_path_factory`` folder for a module- or session-scoped fixture, deleted when the fixture ends unless
    a test failed meanwhile (then kept to be read, as pytest's ``tmp_path_retention_policy = "failed"`` keeps a
    failed test's ``tmp_path``). The original commands' runs write ResNet-50..200 checkpoints of 0.4-0.8 GB
    each: kept to the session's end, the suite would hold ~20 GB of disk at once."""
    path = tmp_path_factory.mktemp(name)
    failed = request.session.testsfailed
    yield path
    if request.session.testsfailed == failed:
        shutil.rmtree(path, ignore_errors=True)


def smoke_env(runs_dir: str | os.PathLike | None = None, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # 2-core CI: keep each run from oversubscribing
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if runs_dir is not None:
        env["CL_RUNS_DIR"] = str(runs_dir)
        # the originals' own output folders (results/, checkpoint/ ...) go beside the runs, not into the source tree
        env["CL_ORIGINAL_OUTPUTS"] = str(Path(runs_dir) / "original_outputs")
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


# --augment batched (common.augment.on_device) with both GPU-speed switches (bfloat16 autocast on CPU): every method's
# digits smoke test trains with them, so each entry point's batched, AMP and channels_last paths run at no extra cost
FAST_PATH_FLAGS = ("--augment", "batched", "--amp", "--channels-last")


def assert_fast_path_args(checkpoint: str | os.PathLike, amp_key: str = "amp") -> None:
    """The training checkpoint ``checkpoint`` records a run with ``FAST_PATH_FLAGS``."""
    import torch
    args = torch.load(checkpoint, map_location="cpu", weights_only=False)["args"]
    assert (args["augment"], args[amp_key], args["channels_last"]) == ("batched", True, True), args


def run_script(method: str, script: str, *args: str, env: dict | None = None,
               runs_dir: str | os.PathLike | None = None, timeout: float = 600,
               expect_failure: bool = False) -> subprocess.CompletedProcess:
    """Run ``bash <script> <args>`` inside ``<repo>/<method>`` and return the completed process.

    ``expect_failure=True`` asserts a non-zero exit instead (for bad-input tests).
    """
    if not (ROOT / method / script).is_file():
        raise FileNotFoundError(f"{method}/{script} does not exist")
    return _run(method, ["bash", script, *args], env, runs_dir, timeout, expect_failure)


def run_python(method: str, entry: str, *args: str, env: dict | None = None,
               runs_dir: str | os.PathLike | None = None, timeout: float = 600,
               expect_failure: bool = False) -> subprocess.CompletedProcess:
    """Run ``python <entry> <args>`` inside ``<repo>/<method>`` (same contract as :func:`run_script`)."""
    return _run(method, [sys.executable, entry, *args], env, runs_dir, timeout, expect_failure)


def _run(method: str, cmd: list, env, runs_dir, timeout: float, expect_failure: bool) -> subprocess.CompletedProcess:
    """``cmd`` (interpreter, file, arguments) inside ``<repo>/<method>``; failures are named by ``method/file args``."""
    cmd = [str(c) for c in cmd]
    proc = warm.run(cmd, ROOT / method, smoke_env(runs_dir, env), timeout)  # python FILE.py: see ci/warm.py
    what = f"{method}/{' '.join(cmd[1:])}"
    if expect_failure:
        assert proc.returncode != 0, f"{what} succeeded but should have failed"
    elif proc.returncode != 0:
        tail = "\n".join((proc.stdout + "\n" + proc.stderr).splitlines()[-40:])
        raise AssertionError(f"{what} exited {proc.returncode}:\n{tail}")
    return proc


def spawn_flags(nproc: int = 2) -> list[str]:
    """The originals' single-node launch line (``mp.spawn``), with ``nproc`` CPU processes over gloo."""
    from common.distributed import find_free_port
    return ["--multiprocessing-distributed", "--world-size", "1", "--rank", "0", "--dist-url",
            f"tcp://127.0.0.1:{find_free_port()}", "--dist-backend", "gloo", "--nproc-per-node", str(nproc)]


def run_torchrun(method: str, entry: str, *args: str, nproc: int = 2, env: dict | None = None,
                 runs_dir: str | os.PathLike | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node <nproc> <entry> <args>`` inside ``<repo>/<method>``."""
    return run_python(method, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", entry,
                      *args, env=env, runs_dir=runs_dir, timeout=timeout)


def read_scalars(run_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from the tensorboardX event files under ``run_dir`` (what
    ``common.logger.RunLogger.scalar`` wrote), read without tensorboard: TFRecord framing (u64 length, u32
    crc, payload, u32 crc) around ``Event`` protos."""
    import struct
    from tensorboardX.proto.event_pb2 import Event
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def to_single_process_order(t, global_batch: int, world: int, filled: int, dim: int = -1):
    """Reorder the first ``filled`` entries along ``dim`` of a buffer written with all-gathered batches (a MoCo
    queue) from the W-process order to the 1-process order, one global batch at a time.

    With ``common.distributed.rank_split_sampler`` process r holds the samples r, r+W, … of each global batch,
    and ``concat_all_gather`` concatenates in rank order; so single-process position j·W + r is gathered
    position r·(B/W) + j. Entries past ``filled`` (never written) are returned unchanged."""
    import torch
    if filled % global_batch or global_batch % world:
        raise ValueError(f"filled ({filled}) must be a multiple of the global batch ({global_batch}), and the global "
                         f"batch a multiple of the {world} processes")
    t = t.movedim(dim, 0)
    per_rank = global_batch // world
    within = torch.arange(global_batch).view(world, per_rank).t().reshape(-1)   # 1-process j·W+r → r·(B/W)+j
    index = (torch.arange(0, filled, global_batch)[:, None] + within[None, :]).reshape(-1)
    return torch.cat([t[index], t[filled:]]).movedim(0, dim)


def assert_states_close(reference: dict, other: dict, rtol: float = 1e-4, atol: float = 1e-5,
                        skip: tuple[str, ...] = ()) -> int:
    """Every tensor of two state dicts is close (keys ending in one of ``skip`` are left out; integer tensors must
    be equal); the assertion names the first key that differs. Returns how many floating-point tensors were
    compared."""
    import torch
    assert reference.keys() == other.keys(), sorted(set(reference) ^ set(other))
    compared = 0
    for key in reference:
        if skip and key.endswith(skip):
            continue
        a, b = reference[key], other[key]
        if not torch.is_tensor(a):
            continue
        if a.is_floating_point():
            torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=lambda m, key=key: f"{key}: {m}")
            compared += 1
        else:
            assert torch.equal(a, b), f"{key}: {a} != {b}"
    return compared


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python ci/smoke.py METHOD SCRIPT [-- ARGS...]")
    method, script, *rest = sys.argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    out = run_script(method, script, *rest)
    print(out.stdout)


def run_golden(method: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``ci/golden.py --method <method>`` on every ``.pt`` fixture of ``common.golden.golden_dir()/<method>``
    (the in-repo ``tests/golden`` unless ``$GOLDEN_DIR`` is set) and assert that all of them pass (the closing line
    must be ``N passed, 0 failed`` with N = the number of files). A missing or empty fixture folder raises
    FileNotFoundError: it fails the calling test instead of skipping it."""
    from common.golden import golden_fixtures  # here, not at the top: the smoke helpers do not need torch
    files = [str(p) for p in golden_fixtures(method)]
    proc = warm.run([sys.executable, str(ROOT / "ci" / "golden.py"), "--method", method, *files], ROOT, smoke_env(),
                    timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"{len(files)} passed, 0 failed", proc.stdout
    return proc
