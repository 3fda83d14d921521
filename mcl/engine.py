"""What MCL's entry points share beyond ``common.engine``: the launch (``--gpu-id``), the original's output folder
(``./checkpoint/``), and for the two supervised ones (``main_cifar.py``, ``main_imagenet.py``) the loss-weight flags,
the training epoch (CE + distillation + weighted MCL terms), evaluation of N networks + ensemble and the run itself in
the original's checkpoint layout (``<arch>.pth.tar`` = {net, acc, epoch (index of the finished epoch), optimizer} +
``<arch>_best.pth.tar``)."""
from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from common.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state
from common.distributed import all_reduce_mean, barrier, init_distributed, is_main_process, launch
from common.engine import Run, add_run_args, fit, original_output_path, publish
from common.training import load_model_state, train_batches
from common.utils import UserError, check_finite, seed_everything, set_visible_gpus
from mcl.losses.kd import logit_distillation
from mcl.utils import adjust_lr

METHOD = "mcl"
MCL_DIR = os.path.dirname(os.path.abspath(__file__))


def add_supervised_args(p, logit_distill_help: str) -> None:
    """The flags ``main_cifar.py`` and ``main_imagenet.py`` share: launch, resume / evaluate, the original's
    checkpoint folder, N networks, distillation, the weights of the four MCL terms (all 0: the cross-entropy
    baseline, see :func:`run_tag`), the embedding size and this project's run flags."""
    p.add_argument("--gpu-id", type=str, default="0",
                   help="written to CUDA_VISIBLE_DEVICES before CUDA starts, as the original (an existing "
                        "CUDA_VISIBLE_DEVICES wins); without CUDA a notice and the CPU")
    p.add_argument("--manual_seed", type=int, default=0, help="seed of numpy / torch / python")
    p.add_argument("--resume", "-r", action="store_true", help="resume from --resume-checkpoint")
    p.add_argument("--resume-checkpoint", default=None, type=str,
                   help="checkpoint to resume from (default: <checkpoint-dir>/<arch>.pth.tar)")
    p.add_argument("--evaluate", "-e", action="store_true", help="only evaluate --evaluate-checkpoint")
    p.add_argument("--evaluate-checkpoint", default=None, type=str,
                   help="checkpoint to evaluate (default: <checkpoint-dir>/<arch>_best.pth.tar)")
    p.add_argument("--checkpoint-dir", default=None, type=str,
                   help="the original's checkpoint folder: <arch>.pth.tar and <arch>_best.pth.tar of a finished "
                        "run are also published there (default ./checkpoint beside this script); the run itself "
                        "lives in its run folder")
    p.add_argument("--number-net", type=int, default=2,
                   help="number of networks N (quirk 21: at least 2; 2: independent networks, other N: shared-stem "
                        "multi-branch)")
    p.add_argument("--logit-distill", action="store_true", help=logit_distill_help)
    p.add_argument("--kd_T", type=float, default=3,
                   help="temperature of every KL term, on the tau-scaled logits (quirk 6 reproduced, as the original)")
    p.add_argument("--alpha", type=float, default=0.0, help="weight of VCL")
    p.add_argument("--gamma", type=float, default=0.0, help="weight of soft VCL")
    p.add_argument("--beta", type=float, default=0.0, help="weight of ICL")
    p.add_argument("--lam", type=float, default=0.0, help="weight of soft ICL")
    p.add_argument("--feat-dim", default=128, type=int, help="embedding head output dimension")
    # additions (not in the original)
    add_run_args(p, name="<dataset>_<arch>_n<N>_<baseline|mcl>[_kd]-<digest of the result flags>",
                 freeze_bn="--freeze-bn")
    p.add_argument("--print-freq", default=20, type=int, help="progress / NaN check every N iterations")


def loss_weights(args) -> tuple:
    """(α, γ, β, λ): the weights of (VCL, soft VCL, ICL, soft ICL), the order of ``SupMCLLoss.contrast``'s terms."""
    return args.alpha, args.gamma, args.beta, args.lam


