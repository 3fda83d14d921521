"""Warm interpreters for the smoke tests: ``python <entry> <argv>`` without paying for the imports every time.

A fresh ``python entry.py`` spends ~3 s importing torch, torchvision, scikit-learn and tensorboardX before the
entry point's first own line, and a smoke run on digits then trains for a second or two. So the tests start such
commands through one *zygote*: a server process that imported those third-party modules once (``WARM_MODULES``;
none of them has run a torch operation, so no thread pool exists) and forks one child per command. The child is a
process of its own (pid, environment, working directory, ``sys.argv``, ``sys.path``, standard streams, exit
status) that imports this project's code fresh and runs the entry file as ``__main__``, then exits as the
interpreter would: ``SystemExit`` → its code, an uncaught exception → its traceback and status 1, non-daemon
threads joined and ``atexit`` handlers run first. It shares with the zygote only the already imported
third-party modules; the Python, NumPy and torch global generators are seeded from the OS as in a fresh
interpreter.

Two ways in:
* :func:`run` — ``subprocess.run``'s contract for ``[sys.executable, FILE.py, *args]`` (what ``ci.smoke`` and the
  tests' runners call);
* a shell script (``bash sh/train.sh``) run through :func:`run` finds a ``python`` / ``python3`` shim first on
  its ``PATH`` (and in ``$PYTHON``): a 20-line stdlib client that hands ``python FILE.py ...`` with its own
  standard streams to the zygote and exits with the child's status (a signal it receives is passed on to the
  child); anything else (``-m``, ``-c``, no file) it ``exec``s with the real interpreter.

* ``mp.spawn`` inside a warm child: ``multiprocessing.set_executable`` points at the shim, which hands the
  ``python -c "...spawn_main(tracker_fd=T, pipe_handle=P)" --multiprocessing-fork`` worker, with those two file
  descriptors, to the zygote as well; the worker then reads its pickled task from that pipe as usual.
* ``python -m common.<module> ...`` (``runpy.run_module``).

Not warm: torchrun (``python -m torch.distributed.run``: its agent and workers start real interpreters), other
``-m`` / ``-c`` commands, the tests that start processes themselves, and everything when
``CL_TEST_FRESH_INTERPRETER=1`` (same assertions, one real interpreter per command: use it to check the two agree).

Protocol (a Unix socket, one connection per command): the client sends a JSON line ``{"entry", "argv", "cwd",
"env"}`` with its stdin / stdout / stderr file descriptors attached (``SCM_RIGHTS``); the zygote answers
``{"pid": ...}`` at once and ``{"returncode": ...}`` when that child has exited (negative: killed by that signal,
as ``subprocess`` reports it). Commands may overlap; the zygote exits with the process that started it.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile

FRESH_INTERPRETER_ENV = "CL_TEST_FRESH_INTERPRETER"
SOCKET_ENV = "CL_WARM_SOCKET"
SHIM_ENV = "CL_WARM_PYTHON"
WARM_MODULES = ("numpy", "PIL.Image", "torch", "torchvision", "sklearn.datasets", "sklearn.model_selection",
                "tensorboardX", "tqdm")

# the shim that shell scripts find as `python`: stdlib only, started with -SE (no site, no PYTHON* variables)
SHIM = '''#!{python} -SE
import json, os, signal, socket, sys
REAL, args = {python!r}, sys.argv[1:]
path = os.environ.get({socket_env!r})
fds = [0, 1, 2]
while args[:1] in (["-B"], ["-s"], ["-E"]):   # multiprocessing's interpreter flags before -c
    args = args[1:]
if path and args[:1] == ["-c"] and "spawn_main(" in args[1]:   # a multiprocessing 'spawn' worker
    import re
    fds += [int(n) for n in re.findall(r"(?:tracker_fd|pipe_handle)=(\\d+)", args[1])]
    request = {{"code": args[1], "argv": args[2:], "fds": fds}}
elif path and args and args[0].endswith(".py"):
    request = {{"entry": args[0], "argv": args[1:]}}
else:
    os.execv(REAL, [REAL, *sys.argv[1:]])
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(path)
request.update(cwd=os.getcwd(), env=dict(os.environ))
socket.send_fds(conn, [json.dumps(request).encode() + b"\\n"], fds)
replies = conn.makefile("rb")
pid = json.loads(replies.readline())["pid"]
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda s, f: os.kill(pid, s))
code = json.loads(replies.readline())["returncode"]
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
'''


def _interpreter_base_path() -> list[str]:
    """The zygote's ``sys.path`` less ``-c``'s '' and ``$PYTHONPATH``: the standard-library and site-packages
    entries every interpreter starts with (a child puts its script folder and its own ``$PYTHONPATH`` first)."""
    own = set(os.environ.get("PYTHONPATH", "").split(os.pathsep))
    return [p for p in sys.path[1:] if p and p not in own]


def _child(request: dict, fds: list[int], base_path: list[str]) -> int:
    """In the forked child: become ``python <entry> <argv>`` with the standard streams ``fds`` and return its exit
    status."""
    import atexit
    import random
    import threading
    import traceback
    import types

    import numpy
    import torch
    targets = request.get("fds") or list(range(len(fds)))
    for target, fd in zip(targets, fds):
        if fd != target:
            os.dup2(fd, target)
            os.close(fd)
        if target > 2:
            os.set_inheritable(target, True)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    pythonpath = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__
    if "module" in request:                               # python -m MODULE ARGS
        sys.path[:] = [request["cwd"], *pythonpath, *base_path]
        sys.argv = [request["module"], *request["argv"]]
        entry, source = "<string>", (f"import runpy; runpy.run_module({request['module']!r}, run_name='__main__', "
                                     "alter_sys=True)").encode()
    elif "code" in request:                               # python -c CODE ARGS (a multiprocessing spawn worker)
        sys.path[:] = ["", *pythonpath, *base_path]
        sys.argv = ["-c", *request["argv"]]
        entry, source = "<string>", request["code"].encode()
    else:
        entry = os.path.abspath(os.path.join(request["cwd"], request["entry"]))
        sys.path[:] = [os.path.dirname(entry), *pythonpath, *base_path]
        sys.argv = [request["entry"], *request["argv"]]   # as typed; __file__ absolute, as Python >= 3.9 sets them
        main.__file__ = entry
        with open(entry, "rb") as f:
            source = f.read()
    sys.modules["__main__"] = main                        # what pickling (mp.spawn's main_worker) looks up
    # a fresh interpreter seeds these three from the OS; a forked child would repeat the zygote's draws
    random.seed()
    numpy.random.seed()
    torch.seed()
    torch.set_num_threads(int(request["env"].get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    code = 0
    if request["env"].get(SHIM_ENV):   # this child's own mp.spawn workers start through the shim as well
        import multiprocessing
        multiprocessing.set_executable(request["env"][SHIM_ENV])
    try:
        exec(compile(source, entry, "exec"), main.__dict__)
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


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 8)
    while not data.endswith(b"\n"):
        more = conn.recv(1 << 16)
        if not more:
            raise ConnectionError("request cut short")
        data += more
    return json.loads(data), fds


def serve(path: str) -> None:
    """The zygote: import ``WARM_MODULES``, listen on ``path``, fork one child per connection; exit when the
    process that started it is gone."""
    import importlib
    for name in WARM_MODULES:
        importlib.import_module(name)
    base_path = _interpreter_base_path()
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    waiting: dict[int, socket.socket] = {}
    while os.getppid() == parent:
        ready, _, _ = select.select([listener], [], [], 0.05)
        if ready:
            conn, _ = listener.accept()
            try:
                request, fds = _receive(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    for other in (listener, conn, *waiting.values()):
                        other.close()
                    code = _child(request, fds, base_path)
                finally:
                    os._exit(code)
            for fd in fds:
                os.close(fd)
            try:
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            except OSError:
                pass
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()


class Zygote:
    """Client side: one server process per test session, started on first use, and the shim folder."""

    def __init__(self):
        self.process = None
        self.folder = None

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.folder = tempfile.mkdtemp(prefix="cl-warm-")
        if len(self.folder) > 80:   # a Unix socket path has at most 107 bytes
            self.folder = tempfile.mkdtemp(prefix="cl-warm-", dir="/tmp")
        self.socket_path = os.path.join(self.folder, "zygote.sock")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(OMP_NUM_THREADS="1", PYTHONPATH=root)
        self.process = subprocess.Popen([sys.executable, "-c", f"import ci.warm; ci.warm.serve({self.socket_path!r})"],
                                        cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        if self.process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the warm-interpreter server did not start ({self.process.poll()})")
        self.shims = os.path.join(self.folder, "bin")
        os.mkdir(self.shims)
        text = SHIM.format(python=sys.executable, socket_env=SOCKET_ENV)
        for name in ("python", "python3"):
            with open(os.path.join(self.shims, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(self.shims, name), 0o755)

    def run_python(self, entry: str, argv: list, cwd: str, env: dict, timeout: float,
                   module: bool = False) -> subprocess.CompletedProcess:
        """``python <entry> <argv>`` (``python -m <entry> <argv>`` with ``module``) in ``cwd`` with ``env``, like
        ``subprocess.run(capture_output=True, text=True, timeout=timeout)``."""
        self.start()
        with tempfile.TemporaryDirectory(prefix="warm_") as capture:
            paths = [os.devnull, os.path.join(capture, "stdout"), os.path.join(capture, "stderr")]
            files = [open(paths[0], "rb"), open(paths[1], "wb"), open(paths[2], "wb")]
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(self.socket_path)
                request = {"module" if module else "entry": entry, "argv": [str(a) for a in argv], "cwd": str(cwd),
                           "env": self.warm_env(env)}
                socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [f.fileno() for f in files])
            finally:
                for f in files:
                    f.close()
            replies = conn.makefile("rb")
            pid = json.loads(replies.readline())["pid"]
            ready, _, _ = select.select([conn], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                replies.readline()
                conn.close()
                raise subprocess.TimeoutExpired([sys.executable, entry, *argv], timeout)
            code = json.loads(replies.readline())["returncode"]
            conn.close()
            texts = []
            for path in paths[1:]:
                with open(path, encoding="utf-8", errors="replace") as f:
                    texts.append(f.read())
        return subprocess.CompletedProcess([sys.executable, entry, *argv], code, *texts)

    def warm_env(self, env: dict) -> dict:
        """``env`` plus what a warm child needs to start its ``mp.spawn`` workers warm too."""
        return {**env, SOCKET_ENV: self.socket_path, SHIM_ENV: os.path.join(self.shims, "python")}

    def shell_env(self, env: dict) -> dict:
        """``env`` for a shell script whose ``python`` (and ``$PYTHON``) should be the shim."""
        self.start()
        env = self.warm_env(env)
        env["PATH"] = os.pathsep.join(p for p in (self.shims, env.get("PATH", "")) if p)
        if env.get("PYTHON") in (sys.executable, "python", "python3"):
            env["PYTHON"] = os.path.join(self.shims, "python")
        return env


_zygote = Zygote()
_broken: list[str] = []


def _zygote_usable() -> bool:
    """Start the zygote if needed; if it cannot start here, say so once and run fresh interpreters instead."""
    if not _broken:
        try:
            _zygote.start()
        except (OSError, RuntimeError) as e:
            _broken.append(str(e))
            print(f"ci.warm: no warm interpreters ({e}); every command starts a fresh one", file=sys.stderr)
    return not _broken


def run(cmd: list, cwd, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)``. A command
    ``[sys.executable, FILE.py, *args]`` runs in a warm child, and a ``bash`` command gets the ``python`` shim,
    unless ``CL_TEST_FRESH_INTERPRETER`` is set."""
    cmd = [str(c) for c in cmd]
    if not os.environ.get(FRESH_INTERPRETER_ENV) and _zygote_usable():
        if len(cmd) > 1 and cmd[0] == sys.executable and cmd[1].endswith(".py"):
            return _zygote.run_python(cmd[1], cmd[2:], str(cwd), env, timeout)
        if len(cmd) > 2 and cmd[0] == sys.executable and cmd[1] == "-m" and cmd[2].startswith("common."):
            return _zygote.run_python(cmd[2], cmd[3:], str(cwd), env, timeout, module=True)
        if os.path.basename(cmd[0]) in ("bash", "sh"):
            env = _zygote.shell_env(env)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
