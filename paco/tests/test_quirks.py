"""Quirks of spec §k that can be checked without a training run (the rest are in test_smoke / test_resume)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from common.golden import golden_file
from paco.losses import PaCoLoss, paco_loss
from paco.main_paco import parse_args
from paco.moco.builder import PaCo


class TinyEncoder(nn.Module):
    def __init__(self, num_classes, feat_dim=12):
        super().__init__()
        self.body = nn.Linear(6, feat_dim)
        self.avgpool = nn.Identity()
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, x):
        return self.fc(self.avgpool(torch.relu(self.body(x))))


def test_bool_flags_are_real_switches():  # quirk 8
    args = parse_args("lt", ["--no-mlp", "--no-cos", "--no-aug-plus", "--normalize", "--no-multiprocessing-distributed"])
    assert (args.mlp, args.cos, args.aug_plus, args.normalize, args.multiprocessing_distributed) == \
        (False, False, False, True, False)
    args = parse_args("lt", [])
    assert (args.mlp, args.cos, args.aug_plus, args.normalize, args.multiprocessing_distributed) == \
        (True, True, True, False, True)


def test_defaults_per_entry_point():  # spec §b
    lt, places, cifar, full = (parse_args("lt", []), parse_args("places", []),
                               parse_args("cifar", ["--imb-factor", "0.01", "--alpha", "0.01"]),
                               parse_args("imagenet", []))
    assert (lt.epochs, lt.lr, lt.weight_decay, lt.moco_k, lt.moco_t, lt.num_classes, lt.warmup_epochs) == \
        (400, 0.02, 5e-4, 8192, 0.2, 1000, 10)
    assert (places.epochs, places.weight_decay, places.num_classes, places.warmup_epochs) == (200, 1e-4, 365, 5)
    assert (cifar.arch, cifar.lr, cifar.moco_k, cifar.moco_t, cifar.workers, cifar.print_freq) == \
        ("resnet32", 0.05, 1024, 0.07, 0, 40)
    assert (full.epochs, full.lr, full.weight_decay, full.rand_m, full.num_classes) == (200, 0.04, 1e-4, 10, 1000)


def test_no_mlp_head_and_queue_init():  # quirks 1, 7, 8
    torch.manual_seed(0)
    model = PaCo(TinyEncoder, dim=4, K=16, num_classes=5, feat_dim=12, mlp=False)
    assert isinstance(model.encoder_q.fc, nn.Linear)
    # queue normalised along K (each of the d columns has unit norm), labels random in [0, C)
    assert torch.allclose(model.queue.norm(dim=0), torch.ones(4))
    assert not torch.allclose(model.queue.norm(dim=1), torch.ones(16))
    assert int(model.queue_l.max()) < 5
    mlp = PaCo(TinyEncoder, dim=4, K=16, num_classes=5, feat_dim=12, mlp=True)
    assert isinstance(mlp.encoder_q.fc[1], nn.BatchNorm1d)


def test_loss_is_device_and_dtype_agnostic():  # quirk 26: no hard-coded .to('cuda'); prior from the counts
    crit = PaCoLoss(alpha=0.05, K=8, num_classes=3, cls_num_list=[5, 0, 1]).double()
    assert crit.log_prior.device.type == "cpu" and crit.log_prior.dtype == torch.float64
    assert torch.isclose(crit.log_prior[1], torch.log(torch.tensor(1e-9, dtype=torch.float64)))
    feats = nn.functional.normalize(torch.randn(12, 4, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 1, 0, 1, 2, 0, 1, 2, 0, 0, 1, 2])
    loss = crit(feats, labels, torch.randn(2, 3, dtype=torch.float64))
    assert loss.dtype == torch.float64 and torch.isfinite(loss)


def test_gamma_only_scales_denominator_and_alpha_zero():  # quirk 4 and §f notes
    torch.manual_seed(1)
    feats = nn.functional.normalize(torch.randn(14, 5), dim=1)
    labels = torch.randint(0, 3, (14,))
    logits = torch.randn(3, 3)
    _, inter = paco_loss(feats, labels, logits, 8, alpha=0.0, gamma=0.0, temperature=0.5, return_intermediates=True)
    # gamma = 0 and alpha = 0 → plain softmax cross-entropy over the classifier columns
    ce = nn.functional.cross_entropy(logits, labels[:3], reduction="none")
    assert torch.allclose(inter["per_anchor_loss"], ce, atol=1e-6)


def test_lr_schedules_match_the_originals():  # quirk 9 (CIFAR: 1.1x at epoch 10, drops after 320 / 360), 22
    from argparse import Namespace
    from paco.main_paco import adjust_learning_rate
    data = json.loads(golden_file("paco", "lr_schedules.json").read_text())
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    for name, entry in data.items():
        a = entry["args"]
        args = Namespace(variant="cifar" if "cifar" in name else "lt", lr=a["lr"], epochs=a.get("epochs", 400),
                         warmup_epochs=a.get("warmup_epochs", 10), cos=a.get("cos", True),
                         schedule=a.get("schedule", []))
        ours = [adjust_learning_rate(optimizer, e, args) for e in range(len(entry["lr_per_epoch"]))]
        assert ours == pytest.approx(entry["lr_per_epoch"], rel=1e-12, abs=1e-15), name