def run_tag(args) -> str:
    """'baseline' (every MCL weight 0) or 'mcl', plus '_kd' with --logit-distill: the readable part of the default
    run name (the digest of the flags makes it unique)."""
    return ("mcl" if any(loss_weights(args)) else "baseline") + ("_kd" if args.logit_distill else "")


LOSS_NAMES = ("loss", "loss_ce", "loss_kd", "loss_vcl", "loss_soft_vcl", "loss_icl", "loss_soft_icl")


def supervised_epoch(run: Run, loader, model, args, epoch: int, optimizer, precision, step, correct, correct_of,
                     summary, kd_rule: str, hint: str) -> dict:
    """One training epoch of ``main_cifar.py`` / ``main_imagenet.py``. ``step(batch) -> (logits (N, B, C) float32,
    targets, MCL terms, after)``; the loss Σ_i CE · N + the logit distillation (``kd_rule``, with
    ``--logit-distill``) + the weighted MCL terms takes one optimizer step, then ``after()`` (if not None) runs.
    ``correct_of(logits, targets)`` is added to ``correct`` (zeros of its shape); ``summary(acc)`` of the epoch's
    ``correct / seen`` (the global batches', every process having the same local batch) → (end of the epoch's log
    line, training scalars). Returns the training scalars: the terms (:data:`LOSS_NAMES`), lr and accuracies."""
    total, batches = train_batches(run, loader, model, args, f"epoch {epoch}")
    lr = adjust_lr(optimizer, epoch, args)
    N, weights = args.number_net, loss_weights(args)
    sums = torch.zeros(len(LOSS_NAMES), device=args.device)  # total, ce, kd, vcl, soft vcl, icl, soft icl (weighted)
    seen, start = 0, time.time()
    for i, batch in batches:
        logits, targets, terms, after = step(batch)
        loss_cls = F.cross_entropy(logits.flatten(0, 1), targets.repeat(N)) * N
        loss_kd = logit_distillation(logits, args.kd_T, kd_rule) if args.logit_distill else logits.new_zeros(())
        weighted = [w * t for w, t in zip(weights, terms)]
        loss = loss_cls + loss_kd + sum(weighted)
        optimizer.zero_grad(set_to_none=True)
        precision.backward_step(loss, optimizer)
        run.step += 1
        if after is not None:
            after()
        seen += targets.shape[0]
        sums += torch.stack([loss, loss_cls, loss_kd, *weighted]).detach() * targets.shape[0]
        correct += correct_of(logits.detach(), targets)
        if (i + 1) % args.print_freq == 0 or i + 1 == total:
            check_finite(loss, f"{epoch}:{i}", hint=hint)
            batches.postfix(loss=f"{loss.item():.3f}")
    # the global batches' values (every process has the same local batch size), not rank 0's halves
    avg = all_reduce_mean(sums / max(seen, 1)).tolist()
    line_end, scalars = summary(all_reduce_mean(correct / max(seen, 1)).tolist())
    run.info(f"Epoch:{epoch}\t lr:{lr:.5f}\t duration:{time.time() - start:.3f}\t "
             + "\t ".join(f"{n}:{v:.5f}" for n, v in zip(LOSS_NAMES, avg)) + line_end)
    return {**dict(zip(LOSS_NAMES, avg)), "lr": lr, **scalars}


def launch_run(main_worker, args) -> None:
    """Show CUDA only ``--gpu-id``'s devices when CUDA will be used, and start the worker processes."""
    if args.device != "cpu":  # written before any CUDA call (CUDA reads it once, when it initialises)
        set_visible_gpus("--gpu-id", args.gpu_id, keep_existing=True)
    launch(main_worker, args)


def original_dir(flag_value: str | None) -> str | None:
    """Where the original wrote its checkpoints (``--checkpoint-dir`` / ``--checkpoint``, default ``./checkpoint/``
    beside the scripts): the files are also published there, so the README's next command finds them."""
    return flag_value if flag_value else original_output_path(MCL_DIR, "checkpoint")


