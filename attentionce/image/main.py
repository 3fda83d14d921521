"""AttentioNCE self-supervised pre-training (the original's ``image/main.py``; ``tiny-Imagenet/main.py`` runs
this same code with its own defaults).

    cd attentionce && python image/main.py --dataset_name cifar10 --d_pos 1 --d_neg 10

Six views per image, two anchors (v1, v2) and four positives (v3-v6); the loss is ``attentionce.losses``.
Flags and defaults of the original are kept (``--k`` is a no-op, ``--estimator`` only names the checkpoint);
everything after ``--d_neg`` in ``--help`` is an addition of this re-implementation.
"""
from __future__ import annotations

import argparse
import math
import os

import torch

from attentionce.image.model import Model, add_module_prefix, strip_module_prefix
from attentionce.image.utils import DATASETS, N_VIEWS, build_split, canonical_dataset_name, get_pretrain_dataset
from attentionce.losses import AttentioNCE
from common import distributed as dist_utils
from common.augment.on_device import DeviceViews, add_augment_arg
from common.eval import feature_probe
from common.engine import Run, add_run_args, args_record, fit, original_output_path, publish
from common.training import loss_epoch, rank_split_loader, train_batches
from common.utils import (HelpFormatter, MixedPrecision, UserError, add_precision_args, check_finite, get_device,
                          run_main, seed_everything)

METHOD = "attentionce"
SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))   # the original ran its scripts from image/
RESUME_FILE = "checkpoint.pth"

# the two original copies differ only in these defaults (spec §a)
VARIANT_DEFAULTS = {
    "image": {"dataset_name": "cifar10", "root": "../data", "workers": 2, "save_every": 200},
    "tiny": {"dataset_name": "tinyImageNet", "root": "../tiny-imagenet-200", "workers": 4, "save_every": 100},
}


