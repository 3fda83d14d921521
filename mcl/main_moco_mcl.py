"""Self-supervised MoCo + Mutual Contrastive Learning pre-training (spec §b.3, §d.4, §g.3).

    python main_moco_mcl.py -a resnet18 --lr 0.03 --batch-size 256 --number-net 2 \
        --dist-url tcp://localhost:10001 --multiprocessing-distributed --world-size 1 --rank 0 --data ./data/ImageNet

Differences from the original (README.md): the end-of-epoch log line works (quirk 9), ``--mlp`` really adds
the MoCo-v2 head (quirk 10, only with the flag), ``--gpu-ids`` is optional and a single-process run (CPU or
one GPU) is allowed with identity gathers (quirk 22), checkpoints + logs default to ``runs/mcl/<name>/``,
auto-resume from the newest checkpoint there.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from torch.utils.data import DataLoader

from common.augment import moco_v1_transform, moco_v2_transform
from common.augment.on_device import DeviceViews, add_augment_arg, uint8_collate
from common.backbones import build_backbone, freeze_batchnorm
from common.checkpoint import (capture_rng_state, find_latest_checkpoint, load_checkpoint, restore_rng_state,
                               save_checkpoint)
from common.data import ImageFolder
from common.data.seeded import SeededTransformDataset
from common.eval.metrics import accuracy
from common.distributed import (add_distributed_args, all_reduce_mean, cleanup, is_main_process, launch,
                                per_process_batch_size, rank_split_sampler, set_sampler_epoch, unwrap_model, wrap_ddp)
from common.meters import AverageMeter, ProgressMeter
from common.training import load_model_state, progress
from common.utils import (HelpFormatter, MixedPrecision, UserError, add_precision_args, check_finite, run_main,
                          set_visible_gpus)
from mcl.engine import start_run
from mcl.moco.builder_mcl import MoCo
from mcl.moco.loader import TwoCropsTransform


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="MoCo + MCL pre-training (main_moco_mcl.py)",
                                formatter_class=HelpFormatter)
    p.add_argument("--data", metavar="DIR", default="./data/ImageNet/", help="dataset root holding train/")
    p.add_argument("-a", "--arch", metavar="ARCH", default="resnet50",
                   help="torchvision-style encoder name from common.backbones (resnet18, resnet50, ...)")
    p.add_argument("-j", "--workers", default=32, type=int, help="data loading workers (total, split per process)")
    p.add_argument("--epochs", default=200, type=int, help="number of total epochs to run")
    p.add_argument("--start-epoch", default=0, type=int, help="manual epoch number (useful on restarts)")
    p.add_argument("-b", "--batch-size", default=256, type=int,
                   help="total batch size of all processes of this node")
    p.add_argument("--lr", "--learning-rate", default=0.03, type=float, dest="lr", help="initial learning rate")
    p.add_argument("--schedule", default=[120, 160], nargs="*", type=int, help="epochs of x0.1 (without --cos)")
    p.add_argument("--momentum", default=0.9, type=float, help="SGD momentum")
    p.add_argument("--wd", "--weight-decay", default=1e-4, type=float, dest="weight_decay", help="weight decay")
    p.add_argument("-p", "--print-freq", default=10, type=int, help="print frequency (iterations)")
    p.add_argument("--resume", default="", type=str, metavar="PATH",
                   help="checkpoint to resume from (default: newest checkpoint of the run directory)")
    p.add_argument("--seed", default=None, type=int, help="seed for initializing training")
    p.add_argument("--gpu-ids", default=None, type=str,
                   help="written to CUDA_VISIBLE_DEVICES before CUDA starts, if given (quirk 22 fixed: optional here, "
                        "required by the original); without CUDA a notice and the CPU")
    p.add_argument("--number-net", default=2, type=int,
                   help="number of peer networks N (quirk 21: at least 2, N = 1 crashed late in the original; refused "
                        "up front)")
    p.add_argument("--moco-dim", default=128, type=int, help="feature dimension")
    p.add_argument("--moco-k", default=65536, type=int, help="queue size per network; must be divisible by the batch")
    p.add_argument("--moco-m", default=0.999, type=float, help="key-encoder momentum")
    p.add_argument("--moco-t", default=0.07, type=float, help="softmax temperature")
    p.add_argument("--checkpoint", default=None, type=str,
                   help="output directory of the log and checkpoints (default: runs/mcl/<name>/; "
                        "the original used ./checkpoint/)")
    p.add_argument("--mlp", action="store_true",
                   help="MoCo-v2 MLP head. FIXED: replaces each encoder's fc with Linear-ReLU-fc; in the original "
                        "the flag registered unused modules and had no effect (quirk 10)")
    p.add_argument("--aug-plus", action="store_true", help="MoCo-v2 augmentation")
    p.add_argument("--cos", action="store_true", help="cosine learning-rate schedule")
    # additions
    p.add_argument("--image-size", default=224, type=int, help="crop size (smaller for smoke tests)")
    add_augment_arg(p)
    add_precision_args(p)
    p.add_argument("--name", default=None, type=str, help="run name (default moco_mcl_<arch>_n<N>)")
    p.add_argument("--device", default=None, type=str, help="cpu / cuda (default: cuda if available)")
    p.add_argument("--max-iters", default=0, type=int, help="stop each epoch after this many iterations (0: all)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep BatchNorm layers in eval mode while training (testing aid: per-process batch statistics "
                        "and shuffle-BN make a multi-process run differ from one process; see common.backbones)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bars")
    add_distributed_args(p)
    return p


def adjust_learning_rate(optimizer, epoch, args) -> float:
    lr = args.lr
    if args.cos:
        lr *= 0.5 * (1.0 + math.cos(math.pi * epoch / args.epochs))
    else:
        for milestone in args.schedule:
            lr *= 0.1 if epoch >= milestone else 1.0
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    return lr


def build_encoder(arch):
    def base_encoder(num_classes):
        try:
            return build_backbone(arch, num_classes=num_classes)
        except ValueError as e:
            raise UserError(f"-a/--arch {arch}: {e}") from None
    return base_encoder


def main_worker(local_rank, args):
    _, run_dir, logger = start_run(local_rank, args, args.seed, deterministic=args.seed is not None)
    out_dir = args.checkpoint or run_dir

    args.local_batch_size = per_process_batch_size(args.batch_size, args)
    global_batch = args.local_batch_size * args.world_size
    if args.moco_k % global_batch:
        raise UserError(f"--moco-k {args.moco_k} is not divisible by the global batch size {global_batch} "
                        f"(--batch-size x processes); the queue would be overrun. Pick a multiple, "
                        f"e.g. --moco-k {global_batch * max(1, args.moco_k // global_batch)}")
    workers = int((args.workers + args.ngpus_per_node - 1) / args.ngpus_per_node) if args.distributed else args.workers

    model = MoCo(build_encoder(args.arch), args.number_net, args.moco_dim, args.moco_k, args.moco_m,
                 args.moco_t, args.mlp)
    precision = MixedPrecision(args.device, args.amp, args.channels_last)
    model = wrap_ddp(precision.prepare(model), args)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], args.lr,
                                momentum=args.momentum, weight_decay=args.weight_decay)

    resume_path = args.resume or find_latest_checkpoint(out_dir, pattern="checkpoint_*.pth.tar")
    if resume_path:
        state = load_checkpoint(resume_path)
        for key in ("state_dict", "epoch", "optimizer"):
            if key not in state:
                raise UserError(f"'{resume_path}' has no '{key}' entry; it is not a main_moco_mcl.py checkpoint")
        load_model_state(model, state["state_dict"], source=f"checkpoint '{resume_path}'")
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise UserError(f"optimizer state in '{resume_path}' does not match this run ({e})") from None
        if state.get("scaler"):   # empty when the scaler is off (no AMP, or bfloat16 on CPU)
            precision.scaler.load_state_dict(state["scaler"])
        args.start_epoch = int(state["epoch"])
        restore_rng_state(state.get("rng_state"))
        logger.info(f"=> loaded checkpoint '{resume_path}' (epoch {state['epoch']})")

    batched = None
    if args.augment == "batched":  # the loader only decodes; the two views are made on the device
        from common.augment import batched as B
        batched = B.BatchedMultiView((B.batched_moco_v2_transform if args.aug_plus else B.batched_moco_v1_transform)(
            args.image_size), 2)
        view_transform = B.ToUint8Tensor()
    else:
        view_transform = TwoCropsTransform((moco_v2_transform if args.aug_plus else moco_v1_transform)(args.image_size))
    views_of = DeviceViews(batched, args.device, args.seed, args.rank, args.channels_last)
    # with --seed the views of an image depend on (seed, epoch, index) only and the batches on (seed, epoch), so
    # runs with any number of processes see the same global batches
    train_dataset = SeededTransformDataset(ImageFolder(os.path.join(args.data, "train")), view_transform, args.seed)
    train_sampler = rank_split_sampler(train_dataset, shuffle=True, drop_last=True, seed=args.seed or 0)
    train_loader = DataLoader(train_dataset, batch_size=args.local_batch_size, shuffle=train_sampler is None,
                              num_workers=workers, pin_memory=args.device.type == "cuda", sampler=train_sampler,
                              drop_last=True, collate_fn=uint8_collate if batched is not None else None)
    if len(train_loader) == 0:
        raise UserError(f"{len(train_dataset)} training images give no full batch of {args.local_batch_size}; "
                        "lower --batch-size")

    for epoch in range(args.start_epoch, args.epochs):
        set_sampler_epoch(train_sampler, epoch)
        train_dataset.set_epoch(epoch)
        views_of.set_epoch(epoch)
        lr = adjust_learning_rate(optimizer, epoch, args)
        meters = train(train_loader, model, optimizer, epoch, args, logger, views_of, precision)
        top1_avg, top5_avg = meters["Acc@1"].avg, meters["Acc@5"].avg
        # quirk 9 fixed: the original referenced undefined top1_avg / top5_avg here
        line = (f"Epoch:{epoch}\t lr:{lr:.5f}\t loss:{meters['Loss'].avg:.4f}\t "
                + "\t ".join(f"{n}:{meters[n].avg:.4f}" for n in ("VCL", "SoftVCL", "ICL", "SoftICL"))
                + f"\t Acc@1:{top1_avg:.3f}\t Acc@5:{top5_avg:.3f}")
        logger.info(line)
        for name, meter in meters.items():
            logger.scalar(f"train/{name}", meter.avg, epoch)
        logger.scalar("train/lr", lr, epoch)
        if is_main_process():
            with open(os.path.join(out_dir, f"imagenet_{args.arch}_moco.txt"), "a") as f:
                f.write(line + "\n")
            state_dict = {"module." + k: v for k, v in unwrap_model(model).state_dict().items()}
            save_checkpoint({"epoch": epoch + 1, "arch": args.arch, "state_dict": state_dict,
                             "optimizer": optimizer.state_dict(), "scaler": precision.scaler.state_dict(),
                             "rng_state": capture_rng_state()},
                            os.path.join(out_dir, f"checkpoint_{epoch:04d}.pth.tar"))
    logger.close()
    cleanup()


def train(train_loader, model, optimizer, epoch, args, logger, views_of: DeviceViews, precision: MixedPrecision):
    names = ("Loss", "VCL", "SoftVCL", "ICL", "SoftICL", "Acc@1", "Acc@5")
    meters = {n: AverageMeter(n, ":.4f") for n in names}
    batch_time, data_time = AverageMeter("Time", ":6.3f"), AverageMeter("Data", ":6.3f")
    total = min(len(train_loader), args.max_iters) if args.max_iters else len(train_loader)
    meter = ProgressMeter(total, [batch_time, data_time, *meters.values()], prefix=f"Epoch: [{epoch}]")
    model.train()
    if args.freeze_bn:
        freeze_batchnorm(model)
    end = time.time()
    for i, (images, _) in enumerate(progress(train_loader, f"epoch {epoch}", args.progress, total=total)):
        if args.max_iters and i >= args.max_iters:
            break
        data_time.update(time.time() - end)
        im_q, im_k = views_of(images)
        with precision.autocast():  # the builder computes the MoCo-MCL loss in float32 whatever autocast says
            logits, labels, vcl, soft_vcl, icl, soft_icl = model(im_q, im_k)
        loss = vcl + soft_vcl + icl + soft_icl
        optimizer.zero_grad(set_to_none=True)
        precision.backward_step(loss, optimizer)
        if i % args.print_freq == 0 or i + 1 == total:
            check_finite(loss, f"{epoch}:{i}", hint="Try a lower --lr.")
            acc1, acc5 = accuracy(logits[0], labels, topk=(1, 5))
            batch = im_q.shape[0]  # per-sample weighting (the original's lincls used images[0].size(0))
            # the global batch's values (every process has the same local batch size), not rank 0's half
            values = all_reduce_mean(torch.stack([loss, vcl, soft_vcl, icl, soft_icl, acc1, acc5])).tolist()
            for n, v in zip(names, values):
                meters[n].update(v, batch)
            batch_time.update(time.time() - end)
            if not args.progress:
                logger.info(meter.format(i))
        end = time.time()
    return meters


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.number_net < 2:
        raise UserError(f"--number-net {args.number_net}: MCL needs at least 2 networks (quirk 21)")
    set_visible_gpus("--gpu-ids", args.gpu_ids)  # before any CUDA call, as the original
    if args.name is None:
        args.name = f"moco_mcl_{args.arch}_n{args.number_net}"
    launch(main_worker, args)


if __name__ == "__main__":
    run_main(main)
