"""Golden-fixture checks for AttentioNCE (called by ``ci/golden.py --method attentionce``).

Family: the original ``AttentioNCE`` loss (``image/main.py`` or ``tiny-Imagenet/main.py``, identical math)
recorded in float64 on given view projections ``z_1 ... z_{V+M}``.  Every recorded key is recomputed with
:func:`attentionce.losses.attentionce_loss` from ``hparams`` (any B, D, T, d_pos, d_neg, numbers of anchor /
positive views), so other configurations are checked the same way.

Tolerances (fixture README): float64 rtol 1e-9 on everything (plus a 1e-12 absolute floor for entries
that are ~0); the float32 path of the same code, fed the float32 cast of ``z_k``: loss rtol 1e-6 against
``loss_fp32``, gradients atol 1e-5 x max|grad|.
"""
from __future__ import annotations

import os
import re

import torch
import torch.nn.functional as F

from common.golden import KeyResult, UnrecognisedFixture, compare
from attentionce.losses import attentionce_loss

RTOL64 = 1e-9
ATOL64 = 1e-12
# keys that are inputs (or index lists), not results
INPUT_KEY = re.compile(r"^(raw_\d+|z_\d+|grad_rows)$")
FILE_NAME = re.compile(r"^(cifar10|cifar100|stl10|tiny|default|limit|sharp|full_\w+)_b\d+")


def _is_attentionce(path: str, fixture: dict) -> bool:
    if not isinstance(fixture, dict) or "tensors" not in fixture:
        return False
    meta = fixture.get("meta") or {}
    source = str(meta.get("source", ""))
    if "AttentioNCE" in source or meta.get("kind") == "attentionce_loss":
        return True
    hparams = fixture.get("hparams") or {}
    by_content = {"d_pos", "d_neg", "temperature"} <= set(hparams) and "z_1" in fixture["tensors"]
    return by_content or (bool(FILE_NAME.match(os.path.basename(path))) and "d_pos" in hparams)


def _views(tensors: dict, prefix: str) -> list[torch.Tensor]:
    count = len([k for k in tensors if re.fullmatch(prefix + r"\d+", k)])
    return [tensors[f"{prefix}{k}"] for k in range(1, count + 1)]


def _loss_and_grads(z: list[torch.Tensor], hp: dict, n_anchor: int, normalise: bool = False):
    leaves = [t.detach().clone().requires_grad_(True) for t in z]
    inputs = [F.normalize(t, dim=1) for t in leaves] if normalise else leaves
    loss, inter = attentionce_loss(torch.stack(inputs[:n_anchor]), torch.stack(inputs[n_anchor:]),
                                   float(hp["temperature"]), float(hp["d_pos"]), float(hp["d_neg"]),
                                   return_intermediates=True)
    grads = torch.autograd.grad(loss, leaves)
    return loss.detach(), {k: v.detach() for k, v in inter.items()}, [g.detach() for g in grads]


def check_fixture(path: str, fixture: dict) -> list[KeyResult]:
    if not _is_attentionce(path, fixture):
        raise UnrecognisedFixture(f"{os.path.basename(path)} is not an AttentioNCE loss fixture "
                                  "(expected meta.source '...AttentioNCE...' and hparams d_pos / d_neg)")
    hp = fixture["hparams"]
    tensors = fixture["tensors"]
    n_anchor = int(hp.get("n_anchor_views", 2))
    z = [t.double() for t in _views(tensors, "z_")]
    if len(z) < n_anchor + 1:
        raise UnrecognisedFixture(f"{path}: needs at least {n_anchor + 1} views z_k, found {len(z)}")
    n_pos = int(hp.get("n_pos_views", len(z) - n_anchor))
    if n_anchor + n_pos != len(z):
        raise UnrecognisedFixture(f"{path}: hparams say {n_anchor}+{n_pos} views, fixture has {len(z)}")

    loss, inter, grads = _loss_and_grads(z, hp, n_anchor)
    expected_hp = {"batch_size": z[0].shape[0], "feature_dim": z[0].shape[1],
                   "n_neg": inter["neg_sim"].shape[1]}
    results = [compare(f"hparams.{k}", v, hp[k]) for k, v in expected_hp.items() if k in hp]

    computed = {"loss": loss, **inter}
    for k in range(len(z)):
        computed[f"grad_z_{k + 1}"] = grads[k]
        computed[f"grad_z_{k + 1}_rownorm"] = grads[k].norm(dim=1)
        if "grad_rows" in tensors:
            computed[f"grad_z_{k + 1}_rows"] = grads[k][tensors["grad_rows"].long()]
    computed["beta_rowmin"] = inter["beta"].min(dim=1).values
    computed["beta_rowmax"] = inter["beta"].max(dim=1).values

    raw = _views(tensors, "raw_")
    if raw:
        # the model normalises; check that z_k is F.normalize(raw_k) and the gradient through it
        _, _, raw_grads = _loss_and_grads([r.double() for r in raw], hp, n_anchor, normalise=True)
        for k, g in enumerate(raw_grads):
            computed[f"grad_raw_{k + 1}"] = g
        for k, r in enumerate(raw):
            results.append(compare(f"z_{k + 1}=normalize(raw_{k + 1})", F.normalize(r.double(), dim=1),
                                   z[k], atol=1e-7, rtol=0, note="raw is float32"))

    for key, expected in tensors.items():
        if INPUT_KEY.match(key) or key == "loss_fp32":
            continue
        if key not in computed:
            results.append(KeyResult(key, float("inf"), float("inf"), False, "key not known to the check"))
            continue
        results.append(compare(key, computed[key], expected, atol=ATOL64, rtol=RTOL64))

    # float32 path of the same code on the float32 cast of the inputs (what training runs)
    if "loss_fp32" in tensors:
        loss32, _, grads32 = _loss_and_grads([t.float() for t in z], hp, n_anchor)
        results.append(compare("loss(float32)", loss32, tensors["loss_fp32"].double(), atol=0, rtol=1e-6,
                               note="vs original float32"))
        for k, g in enumerate(grads32):
            scale = float(grads[k].abs().max())
            results.append(compare(f"grad_z_{k + 1}(float32)", g, grads[k], atol=1e-5 * scale, rtol=0,
                                   note="vs float64"))
    return results
