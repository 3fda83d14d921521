"""Run the entry points as subprocesses inside ``mcl/`` (runs written under a temporary ``CL_RUNS_DIR``)."""
import os
import socket
import sys
from pathlib import Path

from ci import warm

MCL_DIR = Path(__file__).resolve().parents[1]
REPO = MCL_DIR.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(runs_dir, extra=None):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHON"] = sys.executable
    env["CL_RUNS_DIR"] = str(runs_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def run(cmd, runs_dir, env=None, expect_ok=True, timeout=300):
    proc = warm.run(cmd, MCL_DIR, env_for(runs_dir, env), timeout)  # python FILE.py: see ci/warm.py
    out = proc.stdout + proc.stderr
    if expect_ok:
        assert proc.returncode == 0, "\n".join(out.splitlines()[-40:])
    else:
        assert proc.returncode != 0, "\n".join(out.splitlines()[-40:])
    return proc, out


def python(script, *args):
    return [sys.executable, script, *args]