def publish_to(run_path: str | None, directory: str | None) -> None:
    if run_path and directory:
        publish(run_path, os.path.join(directory, os.path.basename(run_path)))


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


def eval_scalars(result) -> dict:
    """The schema's ``eval/*`` values of one evaluation: ``top1`` = the best single network (the original's
    number), ``top1_net<i>``, ``top1_mean``, ``top1_ensemble`` (and the same for top-5 when measured), ``loss``."""
    out = {"top1": result["max"], "top1_mean": result["mean"], "top1_ensemble": result["ensemble"],
           "loss": result["loss"]}
    out.update({f"top1_net{i}": a for i, a in enumerate(result["per_net"])})
    if "top5" in result:
        n = len(result["per_net"])
        out.update({"top5": max(result["top5"][:n]), "top5_ensemble": result["top5"][n]})
        out.update({f"top5_net{i}": a for i, a in enumerate(result["top5"][:n])})
    return out


def format_eval(result) -> str:
    return (f"per-network {[round(a, 2) for a in result['per_net']]}, mean {result['mean']:.2f}, "
            f"ensemble {result['ensemble']:.2f}")


def require_keys(state: dict, keys, path: str, script: str) -> None:
    """A checkpoint passed by hand must hold ``keys`` (a run's own file is checked by ``Run.resume_state``)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise UserError(f"'{path}' has no '{missing[0]}' entry (keys: {', '.join(map(str, list(state)[:6]))}); it is "
                        f"not a {script} checkpoint")


def load_net(path: str, net, what: str) -> dict:
    """A supervised checkpoint (ours or the original's: the wrapper's state dict under ``net``) into ``net``."""
    state = load_checkpoint(path)
    require_keys(state, ("net",), path, f"{what} (<arch>.pth.tar / <arch>_best.pth.tar)")
    load_model_state(net, state["net"], source=f"checkpoint '{path}'")
    return state


def evaluate_checkpoint(args, net, loader, **evaluate_kw) -> None:
    """``--evaluate``: one test of ``--evaluate-checkpoint`` (default the original's ``./checkpoint/<arch>_best``),
    no run folder (nothing is written)."""
    path = args.evaluate_checkpoint or os.path.join(original_dir(args.checkpoint_dir) or ".",
                                                    f"{args.arch}_best.pth.tar")
    load_net(path, net, "--evaluate-checkpoint")
    result = evaluate(net, loader, args, **evaluate_kw)
    if is_main_process():
        top5 = f"; top-5 {[round(a, 2) for a in result['top5']]}" if "top5" in result else ""
        print(f"evaluate {path}: {format_eval(result)}{top5}", flush=True)
        print(f"top-1: {result['max']:.2f}", flush=True)


def supervised_worker(local_rank, args, build_model, train, **evaluate_kw) -> None:
    """The process of ``main_cifar.py`` / ``main_imagenet.py``: ``--evaluate`` (no run folder; ``build_model``'s third
    value is the test loader), else ``train(run, args, device)`` in the run folder."""
    device = init_distributed(args, local_rank)
    seed_everything(args.manual_seed)
    if args.evaluate:
        net, _, test_loader, *_ = build_model(args, device)
        return evaluate_checkpoint(args, net, test_loader, **evaluate_kw)
    with Run.open(METHOD, args, readable=f"{args.dataset}_{args.arch}_n{args.number_net}_{run_tag(args)}",
                  name=args.name, ignore=("evaluate_checkpoint",), overwrite=not args.auto_resume or args.resume) as run:
        run.info(f"args: {vars(args)}")
        train(run, args, device)


def train_supervised(run: Run, args, net, criterion, optimizer, scaler, train_one_epoch, test_loader,
                     selection: str, **evaluate_kw) -> None:
    """The supervised run: resume (this run's ``<arch>.pth.tar``, or ``--resume [--resume-checkpoint FILE]``, also
    an original checkpoint without heads), initial evaluation, the epoch loop (``common.engine.fit``: a checkpoint
    in the original's layout every epoch, ``_best`` on the best single network, selected on the test set like the
    original; quirk 8 fixed for ImageNet), the best epoch's final evaluation, and the files published where the
    original wrote them. ``train_one_epoch(epoch) -> dict`` of training scalars."""
    resume_name, best_name = f"{args.arch}.pth.tar", f"{args.arch}_best.pth.tar"
    explicit = None
    if args.resume:
        explicit = args.resume_checkpoint or os.path.join(original_dir(args.checkpoint_dir) or run.run_dir,
                                                          resume_name)
    state = run.resume_state(explicit, resume_name, require=("net", "epoch", "optimizer"))
    start_epoch, best = 0, None
    if state is not None:
        require_keys(state, ("net", "epoch", "optimizer"), explicit, "training (<arch>.pth.tar)")
        heads = {"criterion": criterion} if state.get("criterion") is not None else None
        if heads is None:
            run.info("=> the checkpoint holds no heads / memory (the original's layout): they start fresh, as in "
                     "the original")
        # the original's "epoch" is the index of the last finished epoch
        start_epoch = run.restore(dict(state, epoch=state["epoch"] + 1), net, optimizer, scaler, extra=heads,
                                  model_key="net")
        best = float(state.get("best_acc", state.get("acc", -1.0)))
        run.info(f"=> resumed from '{run.resume_path}' at epoch {start_epoch}")

    rng = capture_rng_state()   # DataLoader iterators draw a seed: this extra evaluation must not move the RNG
    initial = evaluate(net, test_loader, args, **evaluate_kw)
    restore_rng_state(rng)
    run.info(f"initial evaluation: {format_eval(initial)}")
    run.info(f"initial top-1: {initial['max']:.2f}")
    if state is None:
        run.scalars(eval_scalars(initial), prefix="eval/", step=0)

    def evaluate_epoch(epoch):
        result = evaluate(net, test_loader, args, **evaluate_kw)
        top5 = f"\t top-5 (nets + ensemble): {[round(a, 2) for a in result['top5']]}" if "top5" in result else ""
        run.info(f"Epoch:{epoch}\t Test top-1: {format_eval(result)}\t test loss {result['loss']:.4f}{top5}")
        return eval_scalars(result)

    def checkpoint(done, metrics, best_acc):
        # the original's keys (net without a DataParallel prefix, acc, epoch index, optimizer) + heads / memory
        # (quirk 15), the AMP loss scale and the arguments; common.engine adds flags, RNG, step, code version
        return {"net": net.state_dict(), "acc": metrics["top1"], "epoch": done - 1, "optimizer": optimizer.state_dict(),
                "criterion": criterion.state_dict(), "best_acc": best_acc,
                "scaler": scaler.state_dict() if scaler is not None else None, "args": vars(args)}

    fit(run, start_epoch, args.epochs, train_one_epoch, checkpoint, evaluate_epoch, metric="top1",
        resume_name=resume_name, best_name=best_name, best=best)

    best_path = os.path.join(run.run_dir, best_name)
    if run.main:
        for name in (resume_name, best_name):   # no best file when a resumed run never beat its checkpoint
            if os.path.isfile(os.path.join(run.run_dir, name)):
                publish_to(os.path.join(run.run_dir, name), original_dir(args.checkpoint_dir))
        if os.path.isfile(best_path):
            load_net(best_path, net, "best")
    barrier()
    final = evaluate(net, test_loader, args, **evaluate_kw)
    run.info(f"final evaluation ({selection}): {format_eval(final)}")
    run.info(f"Test top-1 best_accuracy: {final['max']:.2f}")
    run.info(f"final top-1: {final['max']:.2f}")
    run.finish("top-1", final["max"])
