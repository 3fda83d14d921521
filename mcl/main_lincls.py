"""Linear classification of a MoCo-MCL checkpoint (network 0's query encoder), MoCo's protocol (spec §b.4, §h).

    python main_lincls.py -a resnet18 --lr 30.0 --batch-size 256 --pretrained <dir>/checkpoint_0199.pth.tar \
        --dist-url tcp://localhost:10001 --multiprocessing-distributed --world-size 1 --rank 0 --data ./data/ImageNet

Fixed against the original (README.md): ``-e/--evaluate`` works (quirk 11), accuracy meters are weighted by
the batch size (quirk 12), ``--resume`` works (quirk 13). The backbone stays in eval mode while training
(frozen BN statistics), as in the original.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from common.augment import linear_train_transform, linear_val_transform
from common.backbones import build_backbone
from common.checkpoint import (capture_rng_state, find_latest_checkpoint, load_checkpoint, restore_rng_state,
                               save_checkpoint)
from common.data import ImageFolder, folder_classes
from common.data.seeded import SeededTransformDataset
from common.distributed import (add_distributed_args, all_reduce_mean, cleanup, get_world_size, is_main_process,
                                launch, per_process_batch_size, rank_split_sampler, set_sampler_epoch, unwrap_model,
                                wrap_ddp)
from common.eval.metrics import accuracy
from common.meters import AverageMeter
from common.training import load_model_state, progress
from common.utils import HelpFormatter, UserError, check_finite, run_main, set_visible_gpus
from mcl.engine import start_run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Linear evaluation of MoCo-MCL (main_lincls.py)",
                                formatter_class=HelpFormatter)
    p.add_argument("--data", metavar="DIR", default="./data/ImageNet/", help="dataset root holding train/ and val/")
    p.add_argument("-a", "--arch", metavar="ARCH", default="resnet50", help="encoder name (common.backbones)")
    p.add_argument("-j", "--workers", default=32, type=int, help="data loading workers (total)")
    p.add_argument("--epochs", default=100, type=int)
    p.add_argument("--start-epoch", default=0, type=int)
    p.add_argument("-b", "--batch-size", default=256, type=int, help="total batch size of this node")
    p.add_argument("--lr", "--learning-rate", default=30.0, type=float, dest="lr")
    p.add_argument("--schedule", default=[60, 80], nargs="*", type=int, help="epochs of x0.1")
    p.add_argument("--momentum", default=0.9, type=float)
    p.add_argument("--wd", "--weight-decay", default=0.0, type=float, dest="weight_decay")
    p.add_argument("-p", "--print-freq", default=10, type=int)
    p.add_argument("--resume", default="", type=str, metavar="PATH",
                   help="lincls checkpoint to resume (FIXED: crashed in the original, quirk 13; default: newest "
                        "checkpoint of the run directory)")
    p.add_argument("-e", "--evaluate", action="store_true",
                   help="only evaluate --resume on the validation set (FIXED: crashed in the original, quirk 11)")
    p.add_argument("--seed", default=None, type=int)
    p.add_argument("--gpu-ids", default=None, type=str,
                   help="written to CUDA_VISIBLE_DEVICES before CUDA starts, if given; without CUDA a notice and the "
                        "CPU")
    p.add_argument("--pretrained", default="", type=str, help="main_moco_mcl.py checkpoint (network 0 is used)")
    p.add_argument("--checkpoint", default=None, type=str,
                   help="output directory (default: runs/mcl/<name>/; the original used ./checkpoint/)")
    # additions
    p.add_argument("--num-classes", default=1000, type=int, help="classifier outputs (the original: 1000)")
    p.add_argument("--image-size", default=224, type=int, help="crop size (smaller for smoke tests)")
    p.add_argument("--resize", default=256, type=int, help="validation resize before the center crop")
    p.add_argument("--name", default=None, type=str, help="run name (default lincls_mcl_<arch>)")
    p.add_argument("--device", default=None, type=str)
    p.add_argument("--max-iters", default=0, type=int, help="stop each epoch after this many iterations (0: all)")
    p.add_argument("--no-auto-resume", dest="auto_resume", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    add_distributed_args(p)
    return p


PREFIX = "module.encoder_q_0."


def load_pretrained(model, path):
    """Network 0's query encoder without its fc; every other key must load."""
    state = load_checkpoint(path)
    if "state_dict" not in state:
        raise UserError(f"--pretrained '{path}' has no 'state_dict'; pass a main_moco_mcl.py checkpoint")
    state_dict = state["state_dict"]
    encoder = {k[len(PREFIX):]: v for k, v in state_dict.items()
               if k.startswith(PREFIX) and not k.startswith(PREFIX + "fc")}
    if not encoder:
        raise UserError(f"--pretrained '{path}' holds no '{PREFIX}*' weights; is it a MoCo-MCL checkpoint?")
    own = model.state_dict()
    missing = sorted(set(own) - set(encoder))
    unexpected = sorted(set(encoder) - set(own))
    if set(missing) != {"fc.weight", "fc.bias"} or unexpected:
        raise UserError(f"--pretrained '{path}' does not fit -a {model.__class__.__name__}: missing "
                        f"{missing[:4]}, unexpected {unexpected[:4]}; check -a/--arch")
    try:
        model.load_state_dict(encoder, strict=False)
    except RuntimeError as e:
        raise UserError(f"--pretrained '{path}' does not fit this -a/--arch: {e}") from None
    return encoder


