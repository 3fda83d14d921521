"""ImageNet-1K ASCL training, the official moco ``main_moco.py`` adapted to ``ImageNet-1K/builder.py`` (spec §i).

Changes from the official script (the original repository did not ship them): the builder is constructed with
keywords (quirk 6), the loader's class labels are passed to the model (label buffer), the four outputs are
unpacked and the loss is the soft cross-entropy −Σ y log softmax(logits) (batch mean); the contrastive
"accuracy" is still measured against class 0 (the own key).  ``--moco-t`` is replaced by ``--moco-t1`` /
``--moco-t2``.  Entry file: ``ImageNet-1K/main_moco.py``.
"""
from __future__ import annotations

import argparse
import functools
import os
import time

import torch

from common.augment import TwoCropsTransform, moco_v1_transform, moco_v2_transform
from common.backbones import build_backbone, list_backbones
from common.data import build_dataset
from common.data.seeded import SeededTransformDataset
from common.distributed import (add_distributed_args, all_reduce_mean, cleanup, init_distributed, launch,
                                module_state_dict, per_process_batch_size, wrap_ddp)
from common.eval import accuracy
from common.engine import Run, fit
from common.meters import AverageMeter, ProgressMeter
from common.schedules import cosine_lr, set_lr, step_lr
from common.training import rank_split_loader, train_batches
from common.utils import HelpFormatter, MixedPrecision, UserError, add_precision_args, check_finite, seed_everything
from ascl.imagenet_builder import MoCo
from ascl.losses import soft_cross_entropy


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="ASCL ImageNet training (moco main_moco.py with the ASCL builder)",
                                     formatter_class=HelpFormatter)
    parser.add_argument("data", metavar="DIR", nargs="?", default=os.environ.get("DATA"),
                        help="path to the dataset (ImageFolder layout: DIR/train/<class>/*.JPEG); default $DATA")
    parser.add_argument("-a", "--arch", metavar="ARCH", default="resnet50",
                        help="model architecture (a common.backbones name with an 'fc' head)")
    parser.add_argument("-j", "--workers", default=32, type=int, metavar="N", help="number of data loading workers")
    parser.add_argument("--epochs", default=200, type=int, metavar="N", help="number of total epochs to run")
    parser.add_argument("--start-epoch", default=0, type=int, metavar="N",
                        help="manual epoch number (useful on restarts)")
    parser.add_argument("-b", "--batch-size", default=256, type=int, metavar="N",
                        help="total mini-batch size over all processes")
    parser.add_argument("--lr", "--learning-rate", default=0.03, type=float, metavar="LR", dest="lr",
                        help="initial learning rate")
    parser.add_argument("--schedule", default=[120, 160], nargs="*", type=int,
                        help="learning rate schedule (when to drop lr by 10x)")
    parser.add_argument("--momentum", default=0.9, type=float, metavar="M", help="momentum of SGD solver")
    parser.add_argument("--wd", "--weight-decay", default=1e-4, type=float, metavar="W", dest="weight_decay",
                        help="weight decay")
    parser.add_argument("-p", "--print-freq", default=10, type=int, metavar="N", help="print frequency")
    parser.add_argument("--resume", default="", type=str, metavar="PATH",
                        help="path to latest checkpoint (default: none; the run directory is auto-resumed)")
    parser.add_argument("--no-auto-resume", action="store_true", help="ignore checkpoints in the run directory")
    parser.add_argument("--seed", default=None, type=int, help="seed for initializing training")
    add_precision_args(parser)
    parser.add_argument("--moco-dim", default=128, type=int, help="feature dimension")
    parser.add_argument("--moco-k", default=65536, type=int, help="queue size; number of negative keys")
    parser.add_argument("--moco-m", default=0.999, type=float, help="moco momentum of updating key encoder")
    parser.add_argument("--moco-t1", "--moco-t", default=0.1, type=float, dest="moco_t1",
                        help="student temperature T1; --moco-t is MoCo's spelling (the original passed main_moco's "
                             "single temperature positionally into T1; quirk 6 fixed: keywords, so --mlp no longer "
                             "lands in T2)")
    parser.add_argument("--moco-t2", default=0.05, type=float, help="teacher (neighbour) temperature T2")
    parser.add_argument("--mlp", action="store_true", help="use mlp head")
    parser.add_argument("--aug-plus", action="store_true", help="use moco v2 data augmentation")
    parser.add_argument("--cos", action="store_true", help="use cosine lr schedule")
    parser.add_argument("--image-size", default=224, type=int, help="crop size (smaller for smoke tests)")
    parser.add_argument("--iters-per-epoch", default=0, type=int, help="stop each epoch after N iterations (0 = all)")
    parser.add_argument("--name", default="", help="run name under runs/ascl/ (default imagenet_<arch>)")
    parser.add_argument("--freeze-bn", action="store_true",
                        help="BatchNorm in eval mode while training (testing aid: per-process BN and shuffle-BN make "
                             "a multi-process run differ from one process; see common.backbones.freeze_batchnorm)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    add_distributed_args(parser)
    return parser


def adjust_learning_rate(optimizer, epoch: int, args) -> float:
    """Decay the learning rate per epoch: half-cosine with ``--cos``, else ×0.1 at each ``--schedule`` milestone."""
    lr = cosine_lr(args.lr, epoch, args.epochs) if args.cos else step_lr(args.lr, epoch, args.schedule)
    return set_lr(optimizer, lr)


def train(train_loader, model, optimizer, epoch: int, args, run: Run, precision: MixedPrecision) -> float:
    batch_time, data_time = AverageMeter("Time", ":6.3f"), AverageMeter("Data", ":6.3f")
    losses, top1, top5 = AverageMeter("Loss", ":.4e"), AverageMeter("Acc@1", ":6.2f"), AverageMeter("Acc@5", ":6.2f")
    confidence, max_weight = AverageMeter("Conf", ":.3f"), AverageMeter("MaxW", ":.3f")
    iters, batches = train_batches(run, train_loader, model, args, f"epoch {epoch}", args.iters_per_epoch,
                                   enabled=not args.no_progress)
    meter = ProgressMeter(iters, [batch_time, data_time, losses, top1, top5, confidence, max_weight],
                          prefix=f"Epoch: [{epoch}]")
    end = time.time()
    for i, (images, target) in batches:
        data_time.update(time.time() - end)
        im_q = precision.input(images[0].to(args.device, non_blocking=True))
        im_k = precision.input(images[1].to(args.device, non_blocking=True))
        target = target.to(args.device, non_blocking=True)
        with precision.autocast():
            logits, soft_targets, delta_mean, max_weight_mean = model(im_q=im_q, im_k=im_k, targets=target)
        logits, soft_targets = logits.float(), soft_targets.float()
        loss = soft_cross_entropy(logits, soft_targets)
        optimizer.zero_grad()
        precision.backward_step(loss, optimizer)
        run.step += 1
        batch_time.update(time.time() - end)
        end = time.time()
        if i % args.print_freq == 0 or i + 1 == iters:
            check_finite(loss, f"{i} of epoch {epoch}")
            own_key = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
            acc1, acc5 = accuracy(logits.detach(), own_key, topk=(1, min(5, logits.shape[1])))
            n = im_q.shape[0]
            # the global batch's values (equal local batches), not rank 0's half
            values = all_reduce_mean(torch.stack([loss.detach(), acc1, acc5, delta_mean, max_weight_mean])).tolist()
            for average, value in zip((losses, top1, top5, confidence, max_weight), values):
                average.update(value, n)
            run.info(meter.format(i))
            run.scalar("train/loss", values[0])
    run.scalars({"top1": top1.avg, "confidence": confidence.avg, "max_weight": max_weight.avg}, prefix="train/")
    return losses.avg


def main_worker(local_rank: int, args) -> None:
    init_distributed(args, local_rank)
    if args.seed is not None:
        seed_everything(args.seed)
    with Run.open("ascl", args, readable=f"imagenet_{args.arch}", name=args.name or None,
                  overwrite=args.no_auto_resume, ignore=("no_auto_resume", "no_progress")) as run:
        train_run(run, args)
    cleanup()


def train_run(run: Run, args) -> None:
    run.info(f"=> creating model '{args.arch}'")
    base_encoder = functools.partial(build_backbone, args.arch)
    # keywords, not positions: the official call would put the temperature into T1 and --mlp into T2 (quirk 6)
    model = MoCo(base_encoder, dim=args.moco_dim, K=args.moco_k, m=args.moco_m, T1=args.moco_t1, T2=args.moco_t2,
                 mlp=args.mlp)
    precision = MixedPrecision(args.device, args.amp, args.channels_last)
    model = wrap_ddp(precision.prepare(model), args)
    batch_size = per_process_batch_size(args.batch_size, args)
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)

    state = run.resume_state(args.resume, "checkpoint_*.pth.tar", require=("epoch", "state_dict"))
    start_epoch = run.restore(state, model, optimizer, precision.scaler) if state else 0
    start_epoch = max(start_epoch, args.start_epoch)

    size = args.image_size
    augmentation = (moco_v2_transform(size, "imagenet") if args.aug_plus else moco_v1_transform(size, "imagenet"))
    # with --seed the views of an image depend on (seed, epoch, index) only and the global batches on (seed, epoch):
    # the same for any number of processes (rank r takes every W-th sample of each global batch)
    train_dataset = SeededTransformDataset(build_dataset("imagefolder", args.data, "train"),
                                           TwoCropsTransform(augmentation), args.seed)
    train_loader, set_epoch = rank_split_loader(train_dataset, batch_size, args.workers, args)
    last = {}

    def train_one_epoch(epoch):
        set_epoch(epoch)
        lr = adjust_learning_rate(optimizer, epoch, args)
        last["loss"] = train(train_loader, model, optimizer, epoch, args, run, precision)
        return {"lr": lr, "epoch_loss": last["loss"]}

    def checkpoint(done, metrics, best):
        # MoCo's layout, read by MoCo's main_lincls.py: the DDP model's keys ('module.encoder_q.'), 'arch',
        # 'epoch' = completed epochs, and the file numbered by the 0-based epoch index (checkpoint_0000 after epoch 0)
        return {"epoch": done, "arch": args.arch, "state_dict": module_state_dict(model),
                "optimizer": optimizer.state_dict(), "scaler": precision.scaler.state_dict(), "args": vars(args)}

    fit(run, start_epoch, args.epochs, train_one_epoch, checkpoint, resume_name="checkpoint_{epoch:04d}.pth.tar")
    run.finish("loss", last.get("loss"))


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if not args.data or not os.path.isdir(args.data):
        raise UserError(f"data directory '{args.data}' does not exist; pass the ImageNet root (holding train/) as "
                        "the first argument or set $DATA")
    if args.arch not in list_backbones():
        raise UserError(f"unknown --arch '{args.arch}'; choose one of {', '.join(list_backbones())}")
    if args.moco_k % args.batch_size != 0:
        raise UserError(f"--moco-k {args.moco_k} must be a multiple of the total batch size {args.batch_size} "
                        "(each enqueue writes one whole global batch)")
    launch(main_worker, args)
