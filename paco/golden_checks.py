"""Golden-fixture checks for PaCo (`python ci/golden.py --method paco tests/golden/paco/*.pt`).

Families (by ``meta['kind']``, falling back to the file name): ``paco_loss`` (loss_*.pt), ``gpaco_loss``
(gpaco_loss_*.pt), ``builder_step`` (builder_step_*.pt), ``shot_acc`` (shot_acc_*.pt). Every key is recomputed
from the fixture's inputs and hyper-parameters with this package's code.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from common.eval import shot_accuracy
from common.golden import UnrecognisedFixture, compare
from paco.losses import PaCoLoss, log_class_prior, paco_loss
from paco.moco.builder import PaCo

F32 = dict(rtol=1e-5, atol=1e-6)
F64 = dict(rtol=1e-9, atol=1e-10)


def _kind(path: str, fixture: dict) -> str:
    kind = (fixture.get("meta") or {}).get("kind")
    if kind:
        return kind
    name = os.path.basename(path)
    for prefix, family in (("gpaco_loss", "gpaco_loss"), ("loss_", "paco_loss"),
                           ("builder_step", "builder_step"), ("shot_acc", "shot_acc")):
        if name.startswith(prefix):
            return family
    raise UnrecognisedFixture(f"unknown PaCo fixture family for {name}")


def _loss_and_grads(t: dict, hp: dict, dtype, gpaco: bool):
    features = t["features"].to(dtype).clone().requires_grad_(True)
    sup_logits = t["sup_logits"].to(dtype).clone().requires_grad_(True)
    labels = t["labels_all"] if "labels_all" in t else torch.cat((t["labels"], t["labels"], t["queue_labels"]))
    with_prior = hp.get("with_prior", True) if gpaco else hp.get("variant", "lt") != "full"
    log_prior = None
    if with_prior:
        counts = t["cls_num_list"] if "cls_num_list" in t else torch.tensor(hp["cls_num_list"])
        log_prior = log_class_prior(counts, dtype=dtype)
    loss, inter = paco_loss(
        features, labels, sup_logits, hp["K"], hp["alpha"], hp.get("beta", 1.0), hp.get("gamma", 1.0),
        hp["temperature"], hp.get("base_temperature"), hp.get("supt", 1.0) or 1.0, log_prior,
        num_anchors=hp.get("anchors") if gpaco else None, smooth=hp.get("smooth", 0.0) or 0.0,
        return_intermediates=True)
    loss.backward()
    return loss, inter, features.grad, sup_logits.grad, log_prior


def check_loss(fixture: dict, gpaco: bool = False) -> list:
    t, hp = fixture["tensors"], fixture["hparams"]
    results = []
    loss, inter, g_feat, g_sup, log_prior = _loss_and_grads(t, hp, torch.float32, gpaco)
    computed = {"loss": loss, "per_anchor_loss": inter["per_anchor_loss"], "grad_features": g_feat,
                "grad_sup_logits": g_sup, "log_prior": log_prior, **inter}
    for key in ("loss", "per_anchor_loss", "grad_features", "grad_sup_logits", "log_prior",
                "anchor_dot_contrast", "logits_max", "pos_weights", "denom_weights", "log_prob"):
        if key in t:
            results.append(compare(key, computed[key], t[key], **F32))
    if any(k.endswith("_f64") for k in t):
        loss, inter, g_feat, g_sup, _ = _loss_and_grads(t, hp, torch.float64, gpaco)
        computed = {"loss_f64": loss, "per_anchor_loss_f64": inter["per_anchor_loss"],
                    "grad_features_f64": g_feat, "grad_sup_logits_f64": g_sup}
        for key, value in computed.items():
            if key in t:
                results.append(compare(key, value, t[key], **F64))
    return results


class _StandInEncoder(nn.Module):
    """The fixture's backbone stand-in: the input is already the pooled feature h (B, f)."""

    def __init__(self, feat_dim: int, num_classes: int):
        super().__init__()
        self.avgpool = nn.Identity()
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(x), 1))