def get_parser(variant: str = "image") -> argparse.ArgumentParser:
    d = VARIANT_DEFAULTS[variant]
    parser = argparse.ArgumentParser(description="Train AttentioNCE", formatter_class=HelpFormatter)
    # ---- the original's flags, same defaults
    parser.add_argument("--root", type=str, default=d["root"],
                        help="dataset root (CIFAR pickles / STL-10 binaries / tiny-imagenet-200 or its parent; quirk "
                             "12 fixed: honoured by every entry point, the original's tiny-ImageNet copy ignored it)")
    parser.add_argument("--feature_dim", default=128, type=int, help="Feature dim for latent vector")
    parser.add_argument("--temperature", default=0.5, type=float, help="Temperature used in softmax")
    parser.add_argument("--k", default=200, type=int, help="Top k most similar images used to predict the label "
                        "(quirk 12: the original never used it; here only the k of --eval knn)")
    parser.add_argument("--batch_size", default=256, type=int, help="Number of images in each mini-batch "
                        "(global, over all processes; each image gives 6 views)")
    parser.add_argument("--epochs", default=400, type=int, help="Number of sweeps over the dataset to train")
    parser.add_argument("--estimator", default="SimCLR", type=str,
                        help="label inserted in the checkpoint name only (quirk 12 kept: does not change the loss; "
                             "see --loss)")
    parser.add_argument("--dataset_name", default=d["dataset_name"], type=str,
                        help=f"dataset: {', '.join(DATASETS)}")
    parser.add_argument("--d_pos", default=1, type=float, help="Scaling factor for positive samples "
                        "(softmax temperature of the positive attention)")
    parser.add_argument("--d_neg", default=1, type=float, help="Scaling factor for negative samples "
                        "(softmax temperature of the negative attention)")
    # ---- additions
    parser.add_argument("--loss", default="attentionce", choices=["attentionce", "simclr"],
                        help="attentionce (6 views) or the plain SimCLR/NT-Xent baseline of the paper's tables (2 views)")
    parser.add_argument("--arch", default="resnet50", type=str,
                        help="encoder: resnet50 (the original CIFAR-style ResNet-50) or any common.backbones name "
                             "(e.g. resnet20_option_a for CPU runs)")
    parser.add_argument("--lr", default=1e-3, type=float, help="Adam learning rate (original: 1e-3, no schedule)")
    parser.add_argument("--weight_decay", default=1e-6, type=float, help="Adam weight decay (original: 1e-6)")
    parser.add_argument("--workers", default=d["workers"], type=int, help="data loading workers")
    parser.add_argument("--crop_size", default=32, type=int, help="RandomResizedCrop size of the training views")
    add_augment_arg(parser)
    parser.add_argument("--save_every", default=d["save_every"], type=int,
                        help="write the original-format checkpoint every N epochs (and after the last epoch)")
    parser.add_argument("--repeat_view4_bug", action="store_true",
                        help="reproduce the original tiny-Imagenet/main.py bug (quirk 1): the 6th forward pass "
                             "re-encodes view 4, so positives 2 and 4 are identical and view 6 is unused. "
                             "Default: fixed (6 distinct views); the published Tiny-ImageNet numbers used the bug")
    parser.add_argument("--freeze_bn", action="store_true",
                        help="keep every BatchNorm in eval mode (running statistics) during pre-training; not "
                             "the paper's setting, used to compare distributed and single-process runs exactly")
    parser.add_argument("--seed", default=None, type=int,
                        help="seed for initialisation, data order and augmentation (original: unseeded); with a "
                             "seed, augmentations depend only on (seed, epoch, image) so resumed and "
                             "multi-process runs see the same views")
    parser.add_argument("--steps_per_epoch", default=0, type=int,
                        help="stop each epoch after this many steps (0 = full epoch; for smoke tests)")
    parser.add_argument("--eval", default="none", choices=["none", "linear", "knn"],
                        help="evaluate the encoder before and after training (prints 'initial/final <metric>'): "
                             "linear = logistic-regression probe on frozen features, knn = weighted kNN")
    parser.add_argument("--eval_epochs", default=100, type=int, help="epochs of the --eval linear probe")
    parser.add_argument("--print_freq", default=10, type=int, help="update the progress bar loss every N steps")
    add_precision_args(parser)
    parser.add_argument("--resume", default="", type=str, help="resume from this checkpoint.pth")
    add_run_args(parser, name="<dataset>_<loss>_<arch>_b<batch>-<digest of every flag that changes the result>, "
                 "in $CL_RUNS_DIR/attentionce/ (else ./runs/attentionce/)", auto_resume="--auto_resume",
                 max_iters=False, progress=False)
    dist_utils.add_distributed_args(parser)
    return parser


def default_run_name(args) -> str:
    """The readable part of the default run name (``common.engine`` appends a digest of every result flag)."""
    return f"{args.dataset_name}_{args.loss}_{args.arch}_b{args.batch_size}"


def original_checkpoint_name(args, epoch: int) -> str:
    """``<dataset>_<estimator>_4model_<batch>_<epoch>_<d_pos>_<d_neg>.pth`` (spec §e). The values print as the
    original printed them: a value given on the command line is a float (``2.0``), the un-set default stays the
    int ``1`` (argparse does not apply ``type`` to a non-string default), so ``_1_1`` as in the original."""
    return (f"{args.dataset_name}_{args.estimator}_4model_{args.batch_size}_{epoch}_"
            f"{args.d_pos}_{args.d_neg}.pth")


def check_args(args) -> None:
    args.dataset_name = canonical_dataset_name(args.dataset_name)
    for flag in ("temperature", "d_pos", "d_neg"):
        value = getattr(args, flag)
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{flag} must be a positive number, got {value}")
    if args.batch_size < 2:
        raise UserError(f"--batch_size {args.batch_size}: the loss needs at least 2 images per step "
                        "(the other images are the negatives)")
    if args.epochs < 1 or args.feature_dim < 1:
        raise UserError("--epochs and --feature_dim must be positive")
    if args.repeat_view4_bug and args.loss == "simclr":
        raise UserError("--repeat_view4_bug only applies to --loss attentionce (SimCLR uses 2 views)")


