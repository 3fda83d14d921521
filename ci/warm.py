"""Warm interpreters for the smoke tests: ``python <entry> <argv>`` without paying for the imports every time.

A fresh ``python entry.py`` spends ~3 s importing torch, torchvision, scikit-learn and tensorboardX before the
entry point's first own line, and a smoke run on digits then trains for a second or two. So ``ci.smoke`` starts
such commands through one *zygote*: a server process that imported those third-party modules once (``WARM_MODULES``;
none of them has run a torch operation, so no thread pool exists) and forks one child per command. The child is a
process of its own (pid, environment, working directory, ``sys.argv``, ``sys.path``, file descriptors 1 and 2,
exit status) that imports this project's code fresh and runs the entry file as ``__main__``, then
exits as the interpreter would: ``SystemExit`` → its code, an uncaught exception → its traceback and status 1,
non-daemon threads joined and ``atexit`` handlers run first. What it shares with the zygote is only the already
imported third-party modules.

Not warm: ``python -m ...`` (torchrun), shell scripts, and the tests that kill or time processes themselves; and
everything when ``CL_TEST_FRESH_INTERPRETER=1`` (same assertions, one real interpreter per command: use it to
check that the two agree).

Protocol (one command at a time, JSON lines over the server's stdin / stdout): the client writes
``{"entry", "argv", "cwd", "env", "stdout", "stderr"}`` (two file paths for the child's output); the server
answers ``{"pid": ...}`` at once and ``{"returncode": ...}`` when the child has exited (negative: killed by that
signal, as ``subprocess`` reports it).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys

FRESH_INTERPRETER_ENV = "CL_TEST_FRESH_INTERPRETER"
WARM_MODULES = ("numpy", "PIL.Image", "torch", "torchvision", "sklearn.datasets", "sklearn.model_selection",
                "tensorboardX", "tqdm")


def _interpreter_base_path() -> list[str]:
    """The zygote's ``sys.path`` less ``-c``'s '' and ``$PYTHONPATH``: the standard-library and site-packages
    entries every interpreter starts with (a child puts its script folder and its own ``$PYTHONPATH`` first)."""
    own = set(os.environ.get("PYTHONPATH", "").split(os.pathsep))
    return [p for p in sys.path[1:] if p and p not in own]


def _child(request: dict, base_path: list[str]) -> int:
    """In the forked child: become ``python <entry> <argv>`` and return its exit status."""
    import atexit
    import threading
    import traceback
    import types
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    entry = os.path.abspath(os.path.join(request["cwd"], request["entry"]))
    pythonpath = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.path.dirname(entry), *pythonpath, *base_path]
    sys.argv = [request["entry"], *request["argv"]]       # as typed; __file__ absolute, as Python >= 3.9 sets them
    main = types.ModuleType("__main__")
    main.__file__ = entry
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main                        # what pickling (mp.spawn's main_worker) looks up
    import random
    import numpy
    import torch
    # a fresh interpreter seeds these three from the OS; a forked child would repeat the zygote's draws
    random.seed()
    numpy.random.seed()
    torch.seed()
    torch.set_num_threads(int(request["env"].get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    code = 0
    try:
        with open(entry, "rb") as f:
            code_object = compile(f.read(), entry, "exec")
        exec(code_object, main.__dict__)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        traceback.print_exc()
        code = code or 1
    return code


def serve() -> None:
    """The zygote: import ``WARM_MODULES``, then fork one child per request line until stdin closes."""
    import importlib
    for name in WARM_MODULES:
        importlib.import_module(name)
    base_path = _interpreter_base_path()
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request, base_path)
            finally:
                os._exit(code)
        replies.write(json.dumps({"pid": pid}).encode() + b"\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
        replies.flush()


class Zygote:
    """Client side: one server process per test session, started on first use."""

    def __init__(self):
        self.process = None

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["OMP_NUM_THREADS"] = "1"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.process = subprocess.Popen([sys.executable, "-c", "import ci.warm; ci.warm.serve()"], cwd=root,
                                        env={**env, "PYTHONPATH": root}, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)

    def _reply(self, timeout: float | None) -> dict | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm-interpreter server exited ({self.process.poll()})")
        return json.loads(line)

    def run(self, entry: str, argv: list, cwd: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
        """``python <entry> <argv>`` in ``cwd`` with ``env``, like ``subprocess.run(capture_output=True,
        text=True, timeout=timeout)``."""
        import tempfile
        if self.process is None or self.process.poll() is not None:
            self._start()
        with tempfile.TemporaryDirectory(prefix="warm_") as capture:
            out, err = os.path.join(capture, "stdout"), os.path.join(capture, "stderr")
            request = {"entry": entry, "argv": [str(a) for a in argv], "cwd": str(cwd), "env": dict(env),
                       "stdout": out, "stderr": err}
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            pid = self._reply(None)["pid"]
            reply = self._reply(timeout)
            if reply is None:
                os.kill(pid, signal.SIGKILL)
                self._reply(None)
                raise subprocess.TimeoutExpired([sys.executable, entry, *argv], timeout)
            texts = []
            for path in (out, err):
                with open(path, encoding="utf-8", errors="replace") as f:
                    texts.append(f.read())
        return subprocess.CompletedProcess([sys.executable, entry, *argv], reply["returncode"], *texts)


_zygote = Zygote()


def run(cmd: list, cwd, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)``; a command
    ``[sys.executable, FILE.py, *args]`` runs in a warm child unless ``CL_TEST_FRESH_INTERPRETER`` is set."""
    cmd = [str(c) for c in cmd]
    if len(cmd) > 1 and cmd[0] == sys.executable and cmd[1].endswith(".py") and not os.environ.get(
            FRESH_INTERPRETER_ENV):
        return _zygote.run(cmd[1], cmd[2:], str(cwd), env, timeout)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
