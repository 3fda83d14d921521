"""Golden-fixture checks for CACR (``python ci/golden.py --method cacr tests/golden/cacr/*.pt``).

Families (recognised by ``hparams['source']`` and the file name, see ``tests/golden/cacr/README.md``):
small-scale loss, queue-MoCo, MoCo-v3 CACR, schedules, LARS, weighted kNN, imbalanced CIFAR subsets.
Every value is recomputed from the stored inputs with this package's code; nothing is special-cased per file.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn as nn

from common.golden import UnrecognisedFixture, compare

F64 = dict(atol=1e-12, rtol=1e-9)


def _tolerances(fixture, tensors):
    """True for compact (float32) files: loss rtol 1e-5, gradients atol 1e-5·max|grad| (README); float64 files
    are compared at rtol 1e-9."""
    return bool(fixture.get("meta", {}).get("compact", False))


def _cmp(results, key, actual, expected, compact, kind="value"):
    if not compact:
        results.append(compare(key, actual, expected, **F64))
    elif kind == "loss":
        results.append(compare(key, actual, expected, atol=0.0, rtol=1e-5))
    else:
        expected = torch.as_tensor(expected)
        scale = float(expected.abs().max()) if expected.numel() else 1.0
        results.append(compare(key, actual, expected, atol=1e-5 * max(scale, 1e-12), rtol=0.0))


# --------------------------------------------------------------------------------------------- small scale
def check_small(fixture):
    from cacr.small_scale_experiments.losses import (contrastive_attraction, contrastive_repulsion, our_loss1,
                                                    our_loss2, view_pairs)
    h, t = fixture["hparams"], fixture["tensors"]
    compact = _tolerances(fixture, t)
    n_views = h["n_views"]
    dtype = torch.float32 if compact else torch.float64
    z = torch.stack([t[f"z_{v}"] for v in range(n_views)]).to(dtype).requires_grad_(True)
    kw1 = dict(alpha=h["alpha"], tau_pos=h["tau_pos"], choice=h["choice"])
    kw2 = dict(beta=h["beta"], tau_neg=h["tau_neg"], choice=h["choice"], with_debiased=h["with_debiased"],
               tau_plus=h["tau_plus"], cost_type=h.get("cost", "euclidean"), rbf_t=h.get("rbf_t", 2.0))
    loss1, w1, d1 = contrastive_attraction(z, **kw1)
    loss2, w2, d2 = contrastive_repulsion(z, **kw2)
    loss = loss1 + loss2
    grad, = torch.autograd.grad(loss, z, retain_graph=True)
    res = []
    _cmp(res, "loss1", loss1, t["loss1"], compact, "loss")
    _cmp(res, "loss2", loss2, t["loss2"], compact, "loss")
    _cmp(res, "loss", loss, t["loss"], compact, "loss")
    for v in range(n_views):
        _cmp(res, f"grad_z_{v}", grad[v], t[f"grad_z_{v}"], compact)
    if "grad1_z_0" in t:
        g1, = torch.autograd.grad(loss1, z, retain_graph=True)
        g2, = torch.autograd.grad(loss2, z)
        for v in range(n_views):
            _cmp(res, f"grad1_z_{v}", g1[v], t[f"grad1_z_{v}"], compact)
            _cmp(res, f"grad2_z_{v}", g2[v], t[f"grad2_z_{v}"], compact)
    # the original API's second return values
    views = [z[v].detach() for v in range(n_views)]
    _, w1_last = our_loss1(views, **kw1)
    _, w2_last = our_loss2(views, h["beta"], h["tau_neg"], h["tau_plus"], h["choice"], h["with_debiased"],
                           kw2["cost_type"], kw2["rbf_t"])
    _cmp(res, "weights1_last", w1_last, t["weights1_last"], compact)
    if "weights2_last" in t:
        _cmp(res, "weights2_last", w2_last, t["weights2_last"], compact)
    for key, value in (("d1", d1), ("w1", w1), ("d2", d2), ("w2", w2)):
        if key in t:
            _cmp(res, key, value, t[key], compact)
    if "pairs" in t:
        res.append(compare("pairs", view_pairs(n_views), t["pairs"]))
    return res


# --------------------------------------------------------------------------------------------- queue MoCo
def check_moco(fixture):
    from cacr.large_scale_shift_experiments.imagenet.ours.builder import MoCo, cacr_queue_loss, cacr_queue_terms
    h, t = fixture["hparams"], fixture["tensors"]
    compact = _tolerances(fixture, t)
    dtype = torch.float32 if compact else torch.float64
    n_views, dim, K = h["n_views"], h["dim"], h["K"]
    hp = dict(alpha=h["alpha"], beta=h["beta"], tau_pos=h["tau_pos"], tau_neg=h["tau_neg"],
              intra_batch=h["unif_intra_batch"])
    res = []
    queue_before = t["queue_before"].to(dtype)

    # loss level: stored q / k / queue
    q = torch.stack([t[f"q_{v}"] for v in range(n_views)]).to(dtype).requires_grad_(True)
    k = torch.stack([t[f"k_{v}"] for v in range(n_views)]).to(dtype)
    for fixed in (False, True):
        loss1, loss2 = cacr_queue_loss(q, k, queue_before, per_view_queue=fixed, **hp)
        grad, = torch.autograd.grad(loss1 + loss2, q)
        sfx = "_fixed" if fixed else ""
        _cmp(res, "loss1" + sfx, loss1, t["loss1" + sfx], compact, "loss")
        _cmp(res, "loss2" + sfx, loss2, t["loss2" + sfx], compact, "loss")
        if not fixed:
            _cmp(res, "loss", loss1 + loss2, t["loss"], compact, "loss")
            info = cacr_queue_terms(q, k, queue_before, h["tau_pos"], h["tau_neg"], h["unif_intra_batch"], fixed)
            for key in ("d1", "w1", "d_queue", "w2"):
                if key in t:
                    _cmp(res, key, info[key], t[key], compact)
        for v in range(n_views):
            if f"grad_q{sfx}_{v}" in t:
                _cmp(res, f"grad_q{sfx}_{v}", grad[v], t[f"grad_q{sfx}_{v}"], compact)

    # end to end: linear stand-in encoders through MoCo.forward (momentum update, keys, loss, enqueue)
    din = h["encoder_in_dim"]
    model = MoCo(lambda num_classes: nn.Linear(din, num_classes, bias=False), dim=dim, K=K, m=h["moco_m"],
                 Ny=n_views - 1, tau_pos=h["tau_pos"], tau_neg=h["tau_neg"], alpha=h["alpha"], beta=h["beta"],
                 unif_intra_batch=h["unif_intra_batch"]).to(dtype)
    with torch.no_grad():
        model.encoder_q.weight.copy_(t["W_q"])
        model.encoder_k.weight.copy_(t["W_k_before"])
        model.queue.copy_(queue_before)
        model.queue_ptr.fill_(h["queue_ptr_before"])
    xs = [t[f"x_{v}"].to(dtype) for v in range(n_views)]
    losses, info = model(xs, epoch=0, return_info=True)
    total = losses.loss1 + losses.loss2
    total.backward()
    _cmp(res, "forward.loss", total, t["loss"], compact, "loss")
    w_k_after = t["W_k_after"] if "W_k_after" in t else h["moco_m"] * t["W_k_before"].double() + (1 - h["moco_m"]) * t["W_q"].double()
    _cmp(res, "W_k_after", model.encoder_k.weight, w_k_after, compact)
    for v in range(n_views):
        _cmp(res, f"forward.q_{v}", info["q"][v], t[f"q_{v}"], compact)
        _cmp(res, f"forward.k_{v}", info["k"][v], t[f"k_{v}"], compact)
    if "queue_after" in t:
        queue_after = t["queue_after"]
    else:
        ptr, b = h["queue_ptr_before"], h["batch_size"]
        queue_after = t["queue_before"].clone()
        queue_after[:, ptr:ptr + b] = t[f"k_{n_views - 1}"].t()
    _cmp(res, "queue_after", model.queue, queue_after, compact)
    res.append(compare("queue_ptr_after", int(model.queue_ptr), h["queue_ptr_after"]))
    if "grad_W_q" in t:
        _cmp(res, "grad_W_q", model.encoder_q.weight.grad, t["grad_W_q"], compact)
    return res


# --------------------------------------------------------------------------------------------- MoCo-v3 CACR
def check_v3(fixture):
    from cacr.imagenet_pretraining.moco.builder import LOSSES, MoCo
    h, t = fixture["hparams"], fixture["tensors"]
    compact = _tolerances(fixture, t)
    dtype = torch.float32 if compact else torch.float64
    cost, T = h["cost"], h["T"]
    lossfn = LOSSES[cost]
    res = []
    n_queries = h.get("n_queries", 2)
    len_k = h.get("len_k", 2)
    q = [t[f"q_{i}"].to(dtype).requires_grad_(True) for i in range(n_queries)]
    terms = []
    for i in range(len_k):
        term, p = lossfn([qj for j, qj in enumerate(q) if j != i], t[f"k_{i}"].to(dtype), T, return_weights=True)
        terms.append(term)
        if f"term_{i}" in t:
            _cmp(res, f"term_{i}", term, t[f"term_{i}"], compact, "loss")
        if f"p_{i}" in t:
            _cmp(res, f"p_{i}", p, t[f"p_{i}"], compact)
    loss = torch.stack(terms).mean()
    _cmp(res, "loss", loss, t["loss"], compact, "loss")
    grads = torch.autograd.grad(loss, q)
    for i in range(n_queries):
        if f"grad_q_{i}" in t:
            _cmp(res, f"grad_q_{i}", grads[i], t[f"grad_q_{i}"], compact)

    if "W_q" in t:  # end to end through MoCo.forward with linear stand-ins and an identity predictor
        din, dim = t["W_q"].shape[1], t["W_q"].shape[0]
        model = MoCo(nn.Linear(din, dim, bias=False), nn.Linear(din, dim, bias=False), nn.Identity(), T).to(dtype)
        with torch.no_grad():
            model.base_encoder.weight.copy_(t["W_q"])
            model.momentum_encoder.weight.copy_(t["W_k_before"])
        xs = [t[f"x_{i}"].to(dtype) for i in range(n_queries)]
        loss = model(xs[0], xs[1], h["moco_m"], xs[2:] or None, cost, h.get("use_full_mode", False))
        loss.backward()
        _cmp(res, "forward.loss", loss, t["loss"], compact, "loss")
        _cmp(res, "W_k_after", model.momentum_encoder.weight, t["W_k_after"], compact)
        _cmp(res, "grad_W_q", model.base_encoder.weight.grad, t["grad_W_q"], compact)
    return res


# --------------------------------------------------------------------------------------------- LARS
def check_lars(fixture):
    from cacr.imagenet_pretraining.moco.optimizer import LARS
    h, t = fixture["hparams"], fixture["tensors"]
    names = sorted({k.split("_")[0] for k in t if not k.startswith("g")})
    params = {n: nn.Parameter(t[f"{n}_0"].clone()) for n in names}
    opt = LARS(list(params.values()), lr=0.0, weight_decay=h["weight_decay"], momentum=h["momentum"],
               trust_coefficient=h.get("trust_coefficient", 0.001))
    res = []
    for s, lr in enumerate(h["lr_per_step"]):
        for g in opt.param_groups:
            g["lr"] = lr
        for n, p in params.items():
            p.grad = t[f"g{n}_{s}"].clone()
        opt.step()
        for n, p in params.items():
            res.append(compare(f"{n}_{s + 1}", p.detach(), t[f"{n}_{s + 1}"], **F64))
    return res


# --------------------------------------------------------------------------------------------- schedules
def _multistep_values(lr, milestones, gamma, epochs):
    """The lr used during each epoch by the small-scale loops (torch MultiStepLR stepped once per epoch)."""
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma)
    values = []
    for _ in range(epochs):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return values


def check_schedules(fixture):
    from cacr.imagenet_pretraining import main_lincls, main_pretrain
    from common.schedules import moco_epoch_lr   # the per-epoch rule of large_scale_shift_experiments/*/main_ours.py
    h, t = fixture["hparams"], fixture["tensors"]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.0)
    res = []
    for key, cfg in h.items():
        if not isinstance(cfg, dict) or key not in t:
            continue
        if key.startswith("pretrain_lr"):
            args = argparse.Namespace(lr=cfg["lr"] * cfg["batch_size"] / 256, epochs=cfg["epochs"],
                                      warmup_epochs=cfg["warmup_epochs"])
            values = [main_pretrain.adjust_learning_rate(opt, float(e), args) for e in t[f"{key}_epoch"]]
        elif key.startswith("pretrain_m"):
            args = argparse.Namespace(moco_m=cfg["moco_m"], epochs=cfg["epochs"])
            values = [main_pretrain.adjust_moco_momentum(float(e), args) for e in t[f"{key}_epoch"]]
        elif key.startswith("lincls_lr"):
            args = argparse.Namespace(variant="v3", lr=cfg["lr"] * cfg["batch_size"] / 256, epochs=cfg["epochs"])
            values = [main_lincls.adjust_learning_rate(opt, e, args) for e in range(cfg["epochs"])]
        elif key.startswith("large_lincls_lr"):
            args = argparse.Namespace(variant="large", lr=cfg["lr"], epochs=cfg["epochs"], schedule=cfg["schedule"])
            values = [main_lincls.adjust_learning_rate(opt, e, args) for e in range(cfg["epochs"])]
        elif key.startswith("large_lr"):
            args = argparse.Namespace(lr=cfg["lr"], epochs=cfg["epochs"], cos=cfg["cos"], schedule=cfg["schedule"])
            values = [moco_epoch_lr(opt, e, args) for e in range(cfg["epochs"])]
        elif key.startswith("small_lr"):
            lr = cfg["lr"] if cfg["lr"] is not None else 0.12 * cfg["Ns"] / 256
            values = _multistep_values(lr, cfg["milestones"], cfg["gamma"], cfg["epochs"])
        else:
            raise UnrecognisedFixture(f"schedule {key!r}")
        res.append(compare(key, torch.tensor(values, dtype=torch.float64), t[key], **F64))
    return res


# --------------------------------------------------------------------------------------------- weighted kNN
def check_knn(fixture):
    from common.eval import knn_accuracy   # what imagenet_pretraining/main_knn.py computes
    h, t = fixture["hparams"], fixture["tensors"]
    res = []
    for k in h["ks"]:
        top1, top5 = knn_accuracy(t["test_features"], t["test_labels"], t["train_features"], t["train_labels"],
                                  h["num_classes"], k, h["T"])
        res.append(compare(f"top1_k{k}", top1, t[f"top1_k{k}"], **F64))
        res.append(compare(f"top5_k{k}", top5, t[f"top5_k{k}"], **F64))
    return res


# --------------------------------------------------------------------------------------------- dispatch
def check_fixture(path: str, fixture: dict):
    source = str(fixture.get("hparams", {}).get("source", ""))
    name = os.path.basename(path)
    if "small_scale_experiments/losses" in source or name.startswith("small_"):
        return check_small(fixture)
    if "ours/builder.py" in source or name.startswith("moco_"):
        return check_moco(fixture)
    if "imagenet_pretraining/moco/builder.py" in source or name.startswith("v3_"):
        return check_v3(fixture)
    if "optimizer.py::LARS" in source or name.startswith("lars"):
        return check_lars(fixture)
    if name.startswith("schedules"):
        return check_schedules(fixture)
    if "knn_classifier" in source or name.startswith("knn"):
        return check_knn(fixture)
    if "Imbalanced_CIFAR" in source or name.startswith("imbalance"):
        return check_imbalance(fixture)
    raise UnrecognisedFixture(f"{name}: source {source!r}")


# --------------------------------------------------------------------------------------------- imbalanced CIFAR
def check_imbalance(fixture):
    from common.data.imbalance import cacr_imbalanced_indices
    h, t = fixture["hparams"], fixture["tensors"]
    dataset = "cifar100" if h["n_classes"] == 100 else "cifar10"
    targets = t["targets"].long()
    idx = torch.as_tensor(cacr_imbalanced_indices(targets.numpy(), dataset))
    return [compare("selected_indices", idx, t["selected_indices"].long()),
            compare("selected_targets", targets[idx], t["selected_targets"].long()),
            compare("class_counts", torch.bincount(targets[idx], minlength=h["n_classes"]), t["class_counts"].long())]
