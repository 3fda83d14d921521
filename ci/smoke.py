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

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def smoke_env(runs_dir: str | os.PathLike | None = None, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # 2-core CI: keep each run from oversubscribing
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if runs_dir is not None:
        env["CL_RUNS_DIR"] = str(runs_dir)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(method: str, script: str, *args: str, env: dict | None = None,
               runs_dir: str | os.PathLike | None = None, timeout: float = 600,
               expect_failure: bool = False) -> subprocess.CompletedProcess:
    """Run ``bash <script> <args>`` inside ``<repo>/<method>`` and return the completed process.

    ``expect_failure=True`` asserts a non-zero exit instead (for bad-input tests).
    """
    cwd = ROOT / method
    if not (cwd / script).is_file():
        raise FileNotFoundError(f"{method}/{script} does not exist")
    cmd = ["bash", script, *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, env=smoke_env(runs_dir, env), capture_output=True, text=True,
                          timeout=timeout)
    if expect_failure:
        assert proc.returncode != 0, f"{method}/{script} {' '.join(args)} succeeded but should have failed"
    elif proc.returncode != 0:
        tail = "\n".join((proc.stdout + "\n" + proc.stderr).splitlines()[-40:])
        raise AssertionError(f"{method}/{script} {' '.join(map(str, args))} exited {proc.returncode}:\n{tail}")
    return proc


def run_python(method: str, entry: str, *args: str, env: dict | None = None,
               runs_dir: str | os.PathLike | None = None, timeout: float = 600,
               expect_failure: bool = False) -> subprocess.CompletedProcess:
    """Run ``python <entry> <args>`` inside ``<repo>/<method>`` (same contract as :func:`run_script`)."""
    cwd = ROOT / method
    cmd = [sys.executable, entry, *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, env=smoke_env(runs_dir, env), capture_output=True, text=True,
                          timeout=timeout)
    if expect_failure:
        assert proc.returncode != 0, f"{method}/{entry} {' '.join(args)} succeeded but should have failed"
    elif proc.returncode != 0:
        tail = "\n".join((proc.stdout + "\n" + proc.stderr).splitlines()[-40:])
        raise AssertionError(f"{method}/{entry} {' '.join(map(str, args))} exited {proc.returncode}:\n{tail}")
    return proc


def golden_dir() -> Path:
    """Where the shared golden fixtures live: ``$GOLDEN_DIR`` or ``<repo>/../shared/golden``."""
    return Path(os.environ.get("GOLDEN_DIR", ROOT.parent / "shared" / "golden"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python ci/smoke.py METHOD SCRIPT [-- ARGS...]")
    method, script, *rest = sys.argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    out = run_script(method, script, *rest)
    print(out.stdout)


def run_golden(method: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``ci/golden.py --method <method>`` on every ``.pt`` fixture of ``golden_dir()/<method>`` and assert
    that all of them pass (the closing line must be ``N passed, 0 failed`` with N = the number of files)."""
    files = sorted(str(p) for p in (golden_dir() / method).glob("*.pt"))
    assert files, f"no .pt fixtures in {golden_dir() / method}"
    proc = subprocess.run([sys.executable, str(ROOT / "ci" / "golden.py"), "--method", method, *files],
                          cwd=ROOT, env=smoke_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"{len(files)} passed, 0 failed", proc.stdout
    return proc
