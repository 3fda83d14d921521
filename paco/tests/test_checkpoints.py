"""Checkpoints in and out (issue 16) and the run folder's protections (common.engine) for PaCo, on tiny CIFAR-100
files at 16 px (1 epoch of 3 steps, the flags of ``ci.entry_points``).

Out: what the entry point writes loads in the original's resume / ``--reload`` code (``helpers.assert_original_layout``;
the smoke tests check the other three entry points the same way). In: a file built in the original's layout
(``module.`` keys, SGD over every parameter, no RNG / scaler state) resumes here, automatically from the run folder
and with ``--resume``; a released-model file evaluates with ``--evaluate --reload``; a file of which most tensors do
not match is refused. Protections: a damaged resume file or another method's checkpoint stops the run and leaves
the best file as it was; a live lock under the default launch (mp.spawn) is one ``error:`` line.
"""
from __future__ import annotations

import fcntl
import re
import sys

import pytest
import torch

from ci.entry_points import METHODS
from ci import warm
from ci.smoke import ROOT, smoke_env
from common.faults import FAULT_ENV
from paco.tests.helpers import DDPKeys, assert_original_layout

METHOD = METHODS["paco"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> str:
    from common.data.fake import write_cifar100
    return write_cifar100(tmp_path_factory.mktemp("cifar100"), n_train=200, n_test=64)


def _flags(data, *extra, spawn=False):
    flags = [f.format(data=data) for f in METHOD.flags]
    if spawn:   # PaCo's default launch: mp.spawn of one process per device (one on CPU)
        flags.remove("--no-multiprocessing-distributed")
    return [*flags, "--epochs", "1", *extra]


def _run(runs, data, *extra, spawn=False):
    env = smoke_env(runs, {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.pop(FAULT_ENV, None)
    return warm.run([sys.executable, METHOD.entry, *_flags(data, *extra, spawn=spawn)], ROOT / "paco", env, 300)


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _one_error(proc, *needles):
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "handle is closed" not in proc.stderr and "Exception in thread" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _original_checkpoint(model_state_source: dict, args: dict) -> dict:
    """A checkpoint as the original wrote it (spec §g) from this project's model: its DDP model's state dict,
    an SGD over ``model.parameters()`` after one step (momentum buffers), and nothing of ours."""
    from paco.tests.helpers import original_model_for
    model = original_model_for({"args": args})
    model.load_state_dict(model_state_source)
    optimizer = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9, weight_decay=5e-4)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p) * 1e-3
    optimizer.step()
    # acc (the LT original's best top-1 at resume) below any accuracy: the resumed epoch writes the best file
    return {"epoch": 1, "arch": args["arch"], "acc": -1.0, "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict()}


def test_checkpoints_out_and_in(cifar, tmp_path):
    runs = tmp_path / "runs"
    out = _ok(_run(runs, cifar, "--mark", "ours"))
    folder = runs / "paco" / "ours"
    ours = assert_original_layout(folder / "moco_ckpt.pth.tar", epochs_done=1)
    assert "final top-1:" in out   # (100 classes, 64 test images: top-1 stays 0, no best file; test_smoke checks it)

    # the original's auto-resume: its moco_ckpt.pth.tar in the run folder (no run.json, none of our keys)
    original = _original_checkpoint(ours["state_dict"], ours["args"])
    (runs / "paco" / "orig").mkdir(parents=True)
    torch.save(original, runs / "paco" / "orig" / "moco_ckpt.pth.tar")
    out = _ok(_run(runs, cifar, "--mark", "orig", "--epochs", "2"))
    assert "auto-resuming" in out and "resumed at epoch 1" in out and "initial top-1" not in out
    assert "no RNG state" in out and "re-initialised" not in out   # the optimizer state was taken as it is
    resumed = assert_original_layout(runs / "paco" / "orig" / "moco_ckpt.pth.tar", epochs_done=2)
    assert_original_layout(runs / "paco" / "orig" / "moco_ckpt.best.pth.tar", epochs_done=2)
    assert not torch.equal(resumed["state_dict"]["module.linear.weight"], original["state_dict"]["module.linear.weight"])

    # --resume of the original's file into a new folder
    torch.save(original, tmp_path / "original.pth.tar")
    out = _ok(_run(runs, cifar, "--mark", "explicit", "--epochs", "2", "--resume", str(tmp_path / "original.pth.tar")))
    assert "resumed at epoch 1" in out
    explicit = torch.load(runs / "paco" / "explicit" / "moco_ckpt.pth.tar", weights_only=True)
    for key, value in resumed["state_dict"].items():   # auto and explicit resume continue the same state
        assert torch.equal(explicit["state_dict"][key], value), key

    # a released model ({'state_dict': module.-prefixed}) evaluates: every tensor taken
    torch.save({"state_dict": original["state_dict"]}, tmp_path / "released.pth")
    out = _ok(_run(runs, cifar, "--mark", "eval", "--evaluate", "--reload", str(tmp_path / "released.pth")))
    loaded, total = re.search(r"reloaded (\d+)/(\d+) tensors", out).groups()
    assert loaded == total and "top-1:" in out
    assert not (runs / "paco" / "eval" / "run.json").exists()   # an evaluation never records or completes a run

    # a file of which most tensors do not match is refused (here: only the classifier and the queue would; a file
    # matching none is a bad-input row of tests/reliability/test_bad_input.py)
    partial = {k: v for k, v in original["state_dict"].items() if k.startswith(("module.linear.", "module.queue"))}
    torch.save({"state_dict": partial}, tmp_path / "partial.pth")
    total = len(original["state_dict"])
    _one_error(_run(runs, cifar, "--mark", "eval", "--evaluate", "--reload", str(tmp_path / "partial.pth")),
               "partial.pth", f"only {len(partial)} of this model's {total} tensors match this model")


def test_optimizer_of_another_layout_is_reinitialised_and_said():
    """This code's files from before it followed the original held the trainable parameters only (not the key
    encoder): the weights are restored, the optimizer state is not loaded, and the run says so."""
    from paco.main_paco import build_model, build_optimizer, parse_args, restore
    args = parse_args("cifar", ["--dataset", "digits", "--imb-factor", "0.1", "--alpha", "0.01", "--feat_dim", "64",
                                "--moco-k", "32", "--moco-dim", "8", "--no-multiprocessing-distributed"])
    model = build_model(args)
    old = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], 0.1, momentum=0.9)

    class Recorder:
        def __init__(self):
            self.lines, self.state = [], None

        def info(self, line):
            self.lines.append(line)

        def restore(self, state, *objects):
            self.state = state
            return state["epoch"]

    for saved, reinitialised in ((old.state_dict(), True), (build_optimizer(model, args).state_dict(), False)):
        run = Recorder()
        assert restore(run, {"epoch": 3, "state_dict": {}, "optimizer": saved, "rng_state": {}}, model, None,
                       torch.amp.GradScaler("cpu", enabled=False), args) == 3
        assert (run.state["optimizer"] is None) == reinitialised
        assert any("momentum re-initialised" in line for line in run.lines) == reinitialised


