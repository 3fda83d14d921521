import argparse
import os

import pytest
import torch

from common.checkpoint import find_latest_checkpoint, load_checkpoint
from common.logger import RunLogger, make_run_dir
from common.meters import AverageMeter, ProgressMeter
from common.training import load_model_state, progress, resume_or_start, save_training_state
from common.utils import UserError


class Queue(torch.nn.Module):
    """Stands in for a loss module holding state (a queue) that must survive a resume."""

    def __init__(self):
        super().__init__()
        self.register_buffer("queue", torch.zeros(4, 3))


def _make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt, Queue()


def _train_epoch(model, opt, queue):
    for _ in range(3):
        x = torch.randn(8, 3)           # drawn from the global RNG: resume must restore it
        loss = model(x).pow(2).mean() + torch.randn(()) * 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        queue.queue = torch.roll(queue.queue, 1, 0)
        queue.queue[0] = x[0]


def test_resume_round_trip_equals_uninterrupted(tmp_path):
    args = argparse.Namespace(lr=0.1, device=torch.device("cpu"))
    # uninterrupted, 4 epochs
    model, opt, queue = _make()
    torch.manual_seed(123)
    for _ in range(4):
        _train_epoch(model, opt, queue)
    reference = [p.clone() for p in model.state_dict().values()]

    # killed after epoch 2, then resumed (auto) and explicitly
    run = tmp_path / "run"
    model, opt, queue = _make()
    torch.manual_seed(123)
    for epoch in range(2):
        _train_epoch(model, opt, queue)
        save_training_state(str(run), epoch + 1, model, opt, args, extra={"queue": queue}, arch="mlp")
    for explicit in (False, True):
        model, opt, queue = _make()
        torch.manual_seed(999)  # a fresh process would have other RNG state
        path = str(run / "checkpoint.pth.tar") if explicit else ""
        start = resume_or_start(path, str(run), model, opt, extra={"queue": queue}, printer=lambda *a: None)
        assert start == 2
        for _ in range(start, 4):
            _train_epoch(model, opt, queue)
        for a, b in zip(model.state_dict().values(), reference):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    state = load_checkpoint(str(run / "checkpoint.pth.tar"))
    assert state["args"]["lr"] == 0.1 and state["args"]["device"] == "cpu" and state["arch"] == "mlp"


def test_fresh_start_and_foreign_checkpoints(tmp_path):
    model, opt, queue = _make()
    assert resume_or_start(None, str(tmp_path), model, opt) == 0
    assert resume_or_start("", str(tmp_path / "nothing"), model, opt, return_state=True) == (0, None)
    with pytest.raises(UserError, match="does not exist"):
        resume_or_start(str(tmp_path / "missing.pth"), str(tmp_path), model, opt)
    # another architecture: shape mismatch / unexpected keys
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                                torch.nn.Linear(5, 2), torch.nn.Linear(2, 2))
    save_training_state(str(tmp_path), 1, other, None, None, filename="foreign.pth.tar")
    with pytest.raises(UserError, match="does not match this model") as e:
        resume_or_start(str(tmp_path / "foreign.pth.tar"), str(tmp_path), model, opt)
    assert "shape" in str(e.value) and "unexpected" in str(e.value)
    # not a training checkpoint at all
    torch.save({"model": {}}, str(tmp_path / "weights.pth"))
    with pytest.raises(UserError, match="not a training checkpoint"):
        resume_or_start(str(tmp_path / "weights.pth"), str(tmp_path), model, opt)


def test_auto_resume_other_file_names(tmp_path):
    model, opt, _ = _make()
    from common.utils import grad_scaler
    scaler = grad_scaler("cpu", enabled=True)   # disabled on CPU (bfloat16 needs no scaling)
    save_training_state(str(tmp_path), 3, model, opt, scaler=scaler, filename="ckpts.pth")   # ASCL's name
    torch.save({"state_dict": model.state_dict()}, str(tmp_path / "encoder.pth"))  # weights only, newer
    (tmp_path / "z_truncated.pth").write_bytes(b"PK\x03\x04")
    fresh, fresh_opt, _ = _make()
    start, state = resume_or_start(None, str(tmp_path), fresh, fresh_opt, scaler=grad_scaler("cpu"),
                                   return_state=True, printer=lambda *a: None)
    assert start == 3 and state["epoch"] == 3
    assert resume_or_start("auto", str(tmp_path), fresh, fresh_opt, auto=False) == 0


def test_ddp_prefix_tolerated_and_filename_format(tmp_path):
    model, opt, _ = _make()
    prefixed = {"module." + k: v for k, v in model.state_dict().items()}
    fresh, _, _ = _make()
    load_model_state(fresh, prefixed)
    path = save_training_state(str(tmp_path), 7, model, opt, filename="checkpoint_{epoch:04d}.pth.tar")
    assert path.endswith("checkpoint_0007.pth.tar")
    assert find_latest_checkpoint(str(tmp_path)) == path


def test_progress_logger_and_meters(tmp_path, monkeypatch, capsys):
    assert list(progress(range(3), "x", enabled=True, disable=True)) == [0, 1, 2]
    plain = [1, 2]
    assert progress(plain, "x", enabled=False) is plain

    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path))
    run_dir = make_run_dir("paco", "digits")
    assert run_dir == os.path.join(str(tmp_path), "paco", "digits") and os.path.isdir(run_dir)   # CL_RUNS_DIR/<method>/<name>
    assert make_run_dir("paco", "x", root=str(tmp_path / "r")).startswith(str(tmp_path / "r" / "runs"))
    log = RunLogger(run_dir)
    log.info("initial knn top-1: 10.00")
    log.scalar("train/loss", torch.tensor(1.5), 0)
    log.close()
    assert "initial knn top-1: 10.00" in capsys.readouterr().out
    assert "initial knn top-1: 10.00" in open(os.path.join(run_dir, "log.txt")).read()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run_dir))
    quiet_dir = str(tmp_path / "quiet")
    quiet = RunLogger(quiet_dir, enabled=False)
    quiet.info("nothing")
    quiet.scalar("a", 1.0, 0)
    quiet.close()
    assert not os.path.exists(quiet_dir) and capsys.readouterr().out == ""

    m = AverageMeter("Loss", ":.3f")
    m.update(torch.tensor(2.0), n=2)
    m.update(1.0, n=2)
    assert m.avg == pytest.approx(1.5) and str(m) == "Loss 1.000 (1.500)"
    line = ProgressMeter(391, [m], prefix="Epoch: [0]").format(10)
    assert line == "Epoch: [0][ 10/391]\tLoss 1.000 (1.500)"


def test_save_refuses_non_finite_weights_and_keeps_previous_checkpoint(tmp_path):
    import pytest
    from common.checkpoint import load_checkpoint
    from common.training import save_training_state
    from common.utils import UserError

    model = torch.nn.Linear(3, 2)
    path = save_training_state(str(tmp_path), 1, model, filename="ckpt.pth")
    before = open(path, "rb").read()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match=r"NaN / inf weights after epoch 2 \(e.g. state_dict.weight\)"):
        save_training_state(str(tmp_path), 2, model, filename="ckpt.pth")
    assert open(path, "rb").read() == before
    assert load_checkpoint(path)["epoch"] == 1