def check_builder_step(fixture: dict) -> list:
    t, hp = fixture["tensors"], fixture["hparams"]
    torch.manual_seed(0)
    model = PaCo(lambda num_classes: _StandInEncoder(hp["feat_dim"], num_classes), dim=hp["moco_dim"], K=hp["K"],
                 m=hp["moco_m"], T=hp["moco_t"], mlp=hp.get("mlp", True), feat_dim=hp["feat_dim"],
                 num_classes=hp["num_classes"],
                 momentum_classifier=any(k.startswith("before.linear_k.") for k in t))
    before = {k[len("before."):]: v for k, v in t.items() if k.startswith("before.")}
    missing, unexpected = model.load_state_dict(before, strict=False)
    if unexpected:
        raise UnrecognisedFixture(f"fixture state has keys the wrapper does not: {unexpected[:5]}")
    model.train()
    features, target, logits_q = model(t["im_q"], t["im_k"], t["labels"])
    counts = t["cls_num_list"].tolist() if "cls_num_list" in t else hp.get("cls_num_list")
    if hp.get("variant") == "full" or hp.get("with_prior") is False:
        counts = None  # the Full-ImageNet loss has no class prior
    criterion = PaCoLoss(alpha=hp["alpha"], beta=hp.get("beta", 1.0), gamma=hp.get("gamma", 1.0),
                         supt=hp.get("supt", 1.0) or 1.0, temperature=hp["moco_t"],
                         base_temperature=hp.get("base_temperature"), K=hp["K"], num_classes=hp["num_classes"],
                         cls_num_list=counts)
    loss = criterion(features, target, logits_q)
    loss.backward()
    results = [compare("features", features, t["features"], **F32),
               compare("target", target, t["target"]),
               compare("logits_q", logits_q, t["logits_q"], **F32),
               compare("loss", loss, t["loss"], **F32)]
    state = model.state_dict()
    for key, expected in t.items():
        if key.startswith("after."):
            results.append(compare(key, state[key[len("after."):]], expected, **F32))
        elif key.startswith("grad."):
            param = dict(model.named_parameters())[key[len("grad."):]]
            results.append(compare(key, param.grad, expected, rtol=1e-4, atol=1e-6))
    return results


def check_shot_acc(fixture: dict) -> list:
    t, hp = fixture["tensors"], fixture["hparams"]
    counts = t["train_counts"] if "train_counts" in t else torch.bincount(t["train_labels"])
    out = shot_accuracy(t["preds"], t["labels"], counts, many_shot_thr=hp.get("many_shot_thr", 100),
                        low_shot_thr=hp.get("low_shot_thr", 20))
    # the original's group means and top-1 went through float32 somewhere (≈1e-8 relative): float32 tolerance
    results = [compare("many_acc", out["many"], t["many_acc"], **F32),
               compare("medium_acc", out["medium"], t["medium_acc"], **F32),
               compare("few_acc", out["few"], t["few_acc"], **F32),
               compare("top1_percent", out["top1"], t["top1_percent"], **F32)]
    if "per_class_acc" in t:
        results.append(compare("per_class_acc", out["per_class_acc"], t["per_class_acc"], **F64))
    if "per_class_acc_classes" in t:
        results.append(compare("per_class_acc_classes", out["classes"], t["per_class_acc_classes"]))
    return results


def check_fixture(path: str, fixture: dict) -> list:
    kind = _kind(path, fixture)
    if kind == "paco_loss":
        return check_loss(fixture)
    if kind == "gpaco_loss":
        return check_loss(fixture, gpaco=True)
    if kind == "builder_step":
        return check_builder_step(fixture)
    if kind == "shot_acc":
        return check_shot_acc(fixture)
    raise UnrecognisedFixture(f"unknown PaCo fixture kind {kind!r} ({os.path.basename(path)})")