def view_order(args) -> list[int]:
    """Which view batch goes through each of the forward passes."""
    if args.loss == "simclr":
        return [0, 1]
    if args.repeat_view4_bug:
        return [0, 1, 2, 3, 4, 3]
    return list(range(N_VIEWS))


def run_epoch(net, criterion, loader, optimizer, args, epoch, run: Run, views_of: DeviceViews,
              precision: MixedPrecision) -> float:
    """One epoch (the original ``train``): per step one forward pass per view (BatchNorm statistics are per
    view batch, as in the original), the loss on the normalised projections, Adam step.  Returns the mean
    loss weighted by the batch size (over all processes)."""
    order = view_order(args)
    total_steps, batches = train_batches(run, loader, net, args, max_iters=max(args.steps_per_epoch, 0), enabled=True)
    # the batched views depend only on (seed, epoch, rank, step): a resumed run sees the same views
    views_of.set_epoch(epoch)

    def step(i, batch):
        images = batch[0]
        # list of the view batches (V x (b, 3, S, S)); the PIL path collates them as (b, V, 3, S, S)
        views = views_of(images)
        with precision.autocast():
            # one forward pass per view: BatchNorm statistics are per view batch, as in the original
            projections = [net(views[v])[1] for v in order]
        return criterion(torch.stack(projections).float()), images.shape[0]

    def on_print(i, loss, loss_sum, seen):
        check_finite(loss_sum, run.step, "(AttentioNCE: also try a larger --d_neg or --temperature)")
        batches.describe(f"Train Epoch: [{epoch}/{args.epochs}] Loss: {loss_sum.item() / seen:.4f}")
        run.scalar("train/loss", loss.item())

    loss_sum, seen = loss_epoch(run, total_steps, batches, step, optimizer, precision.backward_step, args.print_freq,
                                on_print, args.device)
    mean = dist_utils.all_reduce_mean(loss_sum / max(seen, 1)).item()
    check_finite(mean, run.step)
    return mean


def evaluate(model, args) -> tuple[str, float]:
    """The initial / final evaluation: (metric name, top-1 in %) of the frozen encoder; a fast stand-in for
    ``linear.py``'s full protocol (``--eval linear``: SGD, cosine schedule, last epoch)."""
    from attentionce.image.linear import extract_features
    features = extract_features(model, args.dataset_name, args.root, args.device, workers=args.workers)
    return feature_probe(args.eval, *features, k=args.k, epochs=args.eval_epochs,
                         seed=0 if args.seed is None else args.seed)


def main_worker(local_rank, args):
    dist_utils.init_distributed(args, local_rank)
    if args.batch_size % args.world_size:
        raise UserError(f"--batch_size {args.batch_size} is not divisible by the {args.world_size} processes; "
                        "use a multiple of the process count")
    local_batch = args.batch_size // args.world_size
    seed_everything(args.seed)
    with Run.open(METHOD, args, readable=default_run_name(args), name=args.name,
                  ignore=("estimator", "eval_epochs"), overwrite_flag="--no-auto_resume") as run:
        train(run, args, local_batch)
    dist_utils.cleanup()


