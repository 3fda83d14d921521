"""common.engine.Run: identity, lock, resume, save, record (in-process; the entry points' end-to-end behaviour is in
tests/reliability/test_run_state.py)."""
from __future__ import annotations

import argparse
import errno
import json
import multiprocessing as mp
import os
import stat

import pytest
import torch

from common import checkpoint as ckpt
from common.engine import NON_RESULT_FLAGS, Run, RunComplete, default_run_name, flag_differences, result_flags
from common.utils import UserError


def _args(**kw):
    base = dict(lr=0.1, epochs=2, workers=4, print_freq=10, name=None, auto_resume=True, resume="", arch="r18")
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path))
    return tmp_path


def test_result_flags_leave_out_what_cannot_change_the_result():
    flags = result_flags(_args())
    assert flags == {"arch": "r18", "epochs": 2, "lr": 0.1}
    assert {"workers", "print_freq", "dist_url", "device", "data"} <= NON_RESULT_FLAGS


def test_default_name_changes_with_every_result_flag_and_only_with_them():
    a = default_run_name("x", result_flags(_args()))
    assert a.startswith("x-") and len(a) == 10
    assert default_run_name("x", result_flags(_args(lr=0.2))) != a
    assert default_run_name("x", result_flags(_args(workers=0, print_freq=1))) == a


def test_runs_go_to_cl_runs_dir_method_name(runs):
    with Run.open("m", _args(), name="n") as run:
        assert run.run_dir == os.path.join(str(runs), "m", "n")
        assert os.path.isfile(os.path.join(run.run_dir, ".lock"))


def test_folder_is_the_run_folder_itself_and_keeps_the_identity_checks(runs, tmp_path):
    # an original's explicit output folder (MoCo-v3 --output_dir): no <runs>/<method>/<name> around it
    out = tmp_path / "output_dir"
    with Run.open("m", _args(), folder=str(out)) as run:
        assert run.run_dir == str(out) and os.path.isfile(out / ".lock")
        run.save({"epoch": 1, "w": torch.ones(2)}, "ck.pth")
    with pytest.raises(UserError, match="--lr: 0.1 -> 0.2"):
        with Run.open("m", _args(lr=0.2), folder=str(out)) as run:
            run.resume_state(None, "ck.pth")


def _train(args, name="n", value=50.0, stop_after=None):
    """A toy entry point: resumes, saves each epoch, finishes (or stops like a killed run after ``stop_after``)."""
    with Run.open("m", args, name=name) as run:
        state = run.resume_state(args.resume, "ck.pth")
        start = state["epoch"] if state else 0
        for epoch in range(start, args.epochs):
            run.save({"epoch": epoch + 1, "w": torch.ones(2)}, "ck.pth")
            if stop_after == epoch + 1:
                return run.run_dir, start
        run.finish("top1", value)
        return run.run_dir, start


def test_identical_finished_command_reports_and_exits_0(runs, capsys):
    _train(_args())
    with pytest.raises(RunComplete) as exc:
        _train(_args())
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "run complete" in out and "final top1: 50.00" in out


def test_changed_result_flag_under_one_name_is_refused_with_the_ways_out(runs):
    _train(_args())
    record = json.load(open(os.path.join(str(runs), "m", "n", "run.json")))
    with pytest.raises(UserError) as exc:
        _train(_args(lr=0.5))
    msg = str(exc.value)
    assert "--lr: 0.1 -> 0.5" in msg and "--name" in msg and "--no-auto-resume" in msg
    # the record was not rewritten by the run that did not train
    assert json.load(open(os.path.join(str(runs), "m", "n", "run.json"))) == record


def test_changed_non_result_flag_resumes(runs):
    _train(_args(epochs=3), stop_after=1)
    _, start = _train(_args(epochs=3, workers=0, print_freq=1))
    assert start == 1


def test_no_auto_resume_overwrites_on_purpose(runs):
    _train(_args())
    run_dir, start = _train(_args(lr=0.5, auto_resume=False))
    assert start == 0
    assert json.load(open(os.path.join(run_dir, "run.json")))["flags"]["lr"] == 0.5


