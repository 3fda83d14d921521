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


def _ns(**kw):
    return argparse.Namespace(**{"seed": 0, "device": torch.device("cpu"), **kw})


class _Epoched(torch.utils.data.Dataset):
    """Items that record the epoch the loader's ``set_epoch`` gave them."""

    def __init__(self, n):
        self.n, self.epoch = n, -1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([i, self.epoch])


def test_rank_split_loader_orders_by_seed_and_epoch_and_refuses_too_small_data():
    from common.training import rank_split_loader
    data = _Epoched(10)
    loader, set_epoch = rank_split_loader(data, 4, 0, _ns(seed=3), shuffle_seed_stride=1000)
    set_epoch(1)
    first = torch.cat(list(loader))
    assert first.shape == (8, 2) and (first[:, 1] == 1).all()       # drop_last: 2 full batches, epoch passed on
    again, _ = rank_split_loader(_Epoched(10), 4, 0, _ns(seed=3))
    again.sampler.set_epoch(1)
    assert torch.equal(torch.cat(list(again))[:, 0], first[:, 0])   # the order depends on (seed, epoch) only
    set_epoch(2)
    assert not torch.equal(torch.cat(list(loader))[:, 0], first[:, 0])
    with pytest.raises(UserError, match="fewer than one global batch.*--Ns"):
        rank_split_loader(_Epoched(3), 4, 0, _ns(), batch_flag="--Ns")
    loader, _ = rank_split_loader(_Epoched(3), 4, 0, _ns(), drop_last=False)   # a partial batch is kept
    assert len(loader) == 1


def test_train_batches_stops_after_max_iters_and_sets_modes():
    from common.training import train_batches

    class NoBar:
        def progress(self, loader, desc, total, enabled):
            return loader
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).eval()
    args = _ns(max_iters=2, progress=False, freeze_bn=True)
    total, batches = train_batches(NoBar(), list(range(5)), model, args)
    assert total == 2 and [i for i, _ in batches] == [0, 1]
    assert model.training and not model[1].training          # --freeze-bn: BatchNorm stays in eval mode
    batches.postfix(loss="1")                                  # no bar: a no-op
    batches.close()
    total, batches = train_batches(NoBar(), list(range(5)), model, _ns(), max_iters=0, enabled=False)
    assert total == 5 and len(list(batches)) == 5


def _moco_checkpoint(path, model, prefix, extra=None):
    state = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    state.update(extra or {})
    torch.save({"epoch": 1, "state_dict": state}, path)


def test_linear_classification_helpers(tmp_path):
    """MoCo's protocol: head-only training, the pre-trained encoder loaded by prefix (with or without ``module.``;
    heads of the checkpoint dropped), the frozen-backbone sanity check, and one error line for a foreign file."""
    from common.training import check_frozen, frozen_tensors, load_pretrained_encoder, train_head_only
    torch.manual_seed(0)
    pretrained = torch.nn.Sequential()
    pretrained.add_module("body", torch.nn.Linear(3, 4))
    pretrained.add_module("fc", torch.nn.Linear(4, 7))            # a projection head: not loaded
    _moco_checkpoint(tmp_path / "ckpt.pth.tar", pretrained, "encoder_q.")
    model = torch.nn.Sequential()
    model.add_module("body", torch.nn.Linear(3, 4))
    model.add_module("fc", torch.nn.Linear(4, 2))
    train_head_only(model, model.fc, "fc")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    assert torch.equal(model.fc.bias, torch.zeros(2)) and 0 < model.fc.weight.std() < 0.05
    load_pretrained_encoder(model, str(tmp_path / "ckpt.pth.tar"), "module.encoder_q.", "fc")
    assert torch.equal(model.body.weight, pretrained.body.weight)
    reference = frozen_tensors(model, "fc")
    assert sorted(reference) == ["body.bias", "body.weight"]
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    check_frozen(model, reference)                                 # the head may change
    with torch.no_grad():
        model.body.bias.add_(1.0)
    with pytest.raises(UserError, match="body.bias changed"):
        check_frozen(model, reference)
    with pytest.raises(UserError, match="holds no 'module.base_encoder.\\*' weights"):
        load_pretrained_encoder(model, str(tmp_path / "ckpt.pth.tar"), "module.base_encoder.", "fc")
    other = torch.nn.Sequential()
    other.add_module("body", torch.nn.Linear(5, 4))
    _moco_checkpoint(tmp_path / "other.pth.tar", other, "module.encoder_q.")
    with pytest.raises(UserError, match="does not fit"):
        load_pretrained_encoder(model, str(tmp_path / "other.pth.tar"), ("module.base_encoder.", "module.encoder_q."),
                                "fc")


def test_feature_probe_knn_and_linear():
    from common.eval import feature_probe
    torch.manual_seed(0)
    train_y, test_y = torch.arange(40) % 2, torch.arange(20) % 2
    centres = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    train_x, test_x = centres[train_y] + 0.1 * torch.randn(40, 2), centres[test_y] + 0.1 * torch.randn(20, 2)
    assert feature_probe("knn", train_x, train_y, test_x, test_y, k=5) == ("knn top-1", 100.0)
    name, top1 = feature_probe("linear", train_x, train_y, test_x, test_y, epochs=20, seed=0)
    assert name == "linear top-1" and top1 == 100.0
    _, chance = feature_probe("knn", train_x, train_y, test_x, 1 - test_y, k=5)
    assert chance == 0.0