def sanity_check(state_dict, pretrained_encoder):
    """Every non-fc tensor must still equal the pre-trained one (the linear protocol freezes them)."""
    for k, v in pretrained_encoder.items():
        current = state_dict[k if k in state_dict else "module." + k]
        if not torch.equal(current.cpu(), v.cpu()):
            raise UserError(f"{k} changed during linear training; the backbone must stay frozen")


def adjust_learning_rate(optimizer, epoch, args):
    lr = args.lr * 0.1 ** sum(1 for m in args.schedule if epoch >= m)
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    return lr


def run_epoch(loader, model, criterion, optimizer, epoch, args, train: bool):
    losses, top1, top5 = AverageMeter("Loss"), AverageMeter("Acc@1"), AverageMeter("Acc@5")
    model.eval()  # frozen BN statistics also while training the classifier (the original's protocol)
    total = min(len(loader), args.max_iters) if (train and args.max_iters) else len(loader)
    sums = torch.zeros(3, device=args.device)
    seen = 0
    with torch.set_grad_enabled(train):
        for i, (images, target) in enumerate(progress(loader, f"{'train' if train else 'val'} {epoch}",
                                                       args.progress, total=total)):
            if train and args.max_iters and i >= args.max_iters:
                break
            images, target = images.to(args.device), target.to(args.device)
            output = model(images)
            loss = criterion(output, target)
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            acc1, acc5 = accuracy(output, target, topk=(1, 5))
            batch = images.shape[0]  # quirk 12 fixed: weight by the batch size, not images[0].size(0)
            sums += torch.stack([loss.detach(), acc1, acc5]) * batch
            seen += batch
            if i % args.print_freq == 0:   # every process stops together on NaN
                check_finite(all_reduce_mean(loss.detach()) if train else loss, f"{epoch}:{i}")
    if train and get_world_size() > 1:
        # each process trained on its part of the global batches; the validation loader is not split
        sums = torch.cat([sums, torch.tensor([float(seen)], device=sums.device)])
        torch.distributed.all_reduce(sums)
        sums, seen = sums[:3], int(sums[3])
    for meter, value in zip((losses, top1, top5), (sums / max(seen, 1)).tolist()):
        meter.update(value, seen)
    return losses.avg, top1.avg, top5.avg


