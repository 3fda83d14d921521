"""Pieces shared by MCL's entry points: the start of a worker (all four), and for the two supervised ones
(``main_cifar.py``, ``main_imagenet.py``) the loss-weight flags, evaluation of N networks + ensemble, best-epoch
tracking, checkpoint save / resume of networks, heads, optimizer and RNG, and the final evaluation."""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from common.checkpoint import (capture_rng_state, code_version, find_latest_checkpoint, load_checkpoint,
                               restore_rng_state, save_checkpoint)
from common.distributed import cleanup, init_distributed, is_main_process, launch
from common.logger import RunLogger, make_run_dir
from common.training import load_model_state
from common.utils import UserError, seed_everything, set_visible_gpus


def start_run(local_rank, args, seed, deterministic: bool = False):
    """Process group, seeds, the run directory ``runs/mcl/<args.name>/`` (rank 0 creates it) and its logger (rank 0
    only), which records the arguments first. Returns ``(device, run_dir, logger)``."""
    device = init_distributed(args, local_rank)
    seed_everything(seed, deterministic=deterministic)
    run_dir = make_run_dir("mcl", args.name, create=is_main_process())
    logger = RunLogger(run_dir, enabled=is_main_process())
    logger.info(f"args: {vars(args)}")
    return device, run_dir, logger


def add_loss_weight_args(p) -> None:
    """The weights of the four MCL terms (all 0: the cross-entropy baseline, see :func:`run_tag`)."""
    p.add_argument("--alpha", type=float, default=0.0, help="weight of VCL")
    p.add_argument("--gamma", type=float, default=0.0, help="weight of soft VCL")
    p.add_argument("--beta", type=float, default=0.0, help="weight of ICL")
    p.add_argument("--lam", type=float, default=0.0, help="weight of soft ICL")


def loss_weights(args) -> tuple:
    """(α, γ, β, λ): the weights of (VCL, soft VCL, ICL, soft ICL), the order of ``SupMCLLoss.contrast``'s terms."""
    return args.alpha, args.gamma, args.beta, args.lam


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


def launch_run(main_worker, args, name_prefix: str) -> None:
    """Name the run unless ``--name`` was given (``<name_prefix><arch>_n<N>_<tag>_dataset_<dataset>_seed<seed>``),
    show CUDA only ``--gpu-id``'s devices when CUDA will be used, and start the worker processes."""
    if args.name is None:
        args.name = (f"{name_prefix}{args.arch}_n{args.number_net}_{run_tag(args)}_dataset_{args.dataset}"
                     f"_seed{args.manual_seed}")
    if args.device != "cpu":  # written before any CUDA call (CUDA reads it once, when it initialises)
        set_visible_gpus("--gpu-id", args.gpu_id, keep_existing=True)
    launch(main_worker, args)


def run_tag(args) -> str:
    """'baseline' (every MCL weight 0) or 'mcl', plus '_kd' with --logit-distill: part of the default run
    name, so the scripts' runs (and their auto-resume) never collide."""
    return ("mcl" if any(loss_weights(args)) else "baseline") + ("_kd" if args.logit_distill else "")


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


def training_state(net, criterion, optimizer, epoch, acc, best_acc, args, scaler=None) -> dict:
    """The original's checkpoint {net, acc, epoch, optimizer} plus the heads / memory (quirk 15), the AMP loss
    scale, RNG and the code version."""
    return {"net": net.state_dict(), "criterion": criterion.state_dict(), "acc": acc, "best_acc": best_acc,
            "epoch": epoch, "optimizer": optimizer.state_dict(), "rng_state": capture_rng_state(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "code_version": code_version(),
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


def resume_training(args, checkpoint_dir: str, net, criterion, optimizer, logger, scaler=None):
    """``(start_epoch, best_acc)``: from the checkpoint :func:`resolve_resume` names, or ``(0, -1)`` for a new run."""
    path = resolve_resume(args, checkpoint_dir, f"{args.arch}.pth.tar")
    return resume(path, net, criterion, optimizer, logger, scaler) if path else (0, -1.0)


def end_epoch(result, epoch, net, criterion, optimizer, best_acc, args, checkpoint_dir: str, logger,
              scaler=None) -> float:
    """After an epoch's evaluation ``result``: the test scalars, then the last checkpoint and, when this epoch is the
    best so far, the best one (rank 0 writes). Returns the best accuracy so far (quirk 8 fixed: the original reset it
    every epoch)."""
    for i, a in enumerate(result["per_net"]):
        logger.scalar(f"test/top1_net{i}", a, epoch)
    logger.scalar("test/top1_ensemble", result["ensemble"], epoch)
    is_best = result["max"] > best_acc
    best_acc = max(best_acc, result["max"])
    if is_main_process():
        save_checkpoint(training_state(net, criterion, optimizer, epoch, result["max"], best_acc, args, scaler),
                        os.path.join(checkpoint_dir, f"{args.arch}.pth.tar"), is_best=is_best,
                        best_name=f"{args.arch}_best.pth.tar")
    return best_acc


def finish_run(net, loader, args, checkpoint_dir: str, logger, selection: str, **evaluate_kw) -> None:
    """Evaluate the best epoch's networks (how the epoch was chosen: ``selection``), print ``final top-1`` and close
    the run. Only rank 0 reloads them: it alone reports (the logger is off on the other ranks)."""
    best_path = os.path.join(checkpoint_dir, f"{args.arch}_best.pth.tar")
    if is_main_process() and os.path.isfile(best_path):
        load_for_evaluation(best_path, net)
    final = evaluate(net, loader, args, **evaluate_kw)
    logger.info(f"final evaluation ({selection}): {format_eval(final)}")
    logger.info(f"Test top-1 best_accuracy: {final['max']:.2f}")
    logger.info(f"final top-1: {final['max']:.2f}")
    logger.close()
    cleanup()


def resume(path, net, criterion, optimizer, logger, scaler=None):
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
    if scaler is not None and state.get("scaler"):   # empty when the scaler is off (no AMP, or bfloat16 on CPU)
        scaler.load_state_dict(state["scaler"])
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
