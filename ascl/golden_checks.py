"""Golden-fixture checks for ASCL (``python ci/golden.py --method ascl tests/golden/ascl/*.pt``).

Every family recomputes its keys from the fixture's inputs and hparams with this repository's code:
``moco_loss`` / ``moco_sequence`` / ``byol_loss`` → :class:`ascl.losses.ASCLLoss`;
``imagenet_builder`` → :class:`ascl.imagenet_builder.MoCo` with identity encoders;
``split_batchnorm`` / ``knn_predict`` / ``lr_schedule`` → the shared implementations in ``common``.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.golden import UnrecognisedFixture, compare

ATOL, RTOL = 1e-5, 1e-4


def _family(path: str, fixture: dict) -> str:
    hp = fixture.get("hparams", {})
    kind = hp.get("kind")
    if kind:
        return kind
    source = str(hp.get("source", ""))
    name = os.path.basename(path)
    if "builder" in source or name.startswith("imagenet_builder"):
        return "imagenet_builder"
    if "SplitBatchNorm" in source or name.startswith("split_batchnorm"):
        return "split_batchnorm"
    if "knn" in source or name.startswith("knn"):
        return "knn_predict"
    if "learning_rate" in source or name.startswith("lr_schedule"):
        return "lr_schedule"
    if "byol" in source or name.startswith("byol"):
        return "byol_loss"
    if name.startswith("moco") and "sequence" in name:
        return "moco_sequence"
    if "moco" in source or name.startswith("moco"):
        return "moco_loss"
    raise UnrecognisedFixture(f"{name}: no kind/source this check knows")


def _cmp(results, expected: dict, key: str, actual, **kw):
    if key in expected:
        results.append(compare(key, actual, expected[key], atol=kw.get("atol", ATOL), rtol=kw.get("rtol", RTOL)))


def _loss_module(hp: dict, t: dict, model: str):
    from ascl.losses import ASCLLoss
    queue = t["queue"]
    dim, size = queue.shape
    module = ASCLLoss(dim=dim, mem_size=size, T1=hp.get("T1", 0.1), T2=hp.get("T2", 0.05),
                      type=hp.get("type", "ascl"), nn_num=hp.get("nn_num", 1), model=model,
                      keep_intermediates=True)
    module.queue.copy_(queue)
    module.labels.copy_(t["label_buffer"])
    module.queue_ptr.fill_(int(t["queue_ptr"]))
    return module


def _queue_keys(results, t, module, suffix=""):
    _cmp(results, t, "queue_after" + suffix, module.queue)
    _cmp(results, t, "queue_ptr_after" + suffix, module.queue_ptr[0])
    _cmp(results, t, "label_buffer_after" + suffix, module.labels)


def _step(hp: dict, t: dict, model: str):
    """One recorded step: the normalised raw query (gradients of both kept, the fixture records them) and key through
    the loss, then backward. Returns (module, q_raw, q, k, output)."""
    module = _loss_module(hp, t, model)
    q_raw = t["q_raw"].clone().requires_grad_(True)
    q = F.normalize(q_raw, dim=1)
    q.retain_grad()
    k = F.normalize(t["k_raw"], dim=1)
    out = module(q, k, t["targets"])
    if out.logits is not None:  # the student logits of MoCo (BYOL has none)
        out.logits.retain_grad()
    out.loss.backward()
    return module, q_raw, q, k, out


def check_moco_loss(hp: dict, t: dict) -> list:
    module, q_raw, q, k, out = _step(hp, t, "moco")
    results = []
    for key, value in (("q", q), ("k", k), ("logits_pd", out.logits_pd), ("p", out.p),
                       ("entropy", out.entropy), ("confidence", out.confidence),
                       ("neighbor_weights", out.neighbor_weights), ("soft_labels", out.soft_labels),
                       ("logits", out.logits), ("loss", out.loss), ("grad_logits", out.logits.grad),
                       ("grad_q", q.grad), ("grad_q_raw", q_raw.grad)):
        if value is not None:
            _cmp(results, t, key, value)
    _queue_keys(results, t, module)
    return results


def check_moco_sequence(hp: dict, t: dict) -> list:
    module = _loss_module(hp, t, "moco")
    results = []
    losses, grads, soft, queues, ptrs, labels = [], [], [], [], [], []
    for step in range(t["q_raw"].shape[0]):
        q_raw = t["q_raw"][step].clone().requires_grad_(True)
        out = module(F.normalize(q_raw, dim=1), F.normalize(t["k_raw"][step], dim=1), t["targets"][step])
        out.loss.backward()
        losses.append(out.loss.detach())
        grads.append(q_raw.grad)
        soft.append(out.soft_labels)
        queues.append(module.queue.clone())
        ptrs.append(module.queue_ptr[0].clone())
        labels.append(module.labels.clone())
    for key, values in (("loss", losses), ("grad_q_raw", grads), ("soft_labels", soft), ("queue_after", queues),
                        ("queue_ptr_after", ptrs), ("label_buffer_after", labels)):
        _cmp(results, t, key, torch.stack(values))
    return results


def check_byol_loss(hp: dict, t: dict) -> list:
    module, q_raw, hq, k, out = _step(hp, t, "byol")
    results = []
    for key, value in (("hq", hq), ("k", k), ("logits_pd", out.logits_pd), ("entropy", out.entropy),
                       ("confidence", out.confidence), ("neighbor_weights", out.neighbor_weights),
                       ("soft_labels", out.soft_labels), ("loss_per_sample", out.loss_per_sample),
                       ("loss", out.loss), ("grad_hq", hq.grad), ("grad_q_raw", q_raw.grad)):
        if value is not None and not (hp.get("type") != "ascl" and key in ("soft_labels", "neighbor_weights")):
            _cmp(results, t, key, value)
    _queue_keys(results, t, module)
    return results


class _IdentityEncoder(nn.Module):
    """Stands in for ``base_encoder(num_classes=dim)``: the 'images' are already the projector outputs."""

    def __init__(self, num_classes: int = 128):
        super().__init__()

    def forward(self, x):
        return x


def check_imagenet_builder(hp: dict, t: dict) -> list:
    from ascl.imagenet_builder import MoCo
    from ascl.losses import moco_ascl_loss
    queue = t["queue"]
    dim, size = queue.shape
    model = MoCo(_IdentityEncoder, dim=dim, K=size, m=hp.get("m", 0.999), T1=hp.get("T1", 0.1),
                 T2=hp.get("T2", 0.05), mlp=False)
    model.queue.copy_(queue)
    model.labels.copy_(t["label_buffer"])
    model.queue_ptr.fill_(int(t["queue_ptr"]))
    q_raw = t["q_raw"].clone().requires_grad_(True)
    logits, soft_labels, delta_mean, max_weight_mean = model(q_raw, t["k_raw"].clone(), t["targets"])
    logits.retain_grad()
    loss = -(soft_labels * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss.backward()
    results = []
    for key, value in (("logits", logits), ("soft_labels", soft_labels), ("delta_mean", delta_mean),
                       ("max_weight_mean", max_weight_mean), ("loss", loss), ("grad_logits", logits.grad),
                       ("grad_q_raw", q_raw.grad), ("queue_after", model.queue),
                       ("queue_ptr_after", model.queue_ptr[0]), ("label_buffer_after", model.labels)):
        _cmp(results, t, key, value)
    # the builder's intermediate relabeling tensors, from the same pure function it uses
    detail = moco_ascl_loss(F.normalize(t["q_raw"], dim=1), F.normalize(t["k_raw"], dim=1), queue,
                            hp.get("T1", 0.1), hp.get("T2", 0.05), "ascl", model.nn_num)
    for key in ("logits_pd", "entropy", "confidence", "neighbor_weights"):
        _cmp(results, t, key, getattr(detail, key))
    return results


def check_split_batchnorm(hp: dict, t: dict) -> list:
    from common.backbones import SplitBatchNorm
    bn = SplitBatchNorm(hp.get("num_features", t["x"].shape[1]), hp["num_splits"])
    with torch.no_grad():
        bn.weight.copy_(t["weight"])
        bn.bias.copy_(t["bias"])
        bn.running_mean.copy_(t["running_mean"])
        bn.running_var.copy_(t["running_var"])
    bn.train()
    with torch.no_grad():
        y_train = bn(t["x"])
    results = [compare("y_train", y_train, t["y_train"]),
               compare("running_mean_after", bn.running_mean, t["running_mean_after"]),
               compare("running_var_after", bn.running_var, t["running_var_after"])]
    _cmp(results, t, "num_batches_tracked_after", bn.num_batches_tracked)
    bn.eval()
    with torch.no_grad():
        _cmp(results, t, "y_eval", bn(t["x_eval"]))
    return results


def check_knn(hp: dict, t: dict) -> list:
    from common.eval import weighted_knn_predict
    pred_scores, pred_labels = weighted_knn_predict(t["feature"], t["feature_bank"], t["feature_labels"],
                                                    hp["classes"], hp["knn_k"], hp["knn_t"],
                                                    bank_is_transposed=True)
    top1 = pred_labels[:, 0]
    results = [compare("pred_scores", pred_scores, t["pred_scores"]),
               compare("pred_top1", top1, t["pred_top1"]),
               compare("top1_correct", (top1 == t["test_labels"]).sum(), t["top1_correct"])]
    if "pred_labels" in t:
        # the order among exactly tied scores is unspecified: compare the scores in ranked order instead
        results.append(compare("pred_labels (ranked scores)", pred_scores.gather(1, pred_labels),
                               t["pred_scores"].gather(1, t["pred_labels"])))
    return results


def check_lr_schedule(hp: dict, t: dict) -> list:
    from ascl.utils import adjust_learning_rate_value
    results = []
    for i, cfg in enumerate(hp["configs"]):
        key = f"lr_{i}"
        if key not in t:
            continue
        epochs, iters = cfg["epochs"], cfg["iters_per_epoch"]
        lrs = torch.tensor([[adjust_learning_rate_value(cfg["base_lr"], epoch, it, iters, cfg["warm_up"], epochs)
                             for it in range(iters)] for epoch in range(epochs)], dtype=torch.float64)
        results.append(compare(key, lrs, t[key], atol=1e-12, rtol=1e-9))
    return results


CHECKS = {
    "moco_loss": check_moco_loss,
    "moco_sequence": check_moco_sequence,
    "byol_loss": check_byol_loss,
    "imagenet_builder": check_imagenet_builder,
    "split_batchnorm": check_split_batchnorm,
    "knn_predict": check_knn,
    "lr_schedule": check_lr_schedule,
}


def check_fixture(path: str, fixture: dict) -> list:
    family = _family(path, fixture)
    if family not in CHECKS:
        raise UnrecognisedFixture(f"{os.path.basename(path)}: unknown kind {family!r}")
    torch.manual_seed(0)  # shuffle-BN permutations in the builder; a no-op with identity encoders
    return CHECKS[family](fixture.get("hparams", {}), fixture["tensors"])