def train(run: Run, args, local_batch: int) -> None:
    run.info(f"Home device: {args.device}")
    run.info(str(args))
    n_views = 2 if args.loss == "simclr" else N_VIEWS
    batched_views = None
    if args.augment == "batched":
        from common.augment.batched import ToUint8Tensor, batched_attentionce_views
        dataset = build_split(args.dataset_name, args.root, "pretrain", transform=ToUint8Tensor())
        batched_views = batched_attentionce_views(args.crop_size, "cifar10", n_views)
    else:
        dataset = get_pretrain_dataset(args.dataset_name, args.root, args.crop_size, args.seed, n_views=n_views)
    run.info(f"# Classes: {len(dataset.classes)}")
    if len(dataset) < args.batch_size:
        raise UserError(f"the {args.dataset_name} pre-training split has {len(dataset)} images, fewer than "
                        f"--batch_size {args.batch_size} (the last incomplete batch is dropped); lower --batch_size")
    # one sampler for every case: with world size 1 it is a seeded shuffle (seed: --seed, else 0) whose order the
    # 2-process split reproduces (rank r takes every W-th index of the same permutation)
    loader, set_epoch = rank_split_loader(dataset, local_batch, args.workers, args, batch_flag="--batch_size")
    views_of = DeviceViews(batched_views, args.device, args.seed, args.rank, args.channels_last)

    precision = MixedPrecision(args.device, args.amp, args.channels_last)
    model = precision.prepare(Model(args.feature_dim, args.arch).to(args.device))
    net = dist_utils.wrap_ddp(model, args)
    criterion = AttentioNCE(args.temperature, args.d_pos, args.d_neg, loss=args.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    # epochs count from 1 as in the original; the checkpoint's "epoch" is the last completed one
    start_epoch, initial = 1, None
    state = run.resume_state(args.resume, RESUME_FILE, require=("epoch", "state_dict", "optimizer"))
    if state is not None:
        try:
            model.load_state_dict(strip_module_prefix(state["state_dict"]))
        except RuntimeError as e:
            raise UserError(f"checkpoint '{run.resume_path}' does not match this model (--arch {args.arch}, "
                            f"--feature_dim {args.feature_dim}): {' '.join(str(e).split())[:300]}") from None
        start_epoch = run.restore(state, optimizer=optimizer, scaler=precision.scaler) + 1
        initial = state.get("initial_eval")
        run.info(f"resumed from {args.resume or RESUME_FILE} at epoch {state['epoch']}")

    if args.eval != "none" and initial is None:
        if run.main:
            initial = evaluate(model, args)
        dist_utils.barrier()
    if initial is not None:
        run.report("initial", *initial, step=0)

    last = {"loss": None}

    def train_one_epoch(index):
        epoch = index + 1
        set_epoch(epoch)
        last["loss"] = run_epoch(net, criterion, loader, optimizer, args, epoch, run, views_of, precision)
        return {"epoch_loss": last["loss"]}

    def checkpoint(done, metrics, best):
        if run.main and (done % args.save_every == 0 or done == args.epochs):
            # the original's file: DataParallel state dict ('module.' keys) that linear.py reads, also written
            # where the original's README passes it on (../results/<dataset>/ beside image/)
            path = run.save(add_module_prefix(model.state_dict()), original_checkpoint_name(args, done),
                            bookkeeping=False)
            publish(path, original_output_path(SCRIPT_DIR, os.path.join("..", "results", args.dataset_name,
                                                                        original_checkpoint_name(args, done))))
        return {"epoch": done, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": precision.scaler.state_dict(), "args": args_record(args), "initial_eval": initial}

    fit(run, start_epoch - 1, args.epochs, train_one_epoch, checkpoint, resume_name=RESUME_FILE)

    if args.eval != "none":
        final = evaluate(model, args) if run.main else None
    else:    # no evaluation asked for: the run's last number is its training loss
        final = ("loss", last["loss"]) if last["loss"] is not None else None
    if final is not None:
        run.report("final", *final)
    run.finish(*(final or (None, None)))


def main(argv=None, variant: str = "image"):
    args = get_parser(variant).parse_args(argv)
    check_args(args)
    # the data order's seed must agree between processes (and survive a resume): --seed, else 0, the rule of
    # rank_split_loader; kept among the recorded flags (the run folders' digests include it)
    args.data_seed = args.seed if args.seed is not None else 0
    if args.device is not None:
        args.device = str(get_device(args.device))  # UserError for cuda without CUDA
    if args.multiprocessing_distributed:
        processes = dist_utils.processes_per_node(args) * max(args.world_size, 1)
        if args.batch_size % processes:
            raise UserError(f"--batch_size {args.batch_size} is not divisible by the {processes} processes "
                            "(--nproc-per-node x --world-size, or the GPU count); use a multiple of it")
    try:
        dist_utils.launch(main_worker, args)   # a worker's UserError: one error: line, exit 2
    except torch.multiprocessing.ProcessExitedException as e:
        raise UserError(f"a training process failed ({e}); its error message is printed above") from None


if __name__ == "__main__":
    run_main(main)
