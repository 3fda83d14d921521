"""Feature extraction from a frozen network."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from common.utils import autocast


@contextlib.contextmanager
def eval_mode(model):
    """Put an ``nn.Module`` in eval mode inside the block and restore its previous mode afterwards."""
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def extract_features(model_fn, loader, device, normalize: bool = False, amp: bool = False,
                     progress: bool = False, desc: str = "features"):
    """Run ``model_fn`` (an ``nn.Module`` is switched to eval mode) over ``loader`` without gradient.

    Batches are ``(images, labels, ...)``. Returns ``(features (N, D) float32, labels (N,) int64)`` on
    ``device``, L2-normalised rows with ``normalize``.
    """
    device = torch.device(device)
    feats, labels = [], []
    iterable = loader
    if progress:
        from common.training import progress as bar
        iterable = bar(loader, desc=desc)
    with eval_mode(model_fn):
        for batch in iterable:
            images, target = batch[0], batch[1]
            images = images.to(device, non_blocking=True)
            with autocast(device, amp):
                out = model_fn(images)
            out = out.float().flatten(1)
            if normalize:
                out = F.normalize(out, dim=1)
            feats.append(out)
            labels.append(torch.as_tensor(target).to(device, non_blocking=True).long())
    if not feats:
        raise ValueError("extract_features: the loader yielded no batch")
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def recalibrated_copy(model: torch.nn.Module, loader, device, forward=None) -> torch.nn.Module:
    """A copy of ``model`` in eval mode whose BatchNorm running statistics are re-estimated on ``loader``.

    Why: an untrained network still has the initial running statistics (mean 0, variance 1), i.e. no
    normalisation at all, so evaluating it "untrained" measures a different network from the one any training
    step produces; and after training the running averages lag behind the weights. Evaluating both the initial
    and the final network with statistics of the same images makes the two numbers comparable.

    The statistics are the plain average over the batches of ``loader`` (momentum 1/(i+1) at batch i), which
    also works for modules that apply the momentum themselves (``SplitBatchNorm``). ``forward(model, images)``
    defaults to ``model(images)``; batches are ``(images, ...)``. ``model`` itself is not changed.
    """
    import copy

    model = copy.deepcopy(model)
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return model.eval()
    for m in norms:
        m.reset_running_stats()
    model.train()
    for i, batch in enumerate(loader):
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        for m in norms:
            m.momentum = 1.0 / (i + 1)
        (forward or (lambda net, x: net(x)))(model, images.to(device, non_blocking=True))
    return model.eval()
