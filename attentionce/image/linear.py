"""Linear evaluation of a pre-trained AttentioNCE encoder (the original's ``image/linear.py``;
``tiny-Imagenet/linear.py`` runs this same code with its own defaults).

    cd attentionce && python image/linear.py --dataset_name stl10 \\
        --model_path runs/attentionce/<run>/stl10_SimCLR_4model_256_400_2.0_0.5.pth

Protocol of the original (spec §h): frozen encoder ``f``, a trainable Linear(F → C) on the un-normalised
pooled feature, Adam (lr 1e-2 for STL-10, else 1e-3; wd 1e-6), 100 epochs of batch 512 with the full
pre-training augmentation (quirk 6), test at native resolution after every epoch, encoder BatchNorm in train
mode during the training passes (quirk 4), and the best test top-1 over the epochs is reported (quirk 5; the
last epoch's top-1 is printed too).
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from attentionce.image.model import Model, strip_module_prefix
from attentionce.image.utils import DATASETS, build_split, canonical_dataset_name, test_transform, train_transform
from common.checkpoint import load_checkpoint
from common.engine import Run, add_run_args, fit, original_input
from common.training import classifier_pass
from common.utils import HelpFormatter, UserError, check_finite, get_device, run_main, seed_everything

METHOD = "attentionce"

VARIANT_DEFAULTS = {
    "image": {"dataset_name": "cifar10", "root": "../data", "workers": 4,
              "model_path": "../results/cifar10/stl10_SimCLR_4model_256_400_2.0_0.5.pth"},
    "tiny": {"dataset_name": "tinyImageNet", "root": "../tiny-imagenet-200", "workers": 2,
             "model_path": "../results/cifar10/cifar10_SimCLR_model_128_54.pth"},
}


class Net(nn.Module):
    """Frozen encoder ``f`` + trainable ``fc``; ``forward`` → logits on the un-normalised feature."""

    def __init__(self, encoder: nn.Module, encoder_dim: int, num_classes: int):
        super().__init__()
        self.f = encoder
        self.fc = nn.Linear(encoder_dim, num_classes, bias=True)
        for p in self.f.parameters():
            p.requires_grad = False

    def forward(self, x):
        return self.fc(torch.flatten(self.f(x), start_dim=1))


def load_pretrained(path: str, arch: str | None, device) -> Model:
    """``Model`` from an original-format checkpoint (a state dict with or without ``module.``; the projection
    dim is read from it, quirk 11) or from this code's ``checkpoint.pth`` (arch / feature_dim from its args).
    The arch: ``arch``, else the args of that ``checkpoint.pth`` (or of one in the same run folder), else
    resnet50 (the original)."""
    state = load_checkpoint(path, map_location=device)
    saved_args = {}
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        saved_args = state.get("args") or {}
        state = state["state_dict"]
    state = strip_module_prefix(state)
    if "g.3.weight" not in state:
        raise UserError(f"checkpoint '{path}' is not an AttentioNCE model (no projection head 'g.3.weight'); "
                        "pass a file written by main.py")
    if not arch and not saved_args:
        # an original-format file holds no arch; main.py's checkpoint.pth next to it does
        sibling = os.path.join(os.path.dirname(os.path.abspath(path)), "checkpoint.pth")
        if os.path.isfile(sibling) and os.path.abspath(sibling) != os.path.abspath(path):
            try:
                saved_args = load_checkpoint(sibling).get("args") or {}
            except UserError:
                saved_args = {}
    arch = arch or saved_args.get("arch") or "resnet50"
    model = Model(feature_dim=state["g.3.weight"].shape[0], arch=arch)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"checkpoint '{path}' does not fit --arch {arch} ({str(e).splitlines()[0]}); pass the "
                        "--arch the model was pre-trained with") from None
    return model.to(device)


def extract_features(model: Model, dataset_name: str, root: str, device, workers: int = 2, batch_size: int = 256):
    """Un-normalised encoder features (eval mode, test transform) of the linear-train and test splits:
    ``(train_x (N, F), train_y, test_x (M, F), test_y)`` on the CPU."""
    from common.eval.features import eval_mode, extract_features as run_features
    out = []
    with eval_mode(model):
        train = None
        for role in ("linear_train", "test"):
            dataset = build_split(dataset_name, root, role, transform=test_transform(), classes=train)
            train = dataset
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
            feats, labels = run_features(model.features, loader, device)
            out += [feats.cpu(), labels.cpu()]
    return tuple(out)


def get_parser(variant: str = "image") -> argparse.ArgumentParser:
    d = VARIANT_DEFAULTS[variant]
    parser = argparse.ArgumentParser(description="Linear Evaluation", formatter_class=HelpFormatter)
    parser.add_argument("--root", type=str, default=d["root"], help="dataset root")
    parser.add_argument("--model_path", type=str, default=d["model_path"],
                        help="The pretrained model path (quirk 12: the original's default does not exist: pass the "
                             ".pth written by main.py, or its checkpoint.pth)")
    parser.add_argument("--batch_size", type=int, default=512, help="Number of images in each mini-batch")
    parser.add_argument("--epochs", type=int, default=100, help="Number of sweeps over the dataset to train")
    parser.add_argument("--dataset_name", type=str, default=d["dataset_name"], help=f"dataset: {', '.join(DATASETS)}")
    # ---- additions
    parser.add_argument("--arch", type=str, default=None,
                        help="encoder the checkpoint was trained with (default: from checkpoint.pth, else resnet50)")
    parser.add_argument("--lr", type=float, default=None, help="Adam lr (default: 1e-2 for stl10, else 1e-3)")
    parser.add_argument("--weight_decay", type=float, default=1e-6, help="Adam weight decay")
    parser.add_argument("--bn_mode", choices=["train", "eval"], default="train",
                        help="encoder BatchNorm during the linear training passes: train = the original (batch "
                             "statistics, running stats drift, quirk 4); eval = frozen statistics (corrected)")
    parser.add_argument("--crop_size", type=int, default=32, help="training crop size (test: native size)")
    parser.add_argument("--workers", type=int, default=d["workers"], help="data loading workers")
    parser.add_argument("--steps_per_epoch", type=int, default=0, help="stop each training pass after N steps (0 = all)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (original: unseeded)")
    add_run_args(parser, name="linear_<dataset>-<digest of every flag that changes the result, --model_path "
                 "included>, in $CL_RUNS_DIR/attentionce/", auto_resume="--auto_resume", max_iters=False,
                 progress=False)
    return parser


def run_epoch(net, loader, optimizer, device, epoch, epochs, bn_mode: str, max_steps: int = 0, run=None):
    """One training (``optimizer`` given) or test pass; returns (loss, top-1 %, top-5 %)."""
    train = optimizer is not None
    net.train(train)
    if train:
        net.f.train(bn_mode == "train")
    bar = run.progress(loader) if run is not None else loader

    def describe(i, loss, acc1, acc5, n, sums):
        if hasattr(bar, "set_description"):
            loss_sum, top1, top5, seen = sums.tolist()
            bar.set_description(f"{'Train' if train else 'Test'} Epoch: [{epoch}/{epochs}] Loss: {loss_sum / seen:.4f} "
                                f"ACC@1: {top1 / seen:.2f}% ACC@5: {top5 / seen:.2f}%")

    sums = classifier_pass(net, loader, device, optimizer, max_steps if train else 0, bar, describe, run)
    if hasattr(bar, "close"):
        bar.close()
    loss, top1, top5 = (sums[:3] / sums[3].clamp_min(1)).tolist()
    check_finite(loss, epoch)
    return loss, top1, top5


def main(argv=None, variant: str = "image"):
    args = get_parser(variant).parse_args(argv)
    args.dataset_name = canonical_dataset_name(args.dataset_name)
    if args.batch_size < 1 or args.epochs < 1:
        raise UserError("--batch_size and --epochs must be positive")
    device = get_device(args.device)
    seed_everything(args.seed)
    # the original ran its scripts from image/, so its README's ``--model_path ../results/<dataset>/<file>.pth`` is
    # relative to that folder (main.py writes the file there)
    args.model_path = original_input(args.model_path, os.path.dirname(os.path.abspath(__file__)))
    if os.path.exists(args.model_path):
        args.model_path = os.path.abspath(args.model_path)
    with Run.open(METHOD, args, readable=f"linear_{args.dataset_name}", name=args.name,
                  overwrite_flag="--no-auto_resume") as run:
        linear_evaluation(run, args, device)


def linear_evaluation(run, args, device) -> None:
    run.info(str(args))
    model = load_pretrained(args.model_path, args.arch, device)
    train_data = build_split(args.dataset_name, args.root, "linear_train", transform=train_transform(args.crop_size))
    test_data = build_split(args.dataset_name, args.root, "test", transform=test_transform(), classes=train_data)
    train_loader = DataLoader(train_data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                              pin_memory=device.type == "cuda")
    test_loader = DataLoader(test_data, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                             pin_memory=device.type == "cuda")
    net = Net(model.f, model.encoder_dim, len(train_data.classes)).to(device)
    lr = args.lr if args.lr is not None else (1e-2 if args.dataset_name == "stl10" else 1e-3)
    optimizer = torch.optim.Adam(net.fc.parameters(), lr=lr, weight_decay=args.weight_decay)

    def train_one_epoch(index):
        loss, top1, _ = run_epoch(net, train_loader, optimizer, device, index + 1, args.epochs, args.bn_mode,
                                  args.steps_per_epoch, run)
        return {"epoch_loss": loss, "top1": top1}

    def evaluate(index):
        loss, top1, top5 = run_epoch(net, test_loader, None, device, index + 1, args.epochs, args.bn_mode, 0, run)
        return {"linear_top1": top1, "top5": top5, "loss": loss}

    # the original reports the best test top-1 over the epochs (quirk 5) and the last one
    metrics, best = fit(run, 0, args.epochs, train_one_epoch, None, evaluate, metric="linear_top1", best=0.0)
    run.info(f"Best acc1 result:{best}")
    run.info(f"Last acc1 result:{metrics['linear_top1']}")
    run.info(f"final linear top-1: {best:.2f}")
    run.finish("linear top-1", best)


if __name__ == "__main__":
    run_main(main)
