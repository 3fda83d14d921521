"""Training code shared by ``main.py`` and ``main_simple.py`` (spec §b, §g, §h).

Self-supervised pre-training (MoCo- or BYOL-style ASCL) with a weighted-kNN monitor after every epoch, then a
linear evaluation of the frozen student backbone.  Both entry points read ``--K`` (alias ``--nn_num``) as the
neighbour count and ``--mem_size`` as the queue, main.py's meaning (quirk 5: the original ``main_simple.py`` read
``--K`` as its queue); ``main_simple.py`` has no wandb flags and prints one notice when ``--K`` is typed.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn as nn

from common.distributed import (add_distributed_args, all_reduce_mean, barrier, cleanup, init_distributed,
                                launch, unwrap_model, wrap_ddp)
from common.eval import knn_evaluate, recalibrated_copy
from common.engine import Run, epoch_range, fit
from common.training import classifier_pass, loss_epoch, progress, train_batches
from common.augment.on_device import add_augment_arg
from common.utils import (HelpFormatter, MixedPrecision, UserError, add_precision_args, check_finite, seed_everything,
                          set_visible_gpus)
from ascl.dataloader import DATASETS, prepare_dataset
from ascl.model import ASCL, LinearHead
from ascl.utils import adjust_learning_rate

CHECKPOINT_NAMES = ("ckpts.pth", "model_last.pth")
TYPED_NEIGHBOUR_FLAGS = "typed_neighbour_flags"   # namespace attribute of NeighbourCount, removed by parse_args


# ----------------------------------------------------------------------------------------------- flags

class NeighbourCount(argparse.Action):
    """``--K`` / ``--nn_num``: one neighbour count under two names. It also records which of the names were typed
    with which value, so the two typed with different values can be refused (argparse would silently keep the
    last) and main_simple.py can tell its original users that ``--K`` is no longer its queue size."""

    def __call__(self, parser, namespace, values, option_string=None):
        typed = dict(getattr(namespace, TYPED_NEIGHBOUR_FLAGS, None) or {})
        typed[option_string] = values
        setattr(namespace, TYPED_NEIGHBOUR_FLAGS, typed)
        setattr(namespace, self.dest, values)


def build_parser(variant: str = "main") -> argparse.ArgumentParser:
    simple = variant == "main_simple"
    parser = argparse.ArgumentParser(
        description=f"ASCL {'(wandb-free variant) ' if simple else ''}self-supervised pre-training with a "
                    "kNN monitor, followed by linear evaluation.",
        formatter_class=HelpFormatter)
    parser.add_argument("-a", "--arch", default="resnet18",
                        help="backbone: resnet18 | resnet34 | resnet50 (the original's CIFAR-style ResNets); any "
                             "other common.backbones name (e.g. resnet20_option_a) is accepted for small CPU runs")
    parser.add_argument("--lr", "--learning-rate", default=0.03, type=float, dest="lr",
                        help="base learning rate of the pre-training SGD")
    parser.add_argument("--dataset", default="cifar10", choices=DATASETS,
                        help="dataset (digits = the embedded scikit-learn digits, no data path needed)")
    parser.add_argument("--data_path", default=os.environ.get("DATA", "cifar10"), type=str,
                        help="dataset root directory (default: $DATA, else 'cifar10')")
    parser.add_argument("--epochs", default=200, type=int, help="pre-training epochs")
    parser.add_argument("--eval_epochs", default=100, type=int, help="linear-evaluation epochs")
    parser.add_argument("--warm_up", default=5, type=int, help="linear LR warm-up epochs (per iteration)")
    parser.add_argument("--cos", action="store_false",
                        help="unused, as in the original (the schedule is always warm-up + cosine; quirk 12)")
    parser.add_argument("--eval_cos", action="store_true",
                        help="linear eval: cosine schedule with lr 1 per iteration instead of multistep lr 10")
    parser.add_argument("--eval_lr", default=None, type=float,
                        help="linear-eval learning rate (default: the original's 1 with --eval_cos, else 10; the "
                             "small digits network needs less)")
    parser.add_argument("--batch-size", default=256, type=int, dest="batch_size",
                        help="(global) batch size of every loader")
    parser.add_argument("--wd", default=5e-4, type=float, help="weight decay of the pre-training")
    parser.add_argument("--m", default=0.99, type=float, help="EMA momentum of the teacher (key) encoder")
    parser.add_argument("--dim", default=128, type=int, help="projection dim")
    # one meaning for both entry points (quirk 5 fixed the main.py way): the original main_simple.py's --K was the
    # queue, so its README line "--K 5" asked for a queue of 5; here --K is the neighbour count everywhere
    parser.add_argument("--mem_size", default=4096, type=int,
                        help="queue size Q (the original main_simple.py called it --K: quirk 5)")
    parser.add_argument("--K", default=1, type=int, dest="K", action=NeighbourCount,
                        help="number of neighbours k_nn, in main.py and main_simple.py alike (the original "
                             "main_simple.py read --K as the queue size: quirk 5; the queue is --mem_size)")
    parser.add_argument("--nn_num", type=int, dest="K", action=NeighbourCount,
                        help="alias of --K (the original main_simple.py's name for the neighbour count)")
    parser.add_argument("--resume", nargs="?", const="run_dir", default="",
                        help="resume: without a value from <run dir>/ckpts.pth (or model_last.pth), or from the "
                             "given checkpoint file. A run directory holding a checkpoint is resumed "
                             "automatically anyway (see --no_auto_resume)")
    parser.add_argument("--no_auto_resume", action="store_true",
                        help="start from scratch even if the run directory holds a checkpoint")
    parser.add_argument("--gpuid", default="0", type=str,
                        help="written to CUDA_VISIBLE_DEVICES before CUDA starts in single-process runs, as the "
                             "original (an existing CUDA_VISIBLE_DEVICES wins); without CUDA a notice and the CPU")
    parser.add_argument("--t1", default=0.1, type=float, help="student temperature T1")
    parser.add_argument("--t2", default=0.05, type=float, help="teacher temperature T2")
    parser.add_argument("--aug", default="weak_augment", choices=["weak_augment", "strong_augment"],
                        help="augmentation of the teacher (key) view; the student view is always strong")
    parser.add_argument("--model", default="moco", choices=["byol", "moco"], help="framework")
    parser.add_argument("--type", default="ascl", choices=["ascl", "ahcl", "hard", "normal"],
                        help="neighbour relation: adaptive soft / adaptive hard / hard / none (plain MoCo)")
    if not simple:
        parser.add_argument("--run_id", default=None, type=str,
                            help="wandb project name and output folder under runs/ascl/ (default ascl_project, "
                                 "with a digest of the result flags appended to the results folder's name)")
        parser.add_argument("--entity", default="ascl_run", type=str, help="wandb entity (only with --wandb)")
        parser.add_argument("--wandb", action="store_true",
                            help="also log to Weights & Biases (only if the wandb package is installed; "
                                 "tensorboardX and the text logs are always written)")
    # additions of this implementation
    parser.add_argument("--seed", default=1228, type=int, help="random seed (the original's fixed 1228)")
    parser.add_argument("--workers", default=6, type=int, help="data-loading workers per loader")
    parser.add_argument("--bn_splits", default=8, type=int,
                        help="SplitBatchNorm groups over the global batch (fixed 8 in the original); with W "
                             "processes each uses bn_splits/W groups, which keeps the groups identical")
    parser.add_argument("--no_shuffle_bn", dest="shuffle_bn", action="store_false",
                        help="do not shuffle the teacher's batch (shuffle-BN is on in the original)")
    add_augment_arg(parser)
    add_precision_args(parser)
    parser.add_argument("--freeze_bn", action="store_true",
                        help="BatchNorm in eval mode while pre-training (testing aid: the BYOL predictor's BN needs "
                             "SyncBN, which has no CPU kernel, to match one process; see "
                             "common.backbones.freeze_batchnorm)")
    parser.add_argument("--projector", default="mlp", choices=["mlp", "linear"],
                        help="projection head: the original's Linear-ReLU-Linear MLP, or one Linear layer (MoCo v1; "
                             "not in the original, used by the digits default where the MLP head stalls)")
    parser.add_argument("--knn_k", default=200, type=int, help="kNN monitor: neighbours")
    parser.add_argument("--knn_t", default=0.1, type=float, help="kNN monitor: temperature")
    parser.add_argument("--knn_bn_recalibrate", action="store_true",
                        help="kNN monitor: re-estimate BatchNorm statistics on the memory images before each "
                             "evaluation (not in the original; makes the untrained network's number meaningful)")
    parser.add_argument("--save_freq", default=50, type=int,
                        help="write ckpts.pth after 0-based epochs that are multiples of this (quirk 19 reproduced: "
                             "the original's 50)")
    parser.add_argument("--eval_resize", action="store_true",
                        help="resize memory / test images to the training crop size (corrects quirk 10: the "
                             "original evaluates STL-10 at 96 px after training on 64-px crops)")
    parser.add_argument("--image_size", default=None, type=int,
                        help="override the crop size (32 CIFAR/digits, 64 STL-10/Tiny-ImageNet); smoke tests")
    parser.add_argument("--iters_per_epoch", default=0, type=int,
                        help="stop each pre-training / linear epoch after this many iterations (0 = full epoch)")
    parser.add_argument("--eval_batch_size", default=0, type=int,
                        help="batch size of the memory / test loaders (0 = --batch-size)")
    parser.add_argument("--print_freq", default=10, type=int, help="progress-bar / NaN-check interval (iters)")
    parser.add_argument("--initial_linear_eval", action="store_true",
                        help="also run the linear evaluation on the untrained network (prints "
                             "'initial linear top-1')")
    parser.add_argument("--no_progress", action="store_true", help="no tqdm bars")
    add_distributed_args(parser)
    parser.set_defaults(variant=variant)
    return parser


def parse_args(variant: str = "main", argv=None) -> tuple[argparse.Namespace, dict]:
    """``(args, typed)``: the parsed flags and ``{"--K" / "--nn_num": value}`` of the neighbour flags typed (kept
    out of ``args``, which is stored in run.json and the checkpoints)."""
    args = build_parser(variant).parse_args(argv)
    typed = vars(args).pop(TYPED_NEIGHBOUR_FLAGS, None) or {}
    return args, typed


def neighbour_flag_notice(variant: str, typed: dict) -> str | None:
    """The one line telling an original main_simple.py user who typed ``--K`` that it now counts neighbours."""
    if variant == "main_simple" and "--K" in typed:
        return ("notice: main_simple.py reads --K as the number of neighbours, as main.py does (the original's "
                "main_simple.py read it as the queue size: quirk 5); the queue size is --mem_size")
    return None


def check_neighbour_flags(args, typed: dict) -> None:
    """--K and --nn_num typed with different values, or main_simple.py's --K at least the whole queue (an original
    main_simple.py user giving the queue size, e.g. its default --K 4096) → UserError naming the flags to use."""
    typed_k = typed.get("--K")
    if args.variant == "main_simple" and typed_k is not None and typed_k >= args.mem_size:
        raise UserError(f"main_simple.py --K {typed_k} asks for {typed_k} neighbours, at least the whole queue "
                        f"(--mem_size {args.mem_size}): --K is the number of neighbours here, as in main.py "
                        "(quirk 5); give the queue size with --mem_size and the neighbours with --K or --nn_num "
                        "(e.g. --mem_size 4096 --K 5)")
    if len(set(typed.values())) > 1:
        raise UserError(f"--K {typed_k} and --nn_num {typed['--nn_num']} disagree: both are the number of "
                        "neighbours (the queue size is --mem_size); give one of them")


def knn_recalibrate_splits(args) -> int:
    return max(1, args.bn_splits) if args.knn_bn_recalibrate else 0


def results_dir_name(args) -> str:
    return f"{args.dataset}_{args.model}_{args.type}_{args.epochs}_{args.aug}_{args.K}_{args.t1}_{args.t2}"


def validate_args(args) -> None:
    """Incompatible flag combinations → UserError naming the fix (spec §b, valid combinations)."""
    if args.arch in ("resnet101", "resnet152"):
        raise UserError(f"--arch {args.arch} is not supported by ASCL's ModelBase; use resnet18, resnet34 or resnet50")
    if args.batch_size < 2:
        raise UserError("--batch-size must be at least 2")
    if args.mem_size % args.batch_size != 0:
        raise UserError(f"the queue size (--mem_size {args.mem_size}) must be a multiple of the batch size "
                        f"(--batch-size {args.batch_size}): every enqueue writes one whole batch")
    if args.bn_splits > 1 and args.batch_size % args.bn_splits != 0:
        raise UserError(f"--batch-size {args.batch_size} must be divisible by the {args.bn_splits} SplitBatchNorm "
                        f"groups (change --batch-size or --bn_splits)")
    if args.model == "moco" and args.type in ("ahcl", "hard") and args.K > args.mem_size:
        raise UserError(f"--type {args.type} takes the top-{args.K} of the queue as neighbours (--K / --nn_num), "
                        f"but the queue holds only {args.mem_size} keys (--mem_size); lower --K or raise --mem_size")
    if args.K < 1:
        raise UserError(f"the number of neighbours (--K / --nn_num {args.K}) must be >= 1")
    if args.model == "byol" and args.dim != 128:
        raise UserError("--model byol needs --dim 128 (its predictor always outputs 128 dimensions)")
    if args.model == "byol" and args.type == "ascl" and args.batch_size < 3:
        raise UserError("--model byol --type ascl needs a batch of at least 3 (neighbours are the other keys)")
    if args.t1 <= 0 or args.t2 <= 0:
        raise UserError("--t1 and --t2 must be positive")
    if args.epochs < 0 or args.eval_epochs < 0:
        raise UserError("--epochs and --eval_epochs must be >= 0")


# ------------------------------------------------------------------------------------------- evaluation

@torch.no_grad()
def knn_test(net, memory_loader, test_loader, num_classes: int, device, knn_k: int = 200,
             knn_t: float = 0.1, recalibrate_splits: int = 0) -> float:
    """kNN monitor (spec §h): L2-normalised backbone features (before the projector, eval mode) of the memory
    set as the bank, top-k cosine neighbours weighted by exp(sim/t); returns test top-1 in %.

    ``recalibrate_splits > 0`` (``--knn_bn_recalibrate``) first re-estimates the BatchNorm statistics on the
    memory images (batches divisible by the split-BN count), so the untrained network is not evaluated with
    its initial mean-0 / variance-1 statistics (see ``common.eval.recalibrated_copy``)."""
    if recalibrate_splits > 0:
        batch = max(recalibrate_splits, (memory_loader.batch_size // recalibrate_splits) * recalibrate_splits)
        loader = torch.utils.data.DataLoader(memory_loader.dataset, batch_size=batch, shuffle=False,
                                             drop_last=True, num_workers=0)
        net = recalibrated_copy(net, loader, device, forward=lambda m, x: m(x, feat=True))
    was_training = net.training
    net.eval()
    try:
        return float(knn_evaluate(lambda x: net(x, feat=True), memory_loader, test_loader, device, knn_k, knn_t,
                                  num_classes=num_classes))
    finally:
        net.train(was_training)


def linear_eval(encoder_q, loaders, args, run: Run, tag: str = "eval") -> float:
    """Linear evaluation (spec §h) on the frozen backbone; returns the best top-1 (%)."""
    device = args.device
    feature_dim = encoder_q.feature_dim
    head = LinearHead(encoder_q, feature_dim, loaders.num_classes).to(device)
    lr = args.eval_lr if args.eval_lr is not None else (1.0 if args.eval_cos else 10.0)
    optimizer = torch.optim.SGD(head.fc.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=0)
    iters = len(loaders.linear) if not args.iters_per_epoch else min(args.iters_per_epoch, len(loaders.linear))
    if args.eval_cos:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(args.eval_epochs * iters, 1))
    else:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[60, 80], gamma=0.1)
    # quirk 11 (reproduced): the whole head stays in eval mode, so the backbone's BN uses running statistics
    head.eval()
    best1 = best5 = 0.0
    acc1 = 0.0
    for epoch in epoch_range(0, args.eval_epochs):
        bar = progress(loaders.linear, desc=f"linear {epoch + 1}/{args.eval_epochs}", enabled=not args.no_progress,
                       total=iters)
        train = classifier_pass(head, loaders.linear, device, optimizer, iters, bar,
                                on_batch=(lambda *_: scheduler.step()) if args.eval_cos else None)
        if hasattr(bar, "close"):
            bar.close()
        if not args.eval_cos:
            scheduler.step()
        loss = float(train[0] / train[3].clamp_min(1))
        check_finite(loss, f"linear-eval epoch {epoch}", "Lower the linear-eval lr (--eval_cos).")
        test = classifier_pass(head, loaders.test, device)
        acc1, acc5 = (test[1:3] / test[3]).tolist()
        best1, best5 = max(best1, acc1), max(best5, acc5)
        msg = (f"{tag} epoch {epoch}: Acc@1 {acc1:.2f} Acc@5 {acc5:.2f} Best_Acc@1 {best1:.2f} "
               f"Best_Acc@5 {best5:.2f} loss {loss:.4f}")
        run.info(msg)
        if tag == "eval":   # the linear probe's own epochs: its x-axis is the probe epoch
            run.scalars({"linear_top1": acc1, "linear_top5": acc5}, prefix="eval/probe_", step=epoch + 1)
            with open(os.path.join(run.run_dir, "eval_logs.txt"), "a") as f:  # quirk 9 fixed: one line per epoch
                f.write(msg + "\n")
    return acc1


# --------------------------------------------------------------------------------------------- training

def train_one_epoch(model, loader, optimizer, epoch: int, args, precision: MixedPrecision,
                    run: Run) -> tuple[float, float]:
    """One pre-training epoch; returns (mean loss, last lr)."""
    device = args.device
    iters, batches = train_batches(run, loader, model, args, f"Train Epoch [{epoch}/{args.epochs}]",
                                   args.iters_per_epoch, enabled=not args.no_progress)
    if iters == 0:
        raise UserError(f"the training set has fewer samples than one batch ({args.batch_size}); lower --batch-size")
    lr = 0.0

    def step(i, batch):
        nonlocal lr
        (im_1, im_2), labels = batch
        lr = adjust_learning_rate(optimizer, epoch, i, iters, args)
        im_1, im_2, labels = im_1.to(device, non_blocking=True), im_2.to(device, non_blocking=True), labels.to(device)
        with precision.autocast():
            return model(im_1, im_2, labels).loss, labels.shape[0]

    def on_print(i, loss, loss_sum, seen):   # quirk 7 fixed: the summed loss is read only here
        check_finite(loss, f"{i} of epoch {epoch}")
        run.scalar("train/loss", loss)
        batches.postfix(loss=f"{float(loss_sum) / seen:.4f}", lr=f"{lr:.5f}")

    loss_sum, seen = loss_epoch(run, iters, batches, step, optimizer, precision.backward_step, args.print_freq,
                                on_print, device)
    mean_loss = float(all_reduce_mean(loss_sum)) / max(seen, 1)  # the global batches' loss (equal local batches)
    check_finite(mean_loss, f"(epoch {epoch} mean)")
    return mean_loss, lr


def main_worker(local_rank: int, args) -> None:
    device = init_distributed(args, local_rank)
    seed_everything(args.seed)
    world_size = args.world_size if args.distributed else 1
    if args.bn_splits > 1 and args.bn_splits % world_size != 0:
        raise UserError(f"--bn_splits {args.bn_splits} must be divisible by the {world_size} processes")
    if args.batch_size % world_size != 0:
        raise UserError(f"--batch-size {args.batch_size} must be divisible by the {world_size} processes")
    # runs/ascl/<run_id>/<the original's results folder>; without --run_id the folder name also carries a digest of
    # every flag that changes the result (the original's name leaves out --lr, --wd, --mem_size ...)
    explicit = getattr(args, "run_id", None) is not None
    with Run.open("ascl", args, name=args.run_id if explicit else "ascl_project", subdir=results_dir_name(args),
                  unique_subdir=not explicit, name_flag="--run_id", overwrite=args.no_auto_resume,
                  overwrite_flag="--no_auto_resume",
                  ignore=("run_id", "entity", "wandb", "gpuid", "no_progress", "no_auto_resume",
                          "variant")) as run:
        pretrain(run, args, device, world_size)
    cleanup()


def pretrain(run: Run, args, device, world_size: int) -> None:
    rank = args.rank if args.distributed else 0
    main_process = run.main
    wandb_run = _maybe_wandb(args, os.path.basename(run.run_dir)) if main_process else None

    loaders = prepare_dataset(args, rank, world_size)
    local_splits = max(args.bn_splits // world_size, 1) if args.bn_splits > 1 else args.bn_splits
    model = ASCL(args.dataset, args.model, args.dim, args.mem_size, args.m, args.t1, args.t2, args.arch, args.type,
                 args.K, local_splits, args.shuffle_bn, args.projector)
    if args.distributed and device.type == "cuda" and args.model == "byol":
        # one device normalised the predictor over the whole batch; across processes that is SyncBN
        model.predictor = nn.SyncBatchNorm.convert_sync_batchnorm(model.predictor)
    precision = MixedPrecision(device, args.amp, args.channels_last)
    model = wrap_ddp(precision.prepare(model), args)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.wd)
    net = unwrap_model(model)

    # ckpts.pth (every --save_freq epochs) is the resume checkpoint; model_last.pth that of a finished run
    explicit = None if args.resume == "run_dir" else args.resume
    resume_name = "ckpts.pth"
    if not os.path.exists(os.path.join(run.run_dir, resume_name)) and \
            os.path.exists(os.path.join(run.run_dir, "model_last.pth")):
        resume_name = "model_last.pth"
    state = run.resume_state(explicit, resume_name, require=("epoch", "state_dict"))
    if args.resume == "run_dir" and state is None:
        raise UserError(f"--resume: no checkpoint (ckpts.pth / model_last.pth) in '{run.run_dir}'; "
                        "pass the checkpoint path, or drop --resume to start a new run")
    start_epoch = run.restore(state, model, optimizer, precision.scaler) if state else 0
    best_acc = float(state.get("best_acc", 0.0)) if state else 0.0   # quirk 8: best accuracy restored

    knn = lambda: knn_test(net.encoder_q, loaders.memory, loaders.test, loaders.num_classes, device,  # noqa: E731
                           args.knn_k, args.knn_t, knn_recalibrate_splits(args))
    if state is None or "initial_knn" not in state:
        initial = knn() if main_process else 0.0
    else:
        initial = float(state["initial_knn"])
    run.info(f"initial knn top-1: {initial:.2f}")
    if start_epoch == 0:
        run.scalar("eval/knn_top1", initial, 0)
    if args.initial_linear_eval and main_process and start_epoch == 0:
        untrained = ASCL(args.dataset, args.model, args.dim, args.mem_size, args.m, args.t1, args.t2, args.arch,
                         args.type, args.K, local_splits, args.shuffle_bn, args.projector).to(device)
        untrained.load_state_dict(net.state_dict())
        acc = linear_eval(untrained.encoder_q, loaders, args, run, tag="initial_eval")
        run.info(f"initial linear top-1: {acc:.2f}")

    train_log = os.path.join(run.run_dir, "train_logs.txt")
    last = {"acc": initial}

    def train_epoch(epoch):
        loaders.train_sampler.set_epoch(epoch)
        loaders.train_dataset.set_epoch(epoch)
        train_loss, lr = train_one_epoch(model, loaders.train, optimizer, epoch, args, precision, run)
        if wandb_run is not None:
            wandb_run.log({"train_loss": train_loss, "lr": lr}, step=epoch)
        return {"epoch_loss": train_loss, "lr": lr}

    def evaluate(epoch):
        if not main_process:
            return None
        last["acc"] = knn()
        with open(train_log, "a") as f:   # appended, not truncated on resume (quirk 8)
            f.write(f"Epoch {epoch}: current {last['acc']:.2f}\n")
        return {"knn_top1": last["acc"]}

    def state_after(done, best):
        # the original's keys {epoch, state_dict, optimizer} in its layout (its --resume loads them), ours beside
        return {"epoch": done, "state_dict": net.original_state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": precision.scaler.state_dict(), "args": vars(args), "best_acc": best or 0.0,
                "initial_knn": initial}

    def checkpoint(done, metrics, best):
        # ckpts.pth after 0-based epochs 50/100/150 (quirk 19); 'epoch' = completed epochs, so a resumed run
        # continues with the next epoch instead of repeating the saved one (quirk 8 fixed)
        epoch = done - 1
        if args.save_freq > 0 and epoch % args.save_freq == 0 and (epoch != 0 or args.save_freq == 1):
            return state_after(done, best)
        return None

    _, best_acc = fit(run, start_epoch, args.epochs, train_epoch, checkpoint, evaluate, metric="knn_top1",
                      resume_name="ckpts.pth", best=best_acc)
    if start_epoch < args.epochs or state is None:
        run.save(state_after(args.epochs, best_acc), "model_last.pth")
    if wandb_run is not None:
        wandb_run.finish()
    barrier()
    acc = last["acc"]
    if main_process:
        if start_epoch >= args.epochs and state is not None:
            acc = knn()
        if args.eval_epochs > 0:
            linear_acc = linear_eval(net.encoder_q, loaders, args, run)
            run.info(f"final linear top-1: {linear_acc:.2f}")
        # last, so the run ends with the same metric it started with ('initial knn top-1')
        run.info(f"final knn top-1: {acc:.2f}")
    run.finish("knn top-1", acc)


def _maybe_wandb(args, results_dir: str):
    if not getattr(args, "wandb", False):
        return None
    try:
        import wandb
    except ImportError:
        print("warning: --wandb given but the wandb package is not installed; logging to tensorboardX only",
              file=sys.stderr)
        return None
    return wandb.init(project=args.run_id or "ascl_project", entity=args.entity, name="train_" + results_dir,
                      config=vars(args))


def main(variant: str = "main", argv=None) -> None:
    args, typed = parse_args(variant, argv)
    notice = neighbour_flag_notice(variant, typed)
    if notice and os.environ.get("RANK", "0") == "0":   # once, not by every process a launcher started
        print(notice, file=sys.stderr, flush=True)
    check_neighbour_flags(args, typed)
    if variant == "main_simple":
        args.run_id, args.entity, args.wandb = None, None, False   # quirk 3 fixed
    single_process = not args.multiprocessing_distributed and "LOCAL_RANK" not in os.environ
    # before any CUDA call, as the original; multi-process launches use every visible GPU instead
    set_visible_gpus("--gpuid", args.gpuid if single_process else None, keep_existing=True)
    if args.dataset == "digits" and args.data_path in ("cifar10", ""):
        args.data_path = None
    elif not args.data_path or not os.path.isdir(args.data_path):
        raise UserError(f"--data_path '{args.data_path}' does not exist; point it (or $DATA) at the {args.dataset} "
                        "root directory (nothing is downloaded)")
    args.eval_batch_size = args.eval_batch_size or None
    validate_args(args)
    launch(main_worker, args)
