"""Supervised Mutual Contrastive Learning on ImageNet with per-network memory banks (spec §b.2, §d.3, §g.2).

    python main_imagenet.py --arch resnet18 --number-net 2 --alpha 0.1 --gamma 1 --beta 0.1 --lam 1 \
        --data ./data/ImageNet/

Differences from the original (README.md): true best-epoch tracking (quirk 8), memory-efficient negative
sampling (quirk 18), per-worker numpy seeds (quirk 24 not reproduced), heads and memory banks in the
checkpoint (quirk 15), the run folder of ``common.engine`` (``$CL_RUNS_DIR/mcl/<name>/``, auto-resume; the
checkpoints also published to the original's ``./checkpoint/``), DDP through ``common.distributed`` (memory
updates see every rank's anchors).
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from common.distributed import (add_distributed_args, concat_all_gather, per_process_batch_size,
                                rank_split_sampler, set_sampler_epoch, wrap_ddp)
from common.engine import Run
from common.utils import HelpFormatter, MixedPrecision, UserError, add_precision_args, run_main
from mcl.builder import SupervisedMCL
from mcl.dataset.imagenet import get_imagenet_dataloader_sample
from mcl.engine import add_supervised_args, launch_run, supervised_epoch, supervised_worker, train_supervised
from mcl.losses.imagenet_sup_mcl_loss import SupMCLLoss
from mcl.models import IMAGENET_ARCHS, get_model
from mcl.utils import cal_param_size

WEIGHT_DECAY = 1e-4  # hard-coded in the original (quirk 17)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Supervised MCL on ImageNet (main_imagenet.py)",
                                formatter_class=HelpFormatter)
    p.add_argument("--data", default="./data/ImageNet/", type=str, help="root holding train/ and val/ class folders")
    p.add_argument("--dataset", default="ImageNet", type=str, help="dataset name (log / run name only)")
    p.add_argument("--arch", default="resnet18", type=str, choices=IMAGENET_ARCHS, help="network factory")
    p.add_argument("--init-lr", default=0.1, type=float, help="initial learning rate")
    p.add_argument("--lr-type", default="multistep", type=str, choices=["multistep", "cosine"],
                   help="learning rate strategy (per epoch)")
    p.add_argument("--milestones", default=[30, 60, 90], type=int, nargs="+", help="epochs of x0.1")
    p.add_argument("--epochs", type=int, default=90, help="number of epochs to train")
    p.add_argument("--batch-size", type=int, default=256, help="batch size (global)")
    p.add_argument("--num-workers", type=int, default=16, help="data loader workers")
    add_supervised_args(p, "KL distillation of the LAST network from the ensemble mean, teacher NOT detached (the "
                           "original's ImageNet rule, quirk 5)")
    p.add_argument("--rep-dim", default=1024, type=int,
                   help="ignored: the head input dim is measured from the backbone (quirk 17)")
    p.add_argument("--pos_k", default=1, type=int, help="sampled same-class positives per anchor")
    p.add_argument("--neg_k", default=8192, type=int, help="sampled other-class negatives per anchor")
    p.add_argument("--tau", default=0.07, type=float, help="contrastive temperature")
    p.add_argument("--nce_m", default=0.5, type=float, help="momentum of the memory-bank update")
    # additions
    p.add_argument("--image-size", default=224, type=int, help="train / val crop size (smaller for smoke tests)")
    p.add_argument("--resize", default=256, type=int, help="validation resize before the center crop")
    add_precision_args(p)
    add_distributed_args(p)
    return p


def train_one_epoch(epoch, model, criterion, optimizer, loader, args, run: Run, precision: MixedPrecision) -> dict:
    N = args.number_net

    def step(batch):
        inputs, targets, pos_idx, neg_idx = (t.to(args.device, non_blocking=True) for t in batch)
        with precision.autocast():
            logits, z = model(precision.input(inputs))

        def update_memory():   # with every rank's anchors (indices are distinct across ranks)
            criterion.contrast_memory.update(concat_all_gather(z.detach().float().transpose(0, 1).contiguous())
                                             .transpose(0, 1), concat_all_gather(pos_idx[:, 0].contiguous()))
        return logits.float(), targets, criterion.contrast(z.float(), pos_idx, neg_idx), update_memory

    def correct_of(logits, targets):   # top-1 / top-5 of each network and of the ensemble (mean of logits), in %
        all_logits = torch.cat([logits, logits.mean(dim=0, keepdim=True)])
        top5 = all_logits.topk(min(5, all_logits.shape[-1]), dim=-1).indices == targets[None, :, None]
        return 100 * torch.stack([top5[..., :1].any(-1).sum(1), top5.any(-1).sum(1)])

    def summary(acc):
        line_end = (f"\t Train top-1 (nets + ensemble):{[round(a, 2) for a in acc[0]]}"
                    f"\t top-5:{[round(a, 2) for a in acc[1]]}")
        return line_end, {"top1": max(acc[0][:N]), "top1_ensemble": acc[0][N],
                          **{f"top1_net{i}": a for i, a in enumerate(acc[0][:N])}}

    return supervised_epoch(run, loader, model, args, epoch, optimizer, precision, step,
                            torch.zeros(2, N + 1, device=args.device), correct_of, summary, "imagenet",
                            "Try a lower --init-lr.")


def main_worker(local_rank, args):
    supervised_worker(local_rank, args, build_model, train, ensemble="mean", topk=(1, 5))


def build_model(args, device):
    """(networks, their MCL wrapper with heads + memory, val loader, train loader + sampler, heads, precision)."""
    args.local_batch_size = per_process_batch_size(args.batch_size, args)
    train_loader, val_loader, n_data, train_sampler = get_imagenet_dataloader_sample(
        args.data, args, image_size=args.image_size, resize=args.resize, train=not args.evaluate,
        # one sampler and per-item seeds for any number of processes: the same global batches and items
        train_sampler=lambda ds: rank_split_sampler(ds, shuffle=True, drop_last=False, seed=args.manual_seed),
        seed=args.manual_seed)
    num_classes = len(val_loader.dataset.classes)
    if train_loader is not None and len(train_loader.dataset.classes) != num_classes:
        raise UserError(f"train/ has {len(train_loader.dataset.classes)} classes but val/ has {num_classes}; "
                        "both must hold the same class folders")
    precision = MixedPrecision(device, args.amp, args.channels_last)
    net = precision.prepare(get_model(args.arch, num_classes, args.number_net, choices=IMAGENET_ARCHS))
    if args.rank == 0:
        print(f"Arch: {args.arch}, Params: {cal_param_size(net) / 1e6:.2f}M", flush=True)
    net.eval()
    args.rep_dim = net(torch.zeros(1, 3, args.image_size, args.image_size))[1][0].shape[1]  # quirk 17
    criterion = SupMCLLoss([args.rep_dim] * args.number_net, max(n_data, 1), args.feat_dim, args.tau, args.kd_T,
                           args.nce_m)
    model = wrap_ddp(SupervisedMCL(net, criterion), args)
    criterion.to(device)
    return net, model, val_loader, (train_loader, train_sampler), criterion, precision


def train(run: Run, args, device) -> None:
    net, model, val_loader, (train_loader, train_sampler), criterion, precision = build_model(args, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=WEIGHT_DECAY, nesterov=True)

    def one_epoch(epoch):
        set_sampler_epoch(train_sampler, epoch)
        train_loader.dataset.set_epoch(epoch)
        return train_one_epoch(epoch, model, criterion, optimizer, train_loader, args, run, precision)

    train_supervised(run, args, net, criterion, optimizer, precision.scaler, one_epoch, val_loader, "best epoch",
                     ensemble="mean", topk=(1, 5))


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.number_net < 2:
        raise UserError(f"--number-net {args.number_net}: MCL needs at least 2 networks (quirk 21)")
    if args.resume and args.evaluate:
        raise UserError("--resume and --evaluate are mutually exclusive")
    launch_run(main_worker, args)


if __name__ == "__main__":
    run_main(main)