def main_worker(local_rank, args):
    _, run_dir, logger = start_run(local_rank, args, args.seed, deterministic=args.seed is not None)
    out_dir = args.checkpoint or run_dir
    args.local_batch_size = per_process_batch_size(args.batch_size, args)
    workers = int((args.workers + args.ngpus_per_node - 1) / args.ngpus_per_node) if args.distributed else args.workers

    try:
        model = build_backbone(args.arch, num_classes=args.num_classes)
    except ValueError as e:
        raise UserError(f"-a/--arch {args.arch}: {e}") from None
    for name, param in model.named_parameters():
        if name not in ("fc.weight", "fc.bias"):
            param.requires_grad = False
    model.fc.weight.data.normal_(mean=0.0, std=0.01)
    model.fc.bias.data.zero_()
    pretrained_encoder = load_pretrained(model, args.pretrained) if args.pretrained else None
    model = wrap_ddp(model, args)
    criterion = nn.CrossEntropyLoss()
    parameters = [p for p in model.parameters() if p.requires_grad]
    assert len(parameters) == 2  # fc.weight, fc.bias
    optimizer = torch.optim.SGD(parameters, args.lr, momentum=args.momentum, weight_decay=args.weight_decay)

    best_acc1 = 0.0
    resume_path = args.resume or (find_latest_checkpoint(out_dir, "lincls_mcl_checkpoint_*.pth.tar")
                                  if args.auto_resume and not args.evaluate else None)
    if args.evaluate and not args.resume and not args.pretrained:
        raise UserError("-e/--evaluate needs --resume <lincls checkpoint> (or --pretrained to evaluate a fresh fc)")
    if resume_path:
        state = load_checkpoint(resume_path)
        for key in ("state_dict", "epoch"):
            if key not in state:
                raise UserError(f"'{resume_path}' has no '{key}'; it is not a main_lincls.py checkpoint")
        load_model_state(model, state["state_dict"], source=f"checkpoint '{resume_path}'")
        if state.get("optimizer") is not None and not args.evaluate:
            optimizer.load_state_dict(state["optimizer"])
        args.start_epoch = int(state["epoch"])
        best_acc1 = float(state.get("best_acc1", 0.0))  # quirk 13 fixed: a float, no .to(gpu)
        restore_rng_state(state.get("rng_state"))
        logger.info(f"=> loaded checkpoint '{resume_path}' (epoch {state['epoch']})")

    # val labelled by class name with train's indices (a val/ lacking a class keeps the other labels)
    val_dataset = ImageFolder(os.path.join(args.data, "val"), linear_val_transform(args.image_size, args.resize),
                              classes=folder_classes(os.path.join(args.data, "train")))
    val_loader = DataLoader(val_dataset, batch_size=args.local_batch_size, shuffle=False, num_workers=workers)
    if args.evaluate:
        _, acc1, acc5 = run_epoch(val_loader, model, criterion, None, args.start_epoch, args, train=False)
        logger.info(f" * Acc@1 {acc1:.3f} Acc@5 {acc5:.3f}")
        logger.info(f"top-1: {acc1:.2f}")
        return

    # with --seed an image's crop / flip depends on (seed, epoch, index) only, and process r takes samples r, r+W,
    # ... of each global batch: 1 and W processes train on the same global batches (the last partial batch is split
    # with the sampler's padding)
    train_dataset = SeededTransformDataset(ImageFolder(os.path.join(args.data, "train")),
                                           linear_train_transform(args.image_size), args.seed)
    train_sampler = rank_split_sampler(train_dataset, shuffle=True, drop_last=False, seed=args.seed or 0)
    train_loader = DataLoader(train_dataset, batch_size=args.local_batch_size, num_workers=workers,
                              pin_memory=args.device.type == "cuda", sampler=train_sampler)
    for epoch in range(args.start_epoch, args.epochs):
        set_sampler_epoch(train_sampler, epoch)
        train_dataset.set_epoch(epoch)
        lr = adjust_learning_rate(optimizer, epoch, args)
        train_loss, train_acc1, _ = run_epoch(train_loader, model, criterion, optimizer, epoch, args, train=True)
        val_loss, acc1, acc5 = run_epoch(val_loader, model, criterion, None, epoch, args, train=False)
        is_best = acc1 > best_acc1
        best_acc1 = max(acc1, best_acc1)
        line = (f"Epoch:{epoch}\t lr:{lr:.4f}\t train loss:{train_loss:.4f}\t train Acc@1:{train_acc1:.3f}\t "
                f"val loss:{val_loss:.4f}\t Acc@1:{acc1:.3f}\t Acc@5:{acc5:.3f}\t best Acc@1:{best_acc1:.3f}")
        logger.info(line)
        for tag, value in (("train/loss", train_loss), ("train/top1", train_acc1), ("val/loss", val_loss),
                           ("val/top1", acc1), ("val/top5", acc5), ("train/lr", lr)):
            logger.scalar(tag, value, epoch)
        if is_main_process():
            with open(os.path.join(out_dir, f"imagenet_mcl_{args.arch}_moco.txt"), "a") as f:
                f.write(line + "\n")
            state_dict = {"module." + k: v for k, v in unwrap_model(model).state_dict().items()}
            save_checkpoint({"epoch": epoch + 1, "arch": args.arch, "state_dict": state_dict,
                             "best_acc1": best_acc1, "optimizer": optimizer.state_dict(),
                             "rng_state": capture_rng_state()},
                            os.path.join(out_dir, f"lincls_mcl_checkpoint_{epoch:04d}.pth.tar"), is_best=is_best,
                            best_name="model_best.pth.tar")
            if epoch == args.start_epoch and pretrained_encoder is not None:
                sanity_check(unwrap_model(model).state_dict(), pretrained_encoder)
    logger.info(f"final top-1: {best_acc1:.2f}")
    logger.close()
    cleanup()


def main(argv=None):
    args = build_parser().parse_args(argv)
    set_visible_gpus("--gpu-ids", args.gpu_ids)  # before any CUDA call, as the original
    if args.name is None:
        args.name = f"lincls_mcl_{args.arch}"
    launch(main_worker, args)


if __name__ == "__main__":
    run_main(main)
