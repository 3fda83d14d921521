"""Linear classification on a frozen pre-trained backbone (spec §b.4 / §b.7, §h).

Two variants share this code:
* ``imagenet_pretraining/main_lincls.py`` (MoCo v3): keys ``module.base_encoder.*``, lr = lr·batch/256 with
  a per-epoch cosine, 90 epochs, batch 1024, ``--output_dir``;
* ``large_scale_shift_experiments/*/main_lincls.py`` (MoCo v1/v2): keys ``module.encoder_q.*``, lr 30 with
  ×0.1 at 60 / 80, 100 epochs, batch 256 per node, output next to the checkpoint.
Everything but the classifier (``fc`` / ``heads.head``, init N(0, 0.01²), bias 0) is frozen and kept in eval
mode; top-1 / top-5 on ``val`` each epoch; a sanity check that no backbone weight changed.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from common import distributed as cdist
from common.backbones import build_backbone
from common.engine import add_run_args, args_record, fit
from common.meters import AverageMeter, ProgressMeter
from common.schedules import moco_epoch_lr
from common.training import (add_moco_args, check_frozen, classifier_epoch, linear_classification_sets,
                             linear_head_training, rank_split_loader)
from common.utils import HelpFormatter, UserError, check_finite, run_main, set_visible_gpus

from cacr.imagenet_pretraining import vits
from cacr.worker import open_run

RESUME_FILE = "checkpoint.pth.tar"

VARIANTS = {
    "v3": dict(prefix="module.base_encoder.", epochs=90, batch_size=1024, lr=0.1, dist_url="tcp://224.66.41.62:23456",
               print_freq=10),
    "large": dict(prefix="module.encoder_q.", epochs=100, batch_size=256, lr=30.0, dist_url="tcp://localhost:10003",
                  print_freq=50),
}


def get_parser(variant: str):
    v = VARIANTS[variant]
    parser = argparse.ArgumentParser(
        description="Linear classification of a frozen CACR encoder", formatter_class=HelpFormatter)
    add_moco_args(parser, epochs=v["epochs"], batch_size=v["batch_size"], lr=v["lr"],
                  schedule=[60, 80] if variant == "large" else None, weight_decay=0.0, print_freq=v["print_freq"],
                  evaluate=True, data_help="ImageFolder root with train/ and val/; env DATA", helps={
                      "batch_size": "total batch" if variant == "v3" else "batch per node (divided over its processes)",
                      "lr": "base lr (actual lr·batch/256)" if variant == "v3" else "learning rate (no scaling)",
                      "resume": "linear-eval checkpoint to resume", "evaluate": "only evaluate on the validation set",
                      "arch": "a vit_* model or a torchvision / common backbone name"})
    parser.add_argument("--pretrained", default="", type=str, help="path to the pre-training checkpoint (required)")
    if variant == "v3":
        parser.add_argument("--output_dir", default=None, type=str,
                            help="checkpoint directory (default runs/cacr/lincls_<arch>; original ./output_dir)")
    else:
        parser.add_argument("--gpus", type=int, nargs="*", default=None,
                            help="GPU ids on this node, written to CUDA_VISIBLE_DEVICES before CUDA starts; without "
                                 "CUDA a notice and the CPU")
    parser.add_argument("--image-size", default=224, type=int, help="crop size (small for smoke tests)")
    add_run_args(parser, auto_resume="--no-auto-resume")
    cdist.add_distributed_args(parser, dist_url=v["dist_url"])
    return parser


def build_classifier_model(arch, num_classes, image_size):
    if arch.startswith("vit"):
        model = vits.build_vit(arch, image_size, num_classes=num_classes)
        return model, model.heads.head, "heads.head"
    model = build_backbone(arch, num_classes=num_classes)
    return model, model.fc, "fc"


def main(argv=None, variant: str = "v3"):
    args = get_parser(variant).parse_args(argv)
    args.variant = variant
    if not args.data:
        raise UserError("no dataset root given: pass it as the positional DIR argument or set DATA")
    if not args.pretrained and not args.resume:
        raise UserError("--pretrained <pre-training checkpoint> is required")
    if args.pretrained and not os.path.isfile(args.pretrained):
        raise UserError(f"=> no checkpoint found at '{args.pretrained}'; check --pretrained")
    if variant == "large":
        set_visible_gpus("--gpus", args.gpus)  # before any CUDA call, as the original
        if args.pretrained:
            base = os.path.basename(args.pretrained)
            args.output_dir = os.path.join(os.path.dirname(os.path.abspath(args.pretrained)), "lincls", base,
                                           f"b{args.batch_size}_lr{args.lr:g}_e{','.join(map(str, args.schedule))},"
                                           f"{args.epochs}")
        else:
            args.output_dir = os.path.dirname(os.path.abspath(args.resume))
    cdist.launch(main_worker, args)


def adjust_learning_rate(optimizer, epoch, args):
    """Per epoch: MoCo v3's cosine, the large-scale variant's ×0.1 at each ``--schedule`` milestone."""
    return moco_epoch_lr(optimizer, epoch, args, cos=args.variant == "v3")


def main_worker(local_rank, args):
    # the run folder is the original's: --output_dir (MoCo v3) or next to the pre-training checkpoint (large scale);
    # -e/--evaluate only reports, so it neither continues nor completes a run
    with open_run(local_rank, args, readable=f"lincls_{args.arch}", folder=args.output_dir,
                  overwrite=args.evaluate or bool(args.resume) or not args.auto_resume, ignore=("start_epoch",)) as run:
        linear_classification(run, args)
    cdist.cleanup()


def linear_classification(run, args):
    # with --seed, an image's crop / flip depends on (seed, epoch, index) only: any number of processes sees the
    # same global batches (and a resumed run the batches it would have seen)
    train_set, val_set = linear_classification_sets(args.data, args.image_size,
                                                     max(args.image_size * 256 // 224, args.image_size), args.seed)
    num_classes = len(train_set.classes)
    if args.variant == "v3":
        args.lr = args.lr * args.batch_size / 256
        batch_size = args.batch_size // args.world_size
    else:
        batch_size = cdist.per_process_batch_size(args.batch_size, args)
    workers = cdist.per_process_workers(args.workers, args)
    model, optimizer, reference = linear_head_training(*build_classifier_model(args.arch, num_classes, args.image_size),
                                                       args, args.pretrained, VARIANTS[args.variant]["prefix"])
    if args.pretrained:
        run.info(f"=> loaded pre-trained model '{args.pretrained}'")
    start_epoch, best_acc1 = args.start_epoch, 0.0
    # ours or the original's checkpoint.pth.tar (the same keys: epoch, arch, state_dict with module., best_acc1 ...)
    state = run.resume_state(args.resume, RESUME_FILE, require=("epoch", "state_dict", "optimizer"))
    if state is not None:
        start_epoch = run.restore(state, model, optimizer)
        best_acc1 = float(state.get("best_acc1", 0.0))

    # one sampler for any number of processes: process r takes samples r, r+W, ... of each global batch, so 1 and
    # W processes train on the same global batches (the last partial batch is split with the sampler's padding)
    train_loader, set_epoch = rank_split_loader(train_set, batch_size, workers, args, drop_last=False)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=256, shuffle=False, num_workers=workers,
                                             pin_memory=args.device.type == "cuda")
    if args.evaluate:
        acc1, acc5 = validate(val_loader, model, args, run)
        run.info(f"final linear top-1: {acc1:.2f}")
        return

    def one_epoch(epoch):
        set_epoch(epoch)
        lr = adjust_learning_rate(optimizer, epoch, args)
        train(train_loader, model, optimizer, epoch, args, run)
        if epoch == start_epoch and args.pretrained:
            check_frozen(model, reference)
        return {"lr": lr}

    def evaluate(epoch):
        acc1, acc5 = validate(val_loader, model, args, run)
        return {"linear_top1": acc1, "top5": acc5}

    def checkpoint(done, metrics, best):
        # the original's layout: DDP keys (module.fc... / module.heads.head...), best_acc1; model_best.pth.tar
        return {"epoch": done, "arch": args.arch, "state_dict": cdist.module_state_dict(model), "best_acc1": best,
                "optimizer": optimizer.state_dict(), "acc1": metrics["linear_top1"], "acc5": metrics["top5"],
                "args": args_record(args)}

    metrics, best_acc1 = fit(run, start_epoch, args.epochs, one_epoch, checkpoint, evaluate, metric="linear_top1",
                             resume_name=RESUME_FILE, best_name="model_best.pth.tar", best=best_acc1)
    acc1 = metrics["linear_top1"] if metrics else float((state or {}).get("acc1", 0.0))
    run.info(f"best linear top-1: {best_acc1:.2f}")
    run.info(f"final linear top-1: {acc1:.2f}")
    run.finish("linear top-1", acc1)


def train(loader, model, optimizer, epoch, args, run):
    meters = [AverageMeter("Time", ":6.3f"), AverageMeter("Loss", ":.4e"), AverageMeter("Acc@1", ":6.2f"),
              AverageMeter("Acc@5", ":6.2f")]
    n_iters = min(len(loader), args.max_iters) if args.max_iters else len(loader)
    prog = ProgressMeter(n_iters, meters, prefix=f"Epoch: [{epoch}]")
    end = [time.time()]

    def log(i, loss, acc1, acc5, n, sums):
        if i % args.print_freq == 0 or i == n_iters - 1:
            # the global batch's loss (the mean of the processes' halves); every process stops together on NaN
            loss_value = cdist.all_reduce_mean(loss.detach()).item()
            check_finite(loss_value, f"epoch {epoch} iteration {i}")
            run.scalar("train/loss", loss_value)
            for meter, value in zip(meters[1:], (loss_value, acc1.item(), acc5.item())):
                meter.update(value, n)
            meters[0].update(time.time() - end[0])
            run.info(prog.format(i))
        end[0] = time.time()

    # the frozen backbone stays in eval mode (BN statistics are not updated)
    classifier_epoch(model, loader, args, optimizer, run, on_batch=log, max_iters=args.max_iters,
                     bar=run.progress(loader, f"lincls {epoch}", total=n_iters, enabled=args.progress))


def validate(loader, model, args, run):
    _, acc1, acc5 = classifier_epoch(model, loader, args, max_iters=args.max_iters)
    run.info(f" * Acc@1 {acc1:.3f} Acc@5 {acc5:.3f}")
    return acc1, acc5


if __name__ == "__main__":
    run_main(main)
