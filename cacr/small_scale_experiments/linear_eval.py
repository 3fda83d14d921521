"""Small-scale linear evaluation of a saved encoder (spec §b.2, §h).

Frozen encoder (eval mode), features of block ``--layer_index`` (−2 = fc7, 4096-d) computed under no-grad
for augmented train images, Linear classifier, Adam(lr 1e-3, betas (0.5, 0.999)), MultiStepLR ×0.2 at 60/80,
100 epochs; after every epoch the top-1 on the test split; "Best acc" = max over epochs (quirk §k.13, kept).

    cd cacr && python small_scale_experiments/linear_eval.py --dataset cifar10 --encoder_checkpoint <run>/encoder.pth
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn as nn

from common.checkpoint import load_checkpoint
from common.data import build_dataset
from common.engine import Run, add_run_args, fit, original_input
from common.training import classifier_pass, load_model_state
from common.utils import HelpFormatter, UserError, check_finite, get_device, gpus_available, run_main, seed_everything

from cacr.small_scale_experiments import util
from cacr.small_scale_experiments.encoder import build_encoder, feature_dim


def parse_option(argv=None, dataset_default: str = "cifar10"):
    parser = argparse.ArgumentParser("CACR small-scale linear evaluation", formatter_class=HelpFormatter)
    parser.add_argument("--dataset", type=str, default=dataset_default, choices=util.DATASETS)
    parser.add_argument("--encoder_checkpoint", type=str, default=None,
                        help="path of encoder.pth written by main_ours.py (required)")
    parser.add_argument("--feat_dim", type=int, default=128, help="must match pre-training")
    parser.add_argument("--layer_index", type=int, default=-2, help="block output used as feature (-2 = fc7)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr_decay_rate", type=float, default=0.2)
    parser.add_argument("--lr_decay_epochs", type=str, default="60,80", help="comma-separated milestones")
    parser.add_argument("--num_workers", type=int, default=6)
    parser.add_argument("--log_interval", type=int, default=40)
    parser.add_argument("--gpu", type=int, default=None,
                        help="CUDA device (default: the first GPU, else CPU; without CUDA a notice and the CPU)")
    parser.add_argument("--gpus", type=int, nargs="*", default=None,
                        help="accepted because the README testing command uses it (quirk §k.11: the original file "
                             "only had --gpu); the first id is used as --gpu")
    parser.add_argument("--data_folder", type=str, default=os.environ.get("DATA", "./data"))
    parser.add_argument("--print_category_acc", action="store_true",
                        help="print per-class accuracies each epoch (cifar100: mean of each group of 10 classes)")
    parser.add_argument("--arch", type=str, default="small_alexnet", help="encoder architecture of the checkpoint")
    parser.add_argument("--image-size", type=int, default=None, help="crop size used in pre-training (default 32 / 64)")
    parser.add_argument("--seed", type=int, default=0)
    add_run_args(parser, name="lincls_<dataset>-<digest of the flags>", auto_resume="--no-auto-resume")
    args = parser.parse_args(argv)
    if not args.encoder_checkpoint:
        raise UserError("--encoder_checkpoint is required (the encoder.pth written by main_ours.py)")
    try:
        args.lr_decay_epochs = [int(e) for e in args.lr_decay_epochs.split(",") if e.strip()]
    except ValueError:
        raise UserError(f"--lr_decay_epochs must be comma-separated integers, got {args.lr_decay_epochs!r}") from None
    if args.gpu is None and args.gpus:
        args.gpu = args.gpus[0]
    # the README's "--gpus 0" on a machine without CUDA: one notice line, then the CPU (as main_ours.py does)
    if args.device is None and args.gpu is not None and gpus_available("--gpus" if args.gpus else "--gpu",
                                                                         args.gpus or args.gpu):
        args.device = f"cuda:{args.gpu}"
    return args


def load_encoder(args):
    encoder = build_encoder(args.arch, args.feat_dim, util.image_size(args.dataset, args.image_size))
    state = load_checkpoint(args.encoder_checkpoint)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint works too
    load_model_state(encoder, state, source=f"encoder checkpoint '{args.encoder_checkpoint}'")
    return encoder.to(args.device).eval()


@torch.no_grad()
def category_accuracy(preds, labels, num_classes, group: int = 1) -> dict:
    """Per-class (or per group of ``group`` consecutive classes) accuracy in %, without pandas (quirk §k.13)."""
    correct = torch.bincount(labels[preds == labels], minlength=num_classes).float()
    total = torch.bincount(labels, minlength=num_classes).float()
    per_class = correct / total.clamp_min(1) * 100
    if group > 1:
        per_class = per_class.reshape(-1, group).mean(1)
    return {i: round(float(a), 2) for i, a in enumerate(per_class)}


def main(argv=None, dataset_default: str = "cifar10"):
    args = parse_option(argv, dataset_default)
    args.device = get_device(args.device)
    # the original ran in small_scale_experiments/<dataset>/, so its ./results/ours/.../encoder.pth is relative to
    # that folder (main_ours.py publishes the file there)
    args.encoder_checkpoint = original_input(args.encoder_checkpoint,
                                             os.path.join(os.path.dirname(os.path.abspath(__file__)), args.dataset))
    seed_everything(args.seed)
    with Run.open("cacr", args, readable=f"lincls_{args.dataset}", name=args.name,
                  ignore=("log_interval", "print_category_acc")) as run:
        return linear_evaluation(run, args)


def linear_evaluation(run, args) -> float:
    run.info(" ".join(sys.argv))
    encoder = load_encoder(args)
    train = build_dataset(args.dataset, args.data_folder, "train",
                          util.linear_train_transform(args.dataset, args.image_size))
    test = build_dataset(args.dataset, args.data_folder, "test", util.val_transform(args.dataset, args.image_size),
                         classes=train)
    num_classes = len(train.classes)
    pin = args.device.type == "cuda"
    train_loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True,
                                               num_workers=args.num_workers, pin_memory=pin)
    test_loader = torch.utils.data.DataLoader(test, batch_size=args.batch_size, shuffle=False,
                                              num_workers=args.num_workers, pin_memory=pin)

    classifier = nn.Linear(feature_dim(encoder, args.layer_index, util.image_size(args.dataset, args.image_size)),
                           num_classes).to(args.device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=args.lr, betas=(0.5, 0.999))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.lr_decay_epochs,
                                                     gamma=args.lr_decay_rate)

    def probe(images):   # the frozen encoder's block --layer_index (no gradient), then the trained classifier
        with torch.no_grad():
            feats = encoder(images, layer_index=args.layer_index).flatten(1)
        return classifier(feats)

    def train_one_epoch(epoch):
        def log(it, loss, *_):
            if (it + 1) % args.log_interval == 0:
                check_finite(loss, f"epoch {epoch} iteration {it}")
                run.info(f"Epoch {epoch} [{it + 1}/{len(train_loader)}] loss {loss.item():.4f}")
                run.scalar("train/loss", loss.item())

        classifier.train()
        classifier_pass(probe, train_loader, args.device, optimizer, args.max_iters,
                        run.progress(train_loader, f"linear epoch {epoch}", enabled=args.progress), log, run)
        scheduler.step()
        return {}

    def evaluate(epoch):
        classifier.eval()
        preds, targets = [], []
        with torch.no_grad():
            for it, (images, labels) in enumerate(test_loader):
                if args.max_iters and it >= args.max_iters:
                    break
                preds.append(probe(images.to(args.device)).argmax(1).cpu())
                targets.append(labels)
        preds, targets = torch.cat(preds), torch.cat(targets)
        acc = float((preds == targets).float().mean() * 100)
        if args.print_category_acc:
            group = 10 if num_classes == 100 else 1
            run.info(f"Epoch {epoch} category acc: {category_accuracy(preds, targets, num_classes, group)}")
        else:
            run.info(f"Epoch {epoch} test top-1: {acc:.2f}")
        if acc > best["acc"] or best["epoch"] < 0:
            best.update(acc=acc, epoch=epoch)
        return {"linear_top1": acc}

    # "Best acc" is the maximum over the epochs of the test top-1 (quirk §k.13, kept); no checkpoint (as the original)
    best = {"acc": 0.0, "epoch": -1}
    fit(run, 0, args.epochs, train_one_epoch, None, evaluate, metric="linear_top1")
    run.info(f"Best acc: {best['acc']:.2f} at epoch {best['epoch']}")
    run.info(f"final linear top-1: {best['acc']:.2f}")
    run.finish("linear top-1", best["acc"])
    return best["acc"]


if __name__ == "__main__":
    run_main(main)
