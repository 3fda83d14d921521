"""Linear probe on frozen, pre-extracted features (fast: no backbone forward per epoch)."""
from __future__ import annotations


import torch
import torch.nn.functional as F

from common.eval.metrics import accuracy
from common.schedules import cosine_lr, step_lr


def train_linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                       test_labels: torch.Tensor, epochs: int = 100, lr: float = 0.1, batch_size: int = 256,
                       num_classes: int | None = None, optimizer: str = "sgd", momentum: float = 0.9,
                       nesterov: bool = False, weight_decay: float = 0.0, schedule: str = "cosine",
                       milestones=(60, 80), gamma: float = 0.1, normalize: bool = False,
                       standardize: bool = False, seed: int = 0, return_history: bool = False,
                       return_predictions: bool = False):
    """Train ``Linear(D, C)`` on (N, D) frozen features with cross-entropy; return the test top-1 in %
    after the last epoch (``return_history``: ``(top1, [top1 per epoch])``; ``return_predictions`` appends the
    test-set argmax predictions ``(N,)``, e.g. for :func:`common.eval.shot_accuracy`).

    ``optimizer``: ``'sgd'`` (momentum / Nesterov / weight decay) or ``'adam'``; ``schedule``: ``'cosine'``
    (per epoch), ``'step'`` (``milestones``, ``gamma``) or ``'none'``. ``normalize`` L2-normalises the
    features, ``standardize`` uses the train mean / std per dimension. The classifier is initialised
    N(0, 0.01²), bias 0 (moco ``main_lincls``); mini-batches are drawn with a generator seeded by ``seed``,
    so the result is deterministic on CPU.
    """
    device = train_feats.device
    train_feats = train_feats.float()
    test_feats = test_feats.float().to(device)
    train_labels = train_labels.long().to(device)
    test_labels = test_labels.long().to(device)
    if normalize:
        train_feats = F.normalize(train_feats, dim=1)
        test_feats = F.normalize(test_feats, dim=1)
    if standardize:
        mean = train_feats.mean(0, keepdim=True)
        std = train_feats.std(0, keepdim=True).clamp_min(1e-6)
        train_feats = (train_feats - mean) / std
        test_feats = (test_feats - mean) / std
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    generator = torch.Generator().manual_seed(seed)
    classifier = torch.nn.Linear(train_feats.shape[1], num_classes).to(device)
    with torch.no_grad():
        classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=generator) * 0.01)
        classifier.bias.zero_()
    if optimizer == "sgd":
        opt = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                              weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer '{optimizer}' (sgd, adam)")
    n = train_feats.shape[0]
    history = []
    for epoch in range(epochs):
        if schedule == "cosine":
            epoch_lr = cosine_lr(lr, epoch, epochs)
        elif schedule == "step":
            epoch_lr = step_lr(lr, epoch, milestones, gamma)
        elif schedule == "none":
            epoch_lr = lr
        else:
            raise ValueError(f"unknown schedule '{schedule}' (cosine, step, none)")
        for group in opt.param_groups:
            group["lr"] = epoch_lr
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            idx = order[start: start + batch_size]
            loss = F.cross_entropy(classifier(train_feats[idx]), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if return_history or epoch == epochs - 1:
            history.append(evaluate_linear(classifier, test_feats, test_labels, batch_size=max(batch_size, 1024)))
    top1 = history[-1] if history else evaluate_linear(classifier, test_feats, test_labels)
    out = (top1,) + ((history,) if return_history else ())
    if return_predictions:
        with torch.no_grad():
            out += (torch.cat([classifier(test_feats[i: i + 4096]).argmax(1)
                               for i in range(0, test_feats.shape[0], 4096)]),)
    return out if len(out) > 1 else top1


@torch.no_grad()
def evaluate_linear(classifier, feats: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 (%) of ``classifier`` on (N, D) features."""
    correct = 0.0
    for start in range(0, feats.shape[0], batch_size):
        out = classifier(feats[start: start + batch_size])
        correct += float(accuracy(out, labels[start: start + batch_size])[0]) * out.shape[0] / 100.0
    return correct * 100.0 / max(feats.shape[0], 1)


def feature_probe(kind: str, train_x, train_y, test_x, test_y, k: int = 200, **linear) -> tuple[str, float]:
    """``(metric name, top-1 %)`` of a probe on fixed features, the ``initial / final <metric>`` of the pre-training
    entry points: ``kind='knn'``: weighted kNN (``k``, T = 0.1) on the L2-normalised features; else a linear
    classifier on the standardised features (:func:`train_linear_probe` with the keywords ``linear``)."""
    from common.eval.knn import knn_accuracy
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    if kind == "knn":
        top1 = knn_accuracy(F.normalize(test_x, dim=1), test_y, F.normalize(train_x, dim=1), train_y,
                            num_classes, k=k, temperature=0.1, topk=(1,))[0]
        return "knn top-1", float(top1)
    top1 = train_linear_probe(train_x, train_y, test_x, test_y, num_classes=num_classes, standardize=True, **linear)
    return "linear top-1", float(top1)
