"""Golden-fixture checks for MCL (``python ci/golden.py --method mcl tests/golden/mcl/*.pt``).

Families (``meta['kind']``, falling back to the file name): ``cifar_sup_mcl``, ``imagenet_sup_mcl_memory``,
``moco_mcl``, ``mperclass_sampler``. Every key is recomputed in float64 from the fixture's inputs and
hyper-parameters with this repository's loss / sampler code.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from common.golden import UnrecognisedFixture, compare
from mcl.dataset.class_sampler import MPerClassSampler
from mcl.losses import cifar_sup_mcl_loss as cifar_loss
from mcl.losses import imagenet_sup_mcl_loss as imagenet_loss
from mcl.losses.kd import logit_distillation
from mcl.moco.losses import dequeue_and_enqueue, moco_mcl_loss

RTOL, ATOL = 1e-8, 1e-10  # README tolerance for a float64 implementation
TERMS = ("vcl", "soft_vcl", "icl", "soft_icl")


def _kind(path: str, fixture: dict) -> str:
    kind = (fixture.get("meta") or {}).get("kind")
    if kind:
        return kind
    name = os.path.basename(path)
    for prefix, family in (("cifar_", "cifar_sup_mcl"), ("imagenet_", "imagenet_sup_mcl_memory"),
                           ("moco_", "moco_mcl"), ("sampler_", "mperclass_sampler")):
        if name.startswith(prefix):
            return family
    raise UnrecognisedFixture(f"no kind in meta and unknown file name {name}")


def _cmp(results, tensors, key, actual, atol=ATOL, rtol=RTOL):
    if key in tensors:
        results.append(compare(key, actual, tensors[key], atol=atol, rtol=rtol))


def _heads(tensors, number_net, flatten):
    heads = []
    for i in range(number_net):
        w1, w2 = tensors["head_W1"][i], tensors["head_W2"][i]
        head = cifar_loss.Embed(w1.shape[1], w1.shape[0], flatten=flatten).double()
        with torch.no_grad():
            head.proj_head[0].weight.copy_(w1)
            head.proj_head[0].bias.copy_(tensors["head_b1"][i])
            head.proj_head[2].weight.copy_(w2)
            head.proj_head[2].bias.copy_(tensors["head_b2"][i])
        heads.append(head)
    return torch.nn.ModuleList(heads)


def _supervised(tensors, hp, kind):
    """Shared by the CIFAR (in-batch) and ImageNet (memory-bank) families: heads → z → four losses →
    train-step composition (f.3) → gradients."""
    results = []
    number_net = hp["number_net"]
    memory_kind = kind == "imagenet_sup_mcl_memory"
    heads = _heads(tensors, number_net, flatten=memory_kind)
    feat = tensors["feat"].clone().requires_grad_(True)
    logits = tensors["logits"].clone().requires_grad_(True)
    head_input = feat[..., None, None] if hp.get("feat_4d") else feat
    z = torch.stack([heads[i](head_input[i]) for i in range(number_net)])
    _cmp(results, tensors, "z", z)

    if memory_kind:
        memory = tensors["memory_before"].clone()
        pos_idx, neg_idx = tensors["pos_idx"], tensors["neg_idx"]
        targets = tensors.get("targets", tensors["labels"])

        def losses_of(emb):
            return imagenet_loss.memory_mcl_losses(emb, memory, pos_idx, neg_idx, hp["tau"], hp["kd_T"])
        rule = "imagenet"
    else:
        labels = tensors["labels"]
        targets = labels

        def losses_of(emb):
            return cifar_loss.sup_mcl_losses(emb, labels, hp["tau"], hp["kd_T"])
        rule = "cifar"

    terms = dict(zip(TERMS, losses_of(z)))
    for name in TERMS:
        _cmp(results, tensors, f"loss_{name}", terms[name])
    weights = dict(vcl=hp["alpha"], soft_vcl=hp["gamma"], icl=hp["beta"], soft_icl=hp["lam"])
    loss_mcl = sum(weights[n] * terms[n] for n in TERMS)
    loss_cls = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.repeat(number_net)) * number_net
    loss_kd = (logit_distillation(logits, hp["kd_T"], rule) if hp["logit_distill"]
               else logits.new_zeros(()))
    loss_total = loss_cls + loss_kd + loss_mcl
    for key, value in (("loss_mcl", loss_mcl), ("loss_cls", loss_cls), ("loss_logit_kd", loss_kd),
                       ("loss_total", loss_total)):
        _cmp(results, tensors, key, value)

    params = [feat, logits] + [p for h in heads for p in h.parameters()]
    grads = torch.autograd.grad(loss_total, params)
    _cmp(results, tensors, "grad_total_feat", grads[0])
    _cmp(results, tensors, "grad_total_logits", grads[1])
    head_grads = grads[2:]
    for k, name in enumerate(("W1", "b1", "W2", "b2")):
        key = f"grad_total_head_{name}"
        if key in tensors:
            _cmp(results, tensors, key, torch.stack([head_grads[4 * i + k] for i in range(number_net)]))

    # per-term gradients with z as a leaf
    z_leaf = z.detach().clone().requires_grad_(True)
    leaf_terms = dict(zip(TERMS, losses_of(z_leaf)))
    for name in TERMS:
        key = f"grad_{name}_z"
        if key in tensors:
            _cmp(results, tensors, key, torch.autograd.grad(leaf_terms[name], z_leaf, retain_graph=True)[0])
    if "grad_mcl_z" in tensors:
        leaf_mcl = sum(weights[n] * leaf_terms[n] for n in TERMS)
        _cmp(results, tensors, "grad_mcl_z", torch.autograd.grad(leaf_mcl, z_leaf)[0])

    if memory_kind and "memory_after" in tensors:
        imagenet_loss.update_memory(memory, z.detach(), pos_idx[:, 0], hp["nce_m"])
        _cmp(results, tensors, "memory_after", memory)
    if memory_kind and "memory_before" in tensors and hp.get("memory_init") == "original":
        # the original init is uniform in ±1/sqrt(D/3) (quirk 19): check the fixture's range is consistent
        bound = 1.0 / np.sqrt(hp["feat_dim"] / 3)
        results.append(compare("memory_before_in_init_range",
                               bool(tensors["memory_before"].abs().max() <= bound), True,
                               note="uniform ±1/sqrt(D/3)"))
    return results


def _moco(tensors, hp):
    results = []
    q_raw = tensors["q_raw"].clone().requires_grad_(True)
    k_raw = tensors["k_raw"]
    q = torch.nn.functional.normalize(q_raw, dim=-1)
    k = torch.nn.functional.normalize(k_raw, dim=-1)
    _cmp(results, tensors, "q", q)
    _cmp(results, tensors, "k", k)
    queue = tensors["queue_before"].clone()
    intra, *terms = moco_mcl_loss(q, k, queue, hp["moco_t"], hp.get("kl_T", 3.0))
    terms = dict(zip(TERMS, terms))
    total = sum(terms.values())
    _cmp(results, tensors, "intra_logits", intra)
    _cmp(results, tensors, "labels", torch.zeros(intra.shape[1], dtype=torch.long))
    for name in TERMS:
        _cmp(results, tensors, f"loss_{name}", terms[name])
        key = f"grad_{name}_q_raw"
        if key in tensors:
            _cmp(results, tensors, key, torch.autograd.grad(terms[name], q_raw, retain_graph=True)[0])
    _cmp(results, tensors, "loss_total", total)
    if "grad_total_q_raw" in tensors:
        _cmp(results, tensors, "grad_total_q_raw", torch.autograd.grad(total, q_raw)[0])
    queue_ptr = torch.full((hp["number_net"],), int(hp["queue_ptr_before"]), dtype=torch.long)
    dequeue_and_enqueue(queue, queue_ptr, k)
    _cmp(results, tensors, "queue_after", queue)
    _cmp(results, tensors, "queue_ptr_after", queue_ptr)
    return results


def _sampler(tensors, hp):
    results = []
    labels = tensors["labels"]
    state = np.random.get_state()
    try:
        np.random.seed(hp["numpy_global_seed"])
        sampler = MPerClassSampler(labels.tolist(), hp["m"], hp["batch_size"], hp["length_before_new_iter"])
        epochs = [torch.tensor(list(iter(sampler))), torch.tensor(list(iter(sampler)))]
    finally:
        np.random.set_state(state)
    results.append(compare("len_sampler", len(sampler), hp["len_sampler"]))
    for e, indices in enumerate(epochs):
        _cmp(results, tensors, f"indices_epoch{e}", indices)
        if not hp["batch_size"]:
            continue
        batches = labels[indices].view(-1, hp["batch_size"])
        classes_per_batch = torch.tensor([len(set(b.tolist())) for b in batches])
        results.append(compare(f"distinct_classes_per_batch_epoch{e}", classes_per_batch,
                               torch.full_like(classes_per_batch, hp["batch_size"] // hp["m"])))
    return results


def check_fixture(path: str, fixture: dict):
    kind = _kind(path, fixture)
    tensors, hp = fixture["tensors"], fixture.get("hparams", {})
    if kind in ("cifar_sup_mcl", "imagenet_sup_mcl_memory"):
        return _supervised(tensors, hp, kind)
    if kind == "moco_mcl":
        return _moco(tensors, hp)
    if kind == "mperclass_sampler":
        return _sampler(tensors, hp)
    raise UnrecognisedFixture(f"unknown MCL fixture kind {kind!r}")
