"""Weighted k-nearest-neighbour classifier on L2-normalised features (InstDisc / moco demo / DINO style)."""
from __future__ import annotations

import torch

from common.eval.features import extract_features


@torch.no_grad()
def weighted_knn_predict(features: torch.Tensor, bank_features: torch.Tensor, bank_labels: torch.Tensor,
                         num_classes: int, k: int = 200, temperature: float | None = 0.1,
                         chunk_size: int | None = None, bank_is_transposed: bool = False):
    """Score every class by the similarity-weighted votes of the ``k`` most similar bank entries.

    ``features`` (B, D) and ``bank_features`` (M, D) — or (D, M) with ``bank_is_transposed`` (the ASCL /
    moco demo layout) — should be L2-normalised, so the dot product is the cosine similarity.
    ``bank_labels`` (M,) int. Each neighbour votes for its class with weight ``exp(sim / temperature)``
    (``temperature=None``: weight 1, a plain majority vote). Returns ``(pred_scores (B, C),
    pred_labels (B, C))``, classes sorted by descending score (ties: smaller class first).

    The test set is processed in chunks of ``chunk_size`` rows (default: about 2**26 similarity entries per
    chunk) so a large bank does not need a B × M matrix at once. ``k`` is clamped to M.
    """
    bank = bank_features if bank_is_transposed else bank_features.t()  # (D, M)
    bank_labels = bank_labels.to(bank.device).long().flatten()
    m = bank.shape[1]
    if bank_labels.numel() != m:
        raise ValueError(f"bank_labels has {bank_labels.numel()} entries, the bank has {m}")
    k = min(k, m)
    if chunk_size is None:
        chunk_size = max(1, (1 << 26) // max(m, 1))
    scores_all, labels_all = [], []
    for start in range(0, features.shape[0], chunk_size):
        chunk = features[start: start + chunk_size].to(bank.device, bank.dtype)
        sim = chunk @ bank                                        # (b, M)
        sim_weight, sim_indices = sim.topk(k=k, dim=-1)           # (b, k)
        sim_labels = bank_labels[sim_indices]                     # (b, k)
        if temperature is None:
            weight = torch.ones_like(sim_weight)
        else:
            weight = (sim_weight / temperature).exp()
        scores = torch.zeros(chunk.shape[0], num_classes, device=sim.device, dtype=weight.dtype)
        scores.scatter_add_(1, sim_labels, weight)
        scores_all.append(scores)
        labels_all.append(scores.argsort(dim=-1, descending=True, stable=True))
    if not scores_all:
        empty = torch.zeros(0, num_classes, device=bank.device)
        return empty, empty.long()
    return torch.cat(scores_all), torch.cat(labels_all)


@torch.no_grad()
def knn_accuracy(features, labels, bank_features, bank_labels, num_classes: int, k: int = 200,
                 temperature: float | None = 0.1, topk=(1, 5), chunk_size: int | None = None) -> list:
    """Top-k accuracies (%) of :func:`weighted_knn_predict` (a float per entry of ``topk``)."""
    _, pred = weighted_knn_predict(features, bank_features, bank_labels, num_classes, k, temperature,
                                   chunk_size)
    labels = labels.to(pred.device).view(-1, 1)
    correct = pred.eq(labels)
    n = max(labels.shape[0], 1)
    return [float(correct[:, : min(t, k, num_classes)].sum()) * 100.0 / n for t in topk]


@torch.no_grad()
def knn_evaluate(model_fn, memory_loader, test_loader, device, k: int = 200, temperature: float = 0.1,
                 num_classes: int | None = None, amp: bool = False, progress: bool = False,
                 topk=(1,)):
    """kNN monitor: L2-normalised features of the memory (train) set as the bank, test-set top-1 in %.

    ``model_fn`` maps an image batch to (B, D) features (an ``nn.Module`` is put in eval mode for the
    duration and restored). Loaders yield ``(images, labels, ...)``. Returns the top-1 (a float) or, with
    several ``topk``, a list. Every process evaluates the whole sets (no distributed sampler needed).
    """
    bank, bank_labels = extract_features(model_fn, memory_loader, device, normalize=True, amp=amp,
                                         progress=progress, desc="kNN bank")
    feats, labels = extract_features(model_fn, test_loader, device, normalize=True, amp=amp,
                                     progress=progress, desc="kNN test")
    if num_classes is None:
        dataset = getattr(memory_loader, "dataset", None)
        classes = getattr(dataset, "classes", None)
        num_classes = len(classes) if classes is not None else int(max(bank_labels.max(), labels.max())) + 1
    accs = knn_accuracy(feats, labels, bank, bank_labels, num_classes, k, temperature, topk)
    return accs[0] if len(accs) == 1 else accs
