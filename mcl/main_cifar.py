"""Supervised Mutual Contrastive Learning on CIFAR-100 (spec §b.1, §d.1, §g.1).

N networks are trained jointly with Σ_i CE + optional logit distillation + α·VCL + γ·soft VCL + β·ICL +
λ·soft ICL (in-batch, ``mcl.losses.cifar_sup_mcl_loss``); every epoch each network, their mean and the
ensemble (sum of logits) are evaluated on the test set.

    python main_cifar.py --arch resnet32 --number-net 2 --alpha 0.1 --gamma 1 --beta 0.1 --lam 1 --data ./data/

Differences from the original, all documented in README.md: ``--dataset`` selects the data (cifar100,
cifar10 or the embedded digits) instead of only naming the log; the run (checkpoints in the original's layout,
log, TensorBoard) lives in its run folder (``common.engine``: ``$CL_RUNS_DIR/mcl/<name>/``, auto-resume), the
checkpoints are also published to the original's ``./checkpoint/`` (``--checkpoint-dir``); ``--num-workers`` is
used and ``--arch`` defaults to resnet32 (quirk 16); heads are checkpointed (quirk 15); DDP through
``common.distributed`` (embeddings are gathered so the in-batch loss sees the global batch, as with the
original's ``nn.DataParallel``).
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script from inside mcl/: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch
import torchvision.transforms as T
from torch.utils.data import BatchSampler, DataLoader

from common.augment import cifar_train_transform, test_transform
from common.augment.on_device import DeviceViews, add_augment_arg, uint8_collate
from common.data import build_dataset
from common.distributed import add_distributed_args, wrap_ddp
from common.engine import Run
from common.utils import HelpFormatter, MixedPrecision, UserError, add_precision_args, run_main
from mcl.builder import SupervisedMCL, gather_batch
from mcl.dataset.class_sampler import MPerClassSampler
from mcl.engine import add_supervised_args, launch_run, supervised_epoch, supervised_worker, train_supervised
from mcl.losses.cifar_sup_mcl_loss import SupMCLLoss, check_same_class_partner
from mcl.models import CIFAR_ARCHS, get_model
from mcl.utils import cal_multi_adds, cal_param_size

DATASETS = {"cifar100": "cifar100", "cifar10": "cifar10", "digits": "digits"}  # name -> NORMALIZE key


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Supervised MCL on CIFAR-100 (main_cifar.py)",
                                formatter_class=HelpFormatter)
    p.add_argument("--data", default="./data/", type=str, help="dataset root (CIFAR python pickles)")
    p.add_argument("--dataset", default="cifar100", type=str, choices=sorted(DATASETS),
                   help="dataset to train on (the original always used CIFAR-100 and only put this in the log "
                        "name); 'digits' is the embedded scikit-learn digits set (no --data needed)")
    p.add_argument("--arch", default="resnet32", type=str, choices=CIFAR_ARCHS,
                   help="network factory (the original default 'resnet32_n' does not exist; quirk 16)")
    p.add_argument("--init-lr", default=0.1, type=float, help="initial learning rate")
    p.add_argument("--weight-decay", default=5e-4, type=float, help="weight decay")
    p.add_argument("--lr-type", default="cosine", type=str, choices=["cosine", "multistep"],
                   help="learning rate strategy (per epoch, no warm-up)")
    p.add_argument("--milestones", default=[150, 225], type=int, nargs="+", help="epochs of x0.1 for multistep")
    p.add_argument("--epochs", type=int, default=300, help="number of epochs to train")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (global, train and test)")
    p.add_argument("--num-workers", type=int, default=8,
                   help="data loader workers (used here; the original ignored it, quirk 16)")
    add_supervised_args(p, "add KL distillation from the detached ensemble logits (N=2: both nets, N>2: last net)")
    p.add_argument("--tau", type=float, default=0.1, help="contrastive temperature")
    p.add_argument("--image-size", default=32, type=int,
                   help="resize the 32x32 images to this size first (e.g. 16 for the fast digits default; the "
                        "random crop padding scales with it)")
    p.add_argument("--no-augment", dest="random_augment", action="store_false",
                   help="train on un-augmented images (testing aid: makes 1-process and multi-process runs see "
                        "identical inputs)")
    add_augment_arg(p)
    add_precision_args(p)
    add_distributed_args(p)
    return p


def check_args(args) -> None:
    if args.number_net < 2:
        raise UserError(f"--number-net {args.number_net}: MCL needs at least 2 networks (quirk 21)")
    if args.batch_size % 2:
        raise UserError(f"--batch-size {args.batch_size} must be even: the MPerClassSampler draws 2 images per "
                        "class so every anchor has a same-class partner")
    if args.epochs < 1:
        raise UserError("--epochs must be >= 1")
    if args.resume and args.evaluate:
        raise UserError("--resume and --evaluate are mutually exclusive")
    if args.augment == "batched" and not args.random_augment:
        raise UserError("--augment batched and --no-augment contradict each other (there is nothing to augment); "
                        "drop one of them")


def build_data(args):
    normalize = DATASETS[args.dataset]
    root = None if args.dataset == "digits" else args.data
    if args.augment == "batched":  # the loader only decodes; batched_views() crops and flips on the device
        from common.augment.batched import ToUint8Tensor
        train_transform = ToUint8Tensor()
    else:
        train_transform = (cifar_train_transform(normalize, size=args.image_size, padding=crop_padding(args))
                           if args.random_augment else test_transform(normalize))
    test_transform_ = test_transform(normalize)
    if args.image_size != 32:
        train_transform = T.Compose([T.Resize(args.image_size), train_transform])
        test_transform_ = T.Compose([T.Resize(args.image_size), test_transform_])
    train_set = build_dataset(args.dataset, root, "train", train_transform)
    test_set = build_dataset(args.dataset, root, "test", test_transform_, classes=train_set)
    return train_set, test_set


def crop_padding(args) -> int:
    return max(1, args.image_size // 8)


def batched_views(args):
    """``--augment batched``: ``cifar_train_transform`` on the device (after the same PIL resize in the loader)."""
    from common.augment.batched import BatchedMultiView, batched_cifar_train_transform
    return BatchedMultiView(batched_cifar_train_transform(DATASETS[args.dataset], args.image_size, crop_padding(args)),
                            1)


class RankSlice:
    """Every rank iterates the same global MPerClassSampler batches (same numpy seed) and keeps its slice."""

    def __init__(self, batch_sampler, rank: int, world_size: int):
        self.batch_sampler, self.rank, self.world_size = batch_sampler, rank, world_size

    def __iter__(self):
        for batch in self.batch_sampler:
            per_rank = len(batch) // self.world_size
            yield batch[self.rank * per_rank:(self.rank + 1) * per_rank]

    def __len__(self):
        return len(self.batch_sampler)


def worker_init_fn(worker_id: int) -> None:
    np.random.seed(torch.initial_seed() % 2 ** 32)


def make_train_loader(args, train_set):
    num_classes = len(train_set.classes)
    if 2 * num_classes < args.batch_size:
        raise UserError(f"--batch-size {args.batch_size} needs at least {args.batch_size // 2} classes "
                        f"(2 images per class per batch) but {args.dataset} has {num_classes}; lower --batch-size")
    if args.batch_size % args.world_size:
        raise UserError(f"--batch-size {args.batch_size} is not divisible by the {args.world_size} processes")
    sampler = MPerClassSampler(train_set.targets, m=2, batch_size=args.batch_size,
                               length_before_new_iter=len(train_set))
    batches = RankSlice(BatchSampler(sampler, args.batch_size, drop_last=False), args.rank, args.world_size)
    return DataLoader(train_set, batch_sampler=batches, num_workers=args.num_workers,
                      pin_memory=args.device.type == "cuda", worker_init_fn=worker_init_fn,
                      persistent_workers=False, collate_fn=uint8_collate if args.augment == "batched" else None)


def train_one_epoch(epoch, model, criterion, optimizer, loader, args, run: Run, views_of: DeviceViews,
                    precision: MixedPrecision) -> dict:
    def step(batch):
        inputs, targets = batch
        if not args.distributed:
            check_same_class_partner(targets)  # quirk 3: clear error instead of NaN (CPU labels, no sync)
        (inputs,) = views_of(inputs)
        targets = targets.to(args.device, non_blocking=True)
        with precision.autocast():
            logits, z = model(inputs)
        z_all, targets_all = gather_batch(z.float(), targets)   # the in-batch loss sees the global batch
        return logits.float(), targets, criterion.contrast(z_all, targets_all), None

    def summary(train_acc):   # fractions per network; train/top1 = the best single network (as eval/top1), in %
        return (f"\t Train Acc:{[round(a, 4) for a in train_acc]}",
                {"top1": 100 * max(train_acc), **{f"top1_net{i}": 100 * a for i, a in enumerate(train_acc)}})

    return supervised_epoch(run, loader, model, args, epoch, optimizer, precision, step,
                            torch.zeros(args.number_net, device=args.device),
                            lambda logits, targets: (logits.argmax(dim=-1) == targets).sum(dim=1), summary, "cifar",
                            "Try a lower --init-lr or a higher --tau.")


def main_worker(local_rank, args):
    supervised_worker(local_rank, args, build_model, train)


def build_model(args, device):
    """(networks, their MCL wrapper with the heads, test loader, train set, heads, precision)."""
    train_set, test_set = build_data(args)
    num_classes = len(train_set.classes)
    precision = MixedPrecision(device, args.amp, args.channels_last)
    net = precision.prepare(get_model(args.arch, num_classes, args.number_net, choices=CIFAR_ARCHS))
    if args.rank == 0:
        print(f"Arch: {args.arch}, Params: {cal_param_size(net) / 1e6:.2f}M, "
              f"Multi-adds: {cal_multi_adds(net, (1, 3, 32, 32)) / 1e6:.2f}M", flush=True)
    rep_dims = [e.shape[1] for e in net.eval()(torch.zeros(1, 3, 32, 32))[1]]
    criterion = SupMCLLoss(rep_dims, args.feat_dim, args.tau, args.kd_T)
    model = wrap_ddp(SupervisedMCL(net, criterion), args)
    criterion.to(device)
    test_loader = DataLoader(test_set, batch_size=args.batch_size, shuffle=False, num_workers=args.num_workers)
    return net, model, test_loader, train_set, criterion, precision


def train(run: Run, args, device) -> None:
    net, model, test_loader, train_set, criterion, precision = build_model(args, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=args.weight_decay,
                                nesterov=True)
    # each process holds a contiguous block of every global batch (RankSlice)
    views_of = DeviceViews(batched_views(args) if args.augment == "batched" else None, device, args.manual_seed,
                           args.rank, args.channels_last, layout="contiguous")

    def one_epoch(epoch):
        views_of.set_epoch(epoch)
        return train_one_epoch(epoch, model, criterion, optimizer, make_train_loader(args, train_set), args, run,
                               views_of, precision)

    train_supervised(run, args, net, criterion, optimizer, precision.scaler, one_epoch, test_loader,
                     "best epoch, selected on the test set like the original")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    launch_run(main_worker, args)


if __name__ == "__main__":
    run_main(main)