def test_original_input_finds_the_file_where_the_original_ran(tmp_path, monkeypatch):
    from common.engine import original_input
    script_dir = tmp_path / "image"
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.pth").write_bytes(b"")
    monkeypatch.chdir(tmp_path / "results")
    monkeypatch.delenv("CL_ORIGINAL_OUTPUTS", raising=False)
    assert original_input("x.pth", str(script_dir)) == "x.pth"                     # as given when it exists
    assert original_input("../results/x.pth", str(script_dir)) == "../results/x.pth"
    assert original_input("../results/missing.pth", str(script_dir)) == "../results/missing.pth"
    monkeypatch.chdir(tmp_path)
    found = original_input("../results/x.pth", str(script_dir))                   # beside image/, as the original ran
    assert os.path.samefile(found, tmp_path / "results" / "x.pth")
    monkeypatch.setenv("CL_ORIGINAL_OUTPUTS", str(tmp_path / "outputs"))
    (tmp_path / "outputs" / "image").mkdir(parents=True)
    (tmp_path / "outputs" / "image" / "y.pth").write_bytes(b"")
    assert os.path.samefile(original_input("y.pth", str(script_dir)), tmp_path / "outputs" / "image" / "y.pth")


class _Run:
    """Stands in for common.engine.Run: counts steps, collects log lines and scalars."""

    def __init__(self):
        self.step, self.lines, self.scalars = 0, [], []

    def progress(self, loader, desc, total, enabled):
        return loader

    def info(self, msg):
        self.lines.append(msg)

    def scalar(self, tag, value, step=None):
        self.scalars.append((tag, value))


def test_meter_epoch_steps_reports_and_stops_on_nan():
    """MoCo's loop: one optimizer step per batch, the reported values (loss first) averaged with the batch weights on
    the print steps (every step with every_step), the ProgressMeter line logged, a non-finite loss one UserError."""
    from common.training import meter_epoch
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [torch.full((2, 2), float(i)) for i in range(5)]

    def step(i, x):
        loss = model(x).pow(2).mean()
        return loss, x.shape[0], lambda: torch.stack([loss, torch.tensor(float(i))])

    def backward_step(loss, opt):
        loss.backward()
        opt.step()

    run = _Run()
    meters = meter_epoch(run, batches, model, _ns(print_freq=2, max_iters=0, progress=False), 3, step, optimizer,
                         backward_step, [("Loss", ":.4e"), ("Index", ":.1f")])
    assert run.step == 5 and model.training
    assert meters["Index"].avg == pytest.approx((0 + 2 + 4) / 3)    # print steps 0, 2 and the last one
    assert len(run.lines) == 3 and run.lines[0].startswith("Epoch: [3]") and "Index" in run.lines[0]
    assert [t for t, _ in run.scalars] == ["train/loss"] * 3
    meters = meter_epoch(_Run(), batches, model, _ns(print_freq=2, max_iters=0, progress=False), 0, step, optimizer,
                         backward_step, [("Loss", ":.4e"), ("Index", ":.1f")], every_step=True, data_time=False)
    assert meters["Index"].avg == pytest.approx(2.0) and "Data" not in meters
    with pytest.raises(UserError, match="at step 1 of epoch 7"):
        meter_epoch(_Run(), [torch.ones(2, 2), torch.full((2, 2), float("nan"))], model,
                    _ns(print_freq=1, max_iters=0, progress=False), 7, step, optimizer, lambda loss, opt: None,
                    [("Loss", ":.4e"), ("Index", ":.1f")], where="{i} of epoch {epoch}")


def test_moco_flags_and_lr_rule():
    """The shared MoCo flag groups keep each entry point's defaults and helps; moco_epoch_lr is MoCo's --cos /
    --schedule rule."""
    from common.schedules import cosine_lr, moco_epoch_lr, step_lr
    from common.training import add_moco_args, add_moco_model_args
    parser = argparse.ArgumentParser()
    add_moco_args(parser, data="./x", epochs=100, lr=30.0, schedule=[60, 80], weight_decay=0.0, evaluate=True,
                  helps={"arch": "the encoder"})
    add_moco_model_args(parser, k=1024, t=None)
    args = parser.parse_args(["-b", "64", "--cos"])
    assert (args.data, args.epochs, args.lr, args.schedule, args.weight_decay, args.batch_size) == \
        ("./x", 100, 30.0, [60, 80], 0.0, 64)
    assert not args.evaluate and args.moco_k == 1024 and args.cos and not args.mlp and not hasattr(args, "moco_t")
    assert "the encoder" in parser.format_help()
    parser = argparse.ArgumentParser()
    add_moco_args(parser, batch_size=None, schedule=None)
    args = parser.parse_args([])
    assert not hasattr(args, "batch_size") and not hasattr(args, "schedule") and not hasattr(args, "evaluate")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    args = argparse.Namespace(lr=0.03, epochs=200, schedule=[120, 160], cos=False)
    assert moco_epoch_lr(optimizer, 130, args) == step_lr(0.03, 130, [120, 160]) == optimizer.param_groups[0]["lr"]
    assert moco_epoch_lr(optimizer, 130, args, cos=True) == cosine_lr(0.03, 130, 200)


def test_loss_epoch_sums_weighted_losses_and_calls_back_on_print_steps():
    from common.training import TrainBatches, loss_epoch
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    batches = [torch.full((n, 1), 1.0) for n in (2, 3, 1)]
    printed = []

    def step(i, x):
        return (model(x) + i).mean(), x.shape[0]   # loss i (weights stay 0: lr 0)

    def backward_step(loss, opt):
        loss.backward()
        opt.step()

    run = _Run()
    loss_sum, seen = loss_epoch(run, 3, TrainBatches(batches, 0), step, optimizer, backward_step, 2,
                                lambda i, loss, s, n: printed.append((i, float(s), n)), torch.device("cpu"))
    assert run.step == 3 and seen == 6 and float(loss_sum) == 0 * 2 + 1 * 3 + 2 * 1
    assert printed == [(1, 3.0, 5), (2, 5.0, 6)]
