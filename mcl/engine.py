"""Pieces shared by the two supervised entry points (``main_cifar.py``, ``main_imagenet.py``):
evaluation of N networks + ensemble, checkpoint save / resume of networks, heads, optimizer and RNG."""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from common.checkpoint import capture_rng_state, find_latest_checkpoint, load_checkpoint, restore_rng_state
from common.training import load_model_state
from common.utils import UserError


@torch.no_grad()
def evaluate(net, loader, args, ensemble: str = "sum", topk=(1,)):
    """Top-k accuracy (%) of each network, their mean, and of the ensemble (``sum`` of logits on CIFAR,
    ``mean`` on ImageNet: the same argmax). ``max`` = best single network top-1 (what the original's
    ``test()`` returns, quirk 7)."""
    net.eval()
    N = args.number_net
    correct = torch.zeros(len(topk), N + 1, device=args.device)
    loss = torch.zeros((), device=args.device)
    total = 0
    for batch in loader:
        inputs, targets = batch[0].to(args.device), batch[1].to(args.device)
        logits = torch.stack(net(inputs)[0])
        loss += F.cross_entropy(logits.flatten(0, 1), targets.repeat(N), reduction="sum")
        combined = logits.sum(dim=0, keepdim=True) if ensemble == "sum" else logits.mean(dim=0, keepdim=True)
        all_logits = torch.cat([logits, combined])                            # (N+1, B, C)
        top = all_logits.topk(min(max(topk), all_logits.shape[-1]), dim=-1).indices == targets[None, :, None]
        for t, k in enumerate(topk):
            correct[t] += top[..., :k].any(dim=-1).sum(dim=1)
        total += targets.shape[0]
    if total == 0:
        raise UserError("the evaluation set is empty")
    acc = (100.0 * correct / total).tolist()
    result = {"per_net": acc[0][:N], "ensemble": acc[0][N], "mean": sum(acc[0][:N]) / N, "max": max(acc[0][:N]),
              "loss": loss.item() / total}
    for t, k in enumerate(topk):
        result[f"top{k}"] = acc[t]
    return result


def run_tag(args) -> str:
    """'baseline' (every MCL weight 0) or 'mcl', plus '_kd' with --logit-distill: part of the default run
    name, so the scripts' runs (and their auto-resume) never collide."""
    weights = (args.alpha, args.gamma, args.beta, args.lam)
    return ("mcl" if any(weights) else "baseline") + ("_kd" if args.logit_distill else "")


def format_eval(result) -> str:
    return (f"per-network {[round(a, 2) for a in result['per_net']]}, mean {result['mean']:.2f}, "
            f"ensemble {result['ensemble']:.2f}")


def evaluate_keeping_rng(*a, **kw):
    """:func:`evaluate` without moving any RNG (DataLoader iterators draw a seed from torch's RNG), so an
    extra evaluation (initial, after resume) does not change the training run."""
    rng = capture_rng_state()
    try:
        return evaluate(*a, **kw)
    finally:
        restore_rng_state(rng)


def training_state(net, criterion, optimizer, epoch, acc, best_acc, args) -> dict:
    """The original's checkpoint {net, acc, epoch, optimizer} plus the heads / memory (quirk 15) and RNG."""
    return {"net": net.state_dict(), "criterion": criterion.state_dict(), "acc": acc, "best_acc": best_acc,
            "epoch": epoch, "optimizer": optimizer.state_dict(), "rng_state": capture_rng_state(),
            "args": {k: (v if isinstance(v, (int, float, str, bool, list, tuple, type(None))) else str(v))
                     for k, v in vars(args).items()}}


def resolve_resume(args, checkpoint_dir: str, last_name: str):
    """``--resume`` → ``--resume-checkpoint`` (default the run's last checkpoint); otherwise, unless
    ``--no-auto-resume``, the last checkpoint of the run directory if it is loadable."""
    if args.resume:
        return args.resume_checkpoint or os.path.join(checkpoint_dir, last_name)
    if args.auto_resume:
        return find_latest_checkpoint(checkpoint_dir, pattern=last_name)
    return None


def resume(path, net, criterion, optimizer, logger):
    """Load a training checkpoint; returns (start_epoch, best_acc). Original checkpoints (no heads /
    memory) are accepted: the heads then start fresh, as they did in the original."""
    state = load_checkpoint(path)
    for key in ("net", "epoch", "optimizer"):
        if key not in state:
            raise UserError(f"'{path}' has no '{key}' entry; it is not a checkpoint of this script "
                            "(pass a file written by --checkpoint-dir / the run directory)")
    load_model_state(net, state["net"], source=f"checkpoint '{path}'")
    if "criterion" in state:
        load_model_state(criterion, state["criterion"], source=f"heads / memory in '{path}'")
    else:
        logger.info(f"=> '{path}' holds no heads (original checkpoint): they are re-initialised")
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as e:
        raise UserError(f"optimizer state in '{path}' does not match this run ({e}); "
                        "was --arch / --number-net changed?") from None
    restore_rng_state(state.get("rng_state"))
    start_epoch = int(state["epoch"]) + 1
    logger.info(f"=> resumed from '{path}' at epoch {start_epoch}")
    return start_epoch, float(state.get("best_acc", state.get("acc", -1.0)))


def load_for_evaluation(path, net):
    state = load_checkpoint(path)
    if "net" not in state:
        raise UserError(f"'{path}' has no 'net' entry; it is not a checkpoint of this script")
    load_model_state(net, state["net"], source=f"checkpoint '{path}'")
    return state
