import argparse
import os

import pytest
import torch

from common.checkpoint import load_checkpoint
from common.logger import RunLogger, make_run_dir
from common.meters import AverageMeter, ProgressMeter
from common.training import classifier_pass, load_model_state, progress
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


def test_resume_round_trip_equals_uninterrupted(tmp_path, monkeypatch):
    """common.engine's save / resume_state / restore (auto and --resume FILE) continue a run bit-identically: model,
    optimizer, a stateful loss module (queue) and the RNG."""
    from common.engine import Run
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path))
    args = argparse.Namespace(lr=0.1, device=torch.device("cpu"), name="run", resume="", auto_resume=True)
    # uninterrupted, 4 epochs
    model, opt, queue = _make()
    torch.manual_seed(123)
    for _ in range(4):
        _train_epoch(model, opt, queue)
    reference = [p.clone() for p in model.state_dict().values()]

    # killed after epoch 2, then resumed (auto) and explicitly
    model, opt, queue = _make()
    torch.manual_seed(123)
    with Run.open("m", args, name="run") as run:
        for epoch in range(2):
            _train_epoch(model, opt, queue)
            run.save({"epoch": epoch + 1, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                      "queue": queue.state_dict(), "args": args, "arch": "mlp"}, "checkpoint.pth.tar")
        path = os.path.join(run.run_dir, "checkpoint.pth.tar")
    for explicit in (False, True):
        model, opt, queue = _make()
        torch.manual_seed(999)  # a fresh process would have other RNG state
        args.resume = path if explicit else ""
        with Run.open("m", args, name="run") as run:
            state = run.resume_state(args.resume, "checkpoint.pth.tar")
            start = run.restore(state, model, opt, extra={"queue": queue})
        assert start == 2
        for _ in range(start, 4):
            _train_epoch(model, opt, queue)
        for a, b in zip(model.state_dict().values(), reference):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    state = torch.load(path, weights_only=True)
    assert state["args"]["lr"] == 0.1 and state["args"]["device"] == "cpu" and state["arch"] == "mlp"


def test_ddp_prefix_tolerated_and_foreign_state_is_one_error():
    model, opt, _ = _make()
    prefixed = {"module." + k: v for k, v in model.state_dict().items()}
    fresh, _, _ = _make()
    load_model_state(fresh, prefixed)
    other = torch.nn.Linear(5, 5)
    with pytest.raises(UserError, match="does not match this model"):
        load_model_state(fresh, other.state_dict(), source="checkpoint 'foreign.pth.tar'")


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
    from common.checkpoint import save_checkpoint
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint({"epoch": 1, "state_dict": model.state_dict()}, str(tmp_path / "ckpt.pth"))
    before = open(path, "rb").read()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match=r"NaN / inf weights after epoch 2 \(e.g. state_dict.weight\)"):
        save_checkpoint({"epoch": 2, "state_dict": model.state_dict()}, path)
    assert open(path, "rb").read() == before
    assert load_checkpoint(path)["epoch"] == 1


def test_classifier_pass_trains_evaluates_and_counts():
    torch.manual_seed(0)
    x, y = torch.randn(10, 4), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    model = torch.nn.Linear(4, 6)
    reference = torch.nn.Linear(4, 6)
    reference.load_state_dict(model.state_dict())
    # evaluation: loss, top-1 and top-5 summed over the samples (batch-size weighted), and their count
    sums = classifier_pass(model, loader, "cpu")
    logits = reference(x)
    top5 = logits.topk(5, 1).indices == y[:, None]
    expected = [torch.nn.functional.cross_entropy(logits, y, reduction="sum").item(),
                100.0 * (logits.argmax(1) == y).sum().item(), 100.0 * top5.any(1).sum().item(), 10.0]
    torch.testing.assert_close(sums, torch.tensor(expected), rtol=1e-5, atol=1e-4)
    assert all(p.grad is None for p in model.parameters())

    # training: one SGD step per batch (the same steps as a hand-written loop), stopped after max_iters
    class Run:
        step = 0
    run, seen = Run(), []
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    sums = classifier_pass(model, loader, "cpu", opt, max_iters=2, run=run,
                           on_batch=lambda i, loss, acc1, acc5, n, s: seen.append((i, n, float(s[3]))))
    for images, targets in list(loader)[:2]:
        ref_opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(images), targets).backward()
        ref_opt.step()
    assert run.step == 2 and seen == [(0, 4, 4.0), (1, 4, 8.0)] and float(sums[3]) == 8
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)