def test_checkpoint_with_other_flags_is_refused_even_without_a_record(runs):
    run_dir, _ = _train(_args())
    os.unlink(os.path.join(run_dir, "run.json"))
    with pytest.raises(UserError, match="--lr: 0.1 -> 0.3"):
        _train(_args(lr=0.3))


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, None])
def test_damaged_resume_file_stops_the_run_and_is_kept(runs, content):
    run_dir, _ = _train(_args(epochs=2), stop_after=1)
    path = os.path.join(run_dir, "ck.pth")
    if content is None:   # truncated
        data = open(path, "rb").read()
        content = data[: len(data) // 2]
    open(path, "wb").write(content)
    with pytest.raises(UserError, match="ck.pth"):
        _train(_args(epochs=2))
    assert open(path, "rb").read() == content


def _hold(path, ready, release):
    os.environ["CL_RUNS_DIR"] = path
    with Run.open("m", _args(), name="n"):
        ready.set()
        release.wait(30)


def test_second_process_on_a_live_folder_is_refused_and_a_dead_one_does_not_block(runs):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(runs), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(UserError, match=f"in use by a live run \\(pid {holder.pid}"):
            Run.open("m", _args(), name="n")
    finally:
        release.set()
        holder.join(30)
    holder_killed = ctx.Process(target=_hold, args=(str(runs), ctx.Event(), ctx.Event()))
    holder_killed.start()
    holder_killed.join(0.0)
    holder_killed.kill()
    holder_killed.join(30)
    with Run.open("m", _args(), name="n"):   # the lock of a dead process is gone with it
        pass


def test_stale_temp_files_are_removed_at_start(runs):
    run_dir, _ = _train(_args(epochs=1))
    stale = os.path.join(run_dir, ".ck.pth.abc.tmp")
    open(stale, "wb").write(b"half")
    with pytest.raises(RunComplete):
        _train(_args(epochs=1))
    assert not os.path.exists(stale)


def test_saved_files_are_finite_world_readable_and_weights_only(runs):
    old = os.umask(0o022)
    try:
        run_dir, _ = _train(_args(epochs=1))
    finally:
        os.umask(old)
    path = os.path.join(run_dir, "ck.pth")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    state = torch.load(path, weights_only=True)
    assert {"run_flags", "rng_state", "code_version", "global_step"} <= set(state)
    ckpt.restore_rng_state(state["rng_state"])


def test_nan_anywhere_is_never_saved(runs, tmp_path):
    good = tmp_path / "good.pth"
    ckpt.save_checkpoint({"epoch": 1, "net": {"w": torch.ones(2)}}, str(good))
    before = good.read_bytes()
    for bad in ({"net": {"w": torch.tensor([float("nan")])}}, {"memory": [torch.tensor([float("inf")])]},
                {"optimizer": {"state": {0: {"momentum_buffer": torch.tensor([float("nan")])}}}}):
        with pytest.raises(UserError, match="NaN / inf"):
            ckpt.save_checkpoint({"epoch": 2, **bad}, str(good))
    assert good.read_bytes() == before


def test_disk_full_is_one_user_error_that_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pth"
    ckpt.save_checkpoint({"w": torch.ones(1)}, str(path))
    before = path.read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="No space left on device.*previous checkpoint there is kept"):
        ckpt.save_checkpoint({"w": torch.zeros(1)}, str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]   # no temp file left


def test_flag_differences_ignore_new_flags_left_at_their_default():
    assert flag_differences({"lr": 1}, {"lr": 1, "new_switch": False}) == []
    assert flag_differences({"lr": 1}, {"lr": 2}) == ["--lr: 1 -> 2"]


def test_report_prints_the_initial_final_line_and_logs_an_evaluation(runs):
    """run.report: '<when> <metric>: <value>' in the log (two decimals, a loss four) and eval/<metric> for an
    evaluation only."""
    logged = []
    with Run.open("m", _args(), name="report") as run:
        run.scalar = lambda tag, value, step=None: logged.append((tag, value, step))
        run.report("initial", "knn top-1", 12.345, step=0)
        run.report("final", "loss", 0.123456)
        log = open(os.path.join(run.run_dir, "log.txt")).read()
    assert "initial knn top-1: 12.35" in log and "final loss: 0.1235" in log
    assert logged == [("eval/knn_top1", 12.345, 0)]
