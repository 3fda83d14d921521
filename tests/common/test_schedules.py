import json
import math

import pytest
import torch

from common.golden import golden_file
from common.schedules import (cosine_lr, cosine_momentum, paco_cifar_lr, paco_lr, set_lr, step_lr,
                              warmup_cosine_lr, warmup_cosine_lr_by_step, warmup_step_lr)


def test_paco_schedules_match_json_exactly():
    data = json.loads(golden_file("paco", "lr_schedules.json").read_text())
    assert len(data) >= 3
    for name, entry in data.items():
        a = entry["args"]
        if "cifar" in name:
            got = [paco_cifar_lr(a["lr"], e, a["warmup_epochs"]) for e in range(a["epochs"])]
        else:
            got = [paco_lr(a["lr"], e, a["epochs"], a["warmup_epochs"], cos=a["cos"], milestones=a["schedule"])
                   for e in range(a["epochs"])]
        assert got == entry["lr_per_epoch"], name


def test_ascl_per_iteration_schedule():
    f = torch.load(golden_file("ascl", "lr_schedule_small.pt"), weights_only=False)
    for i, c in enumerate(f["hparams"]["configs"]):
        W, E, base, I = c["warm_up"], c["epochs"], c["base_lr"], c["iters_per_epoch"]
        got = torch.tensor([[warmup_cosine_lr_by_step(base, e * I + it, E * I, W * I) for it in range(I)]
                            for e in range(E)], dtype=torch.float64)
        torch.testing.assert_close(got, f["tensors"][f"lr_{i}"], rtol=1e-12, atol=1e-15)
        assert got[0, 0] == 0.0  # the very first step uses lr 0 (ASCL)


def test_cacr_schedules():
    f = torch.load(golden_file("cacr", "schedules_readme.pt"), weights_only=False)
    h, t = f["hparams"], f["tensors"]

    def check(name, values):
        torch.testing.assert_close(torch.tensor(values, dtype=torch.float64), t[name].double(),
                                   rtol=1e-12, atol=1e-15, msg=name)

    for i in (0, 1):
        p = h[f"pretrain_lr_{i}"]
        base = p["lr"] * p["batch_size"] / 256
        check(f"pretrain_lr_{i}", [warmup_cosine_lr(base, e, p["epochs"], p["warmup_epochs"])
                                   for e in t[f"pretrain_lr_{i}_epoch"].tolist()])
        p = h[f"pretrain_m_{i}"]
        check(f"pretrain_m_{i}", [cosine_momentum(p["moco_m"], e, p["epochs"])
                                  for e in t[f"pretrain_m_{i}_epoch"].tolist()])
    p = h["lincls_lr_0"]
    check("lincls_lr_0", [cosine_lr(p["lr"] * p["batch_size"] / 256, e, p["epochs"]) for e in range(p["epochs"])])
    for name in ("large_lr_0", "large_lr_1"):
        p = h[name]
        check(name, [cosine_lr(p["lr"], e, p["epochs"]) if p["cos"] else step_lr(p["lr"], e, p["schedule"])
                     for e in range(p["epochs"])])
    p = h["large_lincls_lr_0"]
    check("large_lincls_lr_0", [step_lr(p["lr"], e, p["schedule"]) for e in range(p["epochs"])])
    for name in ("small_lr_0", "small_lr_1"):
        p = h[name]
        lr = p["lr"] if p["lr"] is not None else 0.12 * p["Ns"] / 256
        check(name, [step_lr(lr, e, p["milestones"], p["gamma"]) for e in range(p["epochs"])])


def test_general_properties():
    assert cosine_lr(1.0, 0, 10) == 1.0 and abs(cosine_lr(1.0, 10, 10)) < 1e-12
    assert cosine_lr(1.0, 5, 10, min_lr=0.2) == pytest.approx(0.6)
    assert step_lr(1.0, 119, [120, 160]) == 1.0
    assert step_lr(1.0, 120, [120, 160]) == pytest.approx(0.1)
    assert step_lr(1.0, 120, [120, 160], strict=True) == 1.0
    assert step_lr(1.0, 200, [120, 160]) == pytest.approx(0.01)
    # warm-up reaches the base lr at the boundary and the cosine is continuous there
    assert warmup_cosine_lr(1.0, 0, 100, 10) == 0.0
    assert warmup_cosine_lr(1.0, 9.999, 100, 10) == pytest.approx(1.0, abs=1e-3)
    assert warmup_cosine_lr(1.0, 10, 100, 10) == 1.0
    assert warmup_cosine_lr(1.0, 5, 100, 0) == pytest.approx(cosine_lr(1.0, 5, 100))
    assert warmup_step_lr(1.0, 2, 5, [10], warmup_offset=1) == pytest.approx(0.6)
    assert warmup_step_lr(1.0, 12, 5, [10]) == pytest.approx(0.1)
    # PaCo CIFAR: epoch w runs at 1.1x base (reproduced quirk), drops after 320 and 360
    assert paco_cifar_lr(0.1, 10) == pytest.approx(0.11)
    assert paco_cifar_lr(0.1, 320) == 0.1 and paco_cifar_lr(0.1, 321) == pytest.approx(0.01)
    assert paco_cifar_lr(0.1, 361) == pytest.approx(0.001)
    assert paco_lr(0.1, 0, 100, 5) == pytest.approx(0.02)
    assert paco_lr(0.1, 50, 100, 5, cos=False, milestones=[40, 60]) == pytest.approx(0.01)
    assert cosine_momentum(0.99, 0, 100) == pytest.approx(0.99) and cosine_momentum(0.99, 100, 100) == 1.0
    opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]},
                           {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
    assert all(math.isfinite(warmup_cosine_lr_by_step(0.03, s, 100, 20)) for s in range(101))


def test_paco_cifar_lr_without_warmup():
    from common.schedules import paco_cifar_lr
    assert paco_cifar_lr(0.1, 0, warmup_epochs=0) == 0.1
    assert abs(paco_cifar_lr(0.1, 321, warmup_epochs=0) - 0.01) < 1e-12
