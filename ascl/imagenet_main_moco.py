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

import torch

from common.augment import TwoCropsTransform, moco_v1_transform, moco_v2_transform
from common.backbones import build_backbone, list_backbones
from common.data import build_dataset
from common.data.seeded import SeededTransformDataset
from common.distributed import (add_distributed_args, cleanup, init_distributed, launch,
                                module_state_dict, per_process_batch_size, wrap_ddp)
from common.eval import accuracy
from common.engine import Run, fit
from common.schedules import moco_epoch_lr
from common.training import add_moco_args, add_moco_model_args, meter_epoch, rank_split_loader
from common.utils import HelpFormatter, MixedPrecision, UserError, add_precision_args, seed_everything
from ascl.imagenet_builder import MoCo
from ascl.losses import soft_cross_entropy


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="ASCL ImageNet training (moco main_moco.py with the ASCL builder)",
                                     formatter_class=HelpFormatter)
    add_moco_args(parser, data_help="path to the dataset (ImageFolder layout: DIR/train/<class>/*.JPEG); default "
                  "$DATA", helps={"arch": "model architecture (a common.backbones name with an 'fc' head)",
                                  "batch_size": "total mini-batch size over all processes"})
    parser.add_argument("--no-auto-resume", action="store_true", help="ignore checkpoints in the run directory")
    add_precision_args(parser)
    add_moco_model_args(parser, t=None)
    parser.add_argument("--moco-t1", "--moco-t", default=0.1, type=float, dest="moco_t1",
                        help="student temperature T1; --moco-t is MoCo's spelling (the original passed main_moco's "
                             "single temperature positionally into T1; quirk 6 fixed: keywords, so --mlp no longer "
                             "lands in T2)")
    parser.add_argument("--moco-t2", default=0.05, type=float, help="teacher (neighbour) temperature T2")
    parser.add_argument("--image-size", default=224, type=int, help="crop size (smaller for smoke tests)")
    parser.add_argument("--iters-per-epoch", default=0, type=int, help="stop each epoch after N iterations (0 = all)")
    parser.add_argument("--name", default="", help="run name under runs/ascl/ (default imagenet_<arch>)")
    parser.add_argument("--freeze-bn", action="store_true",
                        help="BatchNorm in eval mode while training (testing aid: per-process BN and shuffle-BN make "
                             "a multi-process run differ from one process; see common.backbones.freeze_batchnorm)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    add_distributed_args(parser)
    return parser


def train(train_loader, model, optimizer, epoch: int, args, run: Run, precision: MixedPrecision) -> float:
    def step(i, images_target):
        images, target = images_target
        im_q = precision.input(images[0].to(args.device, non_blocking=True))
        im_k = precision.input(images[1].to(args.device, non_blocking=True))
        target = target.to(args.device, non_blocking=True)
        with precision.autocast():
            logits, soft_targets, delta_mean, max_weight_mean = model(im_q=im_q, im_k=im_k, targets=target)
        logits, soft_targets = logits.float(), soft_targets.float()
        loss = soft_cross_entropy(logits, soft_targets)

        def report():   # the contrastive "accuracy" is measured against class 0, the own key
            own_key = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
            acc1, acc5 = accuracy(logits.detach(), own_key, topk=(1, min(5, logits.shape[1])))
            return torch.stack([loss.detach(), acc1, acc5, delta_mean, max_weight_mean])
        return loss, im_q.shape[0], report

    meters = meter_epoch(run, train_loader, model, args, epoch, step, optimizer, precision.backward_step,
                         [("Loss", ":.4e"), ("Acc@1", ":6.2f"), ("Acc@5", ":6.2f"), ("Conf", ":.3f"),
                          ("MaxW", ":.3f")], max_iters=args.iters_per_epoch, enabled=not args.no_progress,
                         where="{i} of epoch {epoch}")
    run.scalars({"top1": meters["Acc@1"].avg, "confidence": meters["Conf"].avg, "max_weight": meters["MaxW"].avg},
                prefix="train/")
    return meters["Loss"].avg


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
        lr = moco_epoch_lr(optimizer, epoch, args)
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