def test_damaged_or_foreign_resume_file_stops_and_keeps_the_best(cifar, tmp_path):
    runs = tmp_path / "runs"
    _ok(_run(runs, cifar, "--mark", "x"))
    folder = runs / "paco" / "x"
    (folder / "run.json").unlink()      # an interrupted run (not complete): the next command would resume
    resume = folder / "moco_ckpt.pth.tar"
    good = resume.read_bytes()
    (folder / "moco_ckpt.best.pth.tar").write_bytes(good)   # its good best checkpoint (top-1 stays 0 on this data)
    best = good

    resume.write_bytes(good[: len(good) // 3])
    _one_error(_run(runs, cifar, "--mark", "x", "--epochs", "2"), "moco_ckpt.pth.tar")
    assert (folder / "moco_ckpt.best.pth.tar").read_bytes() == best and resume.read_bytes() == good[: len(good) // 3]

    # another method's checkpoint under this name (a MoCo-style file: epoch, state_dict, optimizer)
    from common.backbones import build_backbone
    torch.save({"epoch": 3, "arch": "resnet18", "state_dict": DDPKeys(build_backbone("resnet18")).state_dict(),
                "optimizer": {}}, resume)
    foreign = resume.read_bytes()
    _one_error(_run(runs, cifar, "--mark", "x", "--epochs", "2"), "does not match this model")
    assert (folder / "moco_ckpt.best.pth.tar").read_bytes() == best and resume.read_bytes() == foreign


def test_live_lock_under_the_default_launch_is_one_error_line(cifar, tmp_path):
    runs = tmp_path / "runs"
    folder = runs / "paco" / "busy"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 4242 on testhost")
        lock.flush()
        proc = _run(runs, cifar, "--mark", "busy", spawn=True)
    _one_error(proc, "in use by a live run", "pid 4242")
    assert not list(folder.glob("*.pth.tar"))
