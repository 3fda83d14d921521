"""``ci.warm``: a command run in a warm child behaves as ``python FILE.py`` in a fresh interpreter does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ci import warm

SCRIPT = textwrap.dedent('''
    import sys
    preloaded = "torch" in sys.modules   # only in a warm child
    import atexit, json, os, random
    import numpy, torch
    import helper_module   # from the script's own folder, as sys.path[0] of a fresh interpreter
    atexit.register(lambda: print("atexit ran", flush=True))
    print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "var": os.environ.get("WARM_TEST_VAR"),
                      "path0": sys.path[0], "helper": helper_module.VALUE, "main": __name__,
                      "torch_draw": torch.rand(1).item(), "threads": torch.get_num_threads()}))
    print("preloaded" if preloaded else "fresh", file=sys.stderr)
    print("to stderr", file=sys.stderr)
    mode = sys.argv[1]
    if mode == "raise":
        raise ValueError("boom")
    if mode == "sleep":
        import time
        time.sleep(60)
    sys.exit(int(mode))
''')


@pytest.fixture
def script(tmp_path):
    folder = tmp_path / "method"
    folder.mkdir()
    (folder / "entry.py").write_text(SCRIPT)
    (folder / "helper_module.py").write_text("VALUE = 42\n")
    return folder


def _both(folder, *args, timeout=60):
    env = {"PATH": "/usr/bin:/bin", "WARM_TEST_VAR": "x", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "entry.py", *args]
    fresh = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    warm_proc = warm.run(cmd, folder, env, timeout)
    return fresh, warm_proc


@pytest.mark.parametrize("mode, code", [("0", 0), ("3", 3)])
def test_same_as_a_fresh_interpreter(script, mode, code):
    fresh, warm_proc = _both(script, mode)
    for proc in (fresh, warm_proc):
        assert proc.returncode == code, proc.stderr
        assert proc.stdout.splitlines()[-1] == "atexit ran" and proc.stderr.endswith("to stderr\n")
    assert fresh.stderr.startswith("fresh") and warm_proc.stderr.startswith("preloaded")
    fresh_record, warm_record = (json.loads(p.stdout.splitlines()[0]) for p in (fresh, warm_proc))
    # torch seeds its default generator from the OS in every fresh interpreter; so does a warm child
    fresh_draw, warm_draw = fresh_record.pop("torch_draw"), warm_record.pop("torch_draw")
    assert warm_record == fresh_record
    again = json.loads(warm.run([sys.executable, "entry.py", mode], script, {"PATH": "/usr/bin:/bin"},
                                60).stdout.splitlines()[0])
    assert len({fresh_draw, warm_draw, again["torch_draw"]}) == 3


def test_uncaught_exception_is_a_traceback_and_status_1(script):
    fresh, warm_proc = _both(script, "raise")
    for proc in (fresh, warm_proc):
        assert proc.returncode == 1
        assert "Traceback" in proc.stderr and proc.stderr.rstrip().endswith("ValueError: boom")


def test_timeout_kills_the_child(script):
    with pytest.raises(subprocess.TimeoutExpired):
        warm.run([sys.executable, "entry.py", "sleep"], script, {"PATH": "/usr/bin:/bin"}, 3)
    proc = warm.run([sys.executable, "entry.py", "0"], script, {"PATH": "/usr/bin:/bin"}, 60)  # server still serves
    assert proc.returncode == 0


def test_shell_scripts_get_the_python_shim(script, monkeypatch):
    """``bash script.sh`` run through ``warm.run``: its ``python FILE.py`` (by PATH or ``$PYTHON``) is a warm
    child with the script's streams and exit status; ``python -c`` goes to the real interpreter."""
    (script / "run.sh").write_text('python entry.py 3; echo "status $?"\n"$PYTHON" entry.py 0\n'
                                   'python -c "import sys; print(\'torch\' in sys.modules)"\nexit 4\n')
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    proc = warm.run(["bash", "run.sh"], script, env, 120)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2] == "status 3" and lines[-1] == "False", proc.stdout
    assert proc.stderr.count("preloaded") == 2 and proc.stderr.count("to stderr") == 2, proc.stderr
    monkeypatch.setenv(warm.FRESH_INTERPRETER_ENV, "1")
    fresh = warm.run(["bash", "run.sh"], script, env, 120)
    assert fresh.returncode == 4 and fresh.stderr.count("fresh") == 2, fresh.stderr


SPAWNING = textwrap.dedent('''
    import sys
    import torch.multiprocessing as mp

    def worker(index, fail):
        print("worker", index, "preloaded" if "sklearn.datasets" in sys.modules else "fresh", flush=True)
        if fail and index == 1:
            sys.exit(3)

    if __name__ == "__main__":
        try:
            mp.spawn(worker, args=(sys.argv[1] == "fail",), nprocs=2)
        except mp.ProcessExitedException as e:
            print("exit code", e.exit_code)
            sys.exit(e.exit_code)
''')


@pytest.mark.parametrize("mode", ["ok", "fail"])
def test_spawn_workers_of_a_warm_child_are_warm(tmp_path, mode):
    """mp.spawn inside a warm child starts its workers through the shim: forked from the zygote as well, with the
    pipe multiprocessing hands its workers, and their exit status reaches mp.spawn."""
    (tmp_path / "spawning.py").write_text(SPAWNING)
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    proc = warm.run([sys.executable, "spawning.py", mode], tmp_path, env, 120)
    assert sorted(line for line in proc.stdout.splitlines() if line.startswith("worker")) == \
        ["worker 0 preloaded", "worker 1 preloaded"], proc.stdout + proc.stderr
    if mode == "ok":
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 3 and "exit code 3" in proc.stdout, proc.stdout + proc.stderr
