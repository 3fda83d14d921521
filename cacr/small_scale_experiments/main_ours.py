"""CACR small-scale pre-training (spec §b.1, §g.1): CIFAR-10 / CIFAR-100 / STL-10 / digits, balanced or imbalanced.

One entry for every dataset (``--dataset``); the original per-dataset paths
``small_scale_experiments/{cifar10,cifar100,stl10}/main_ours.py`` are thin launchers that set it.

    cd cacr && python small_scale_experiments/main_ours.py --dataset cifar10 --data_folder ./data \
        --Ny 4 --Ns 128 --alpha 1.0 --beta 1.0 --tau_pos 1.0 --tau_neg 0.9
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn as nn

from common.augment.on_device import DeviceViews, add_augment_arg, uint8_collate
from common.engine import Run, add_run_args, args_record, fit, original_output_path, publish
from common.meters import AverageMeter
from common.training import load_model_state, train_batches
from common.utils import (HelpFormatter, MixedPrecision, UserError, add_precision_args, check_finite, get_device,
                          gpus_available, run_main, seed_everything)

from cacr.small_scale_experiments import util
from cacr.small_scale_experiments.encoder import build_encoder
from cacr.small_scale_experiments.losses import CHOICES, CACRLoss, SimCLRBaseline
from cacr.small_scale_experiments.monitor import monitor_accuracy

RESUME_FILE = "checkpoint.pth.tar"
SMALL_SCALE_DIR = os.path.dirname(os.path.abspath(__file__))
ORIGINAL_DATASET_FOLDERS = ("cifar10", "cifar100", "stl10")


def parse_option(argv=None, dataset_default: str = "cifar10"):
    parser = argparse.ArgumentParser(
        "CACR small-scale pre-training",
        description="Contrastive attraction + contrastive repulsion with SmallAlexNet and in-batch negatives.",
        formatter_class=HelpFormatter)
    parser.add_argument("--dataset", type=str, default=dataset_default, choices=util.DATASETS,
                        help="which dataset (replaces the original per-dataset copies of this file)")
    parser.add_argument("--Ny", type=int, default=4, help="number of positive views per sample (Ny+1 views)")
    parser.add_argument("--Ns", type=int, default=128, help="batch size (Ns-1 in-batch negatives per sample)")
    parser.add_argument("--tau_pos", type=float, default=1.0, help="temperature of the attraction weights")
    parser.add_argument("--tau_neg", type=float, default=None,
                        help="temperature of the repulsion weights (default as the original files: 1.0, "
                             "cifar100 2.0; the README commands use 0.9 for cifar10 and 2.0 for stl10, see sh/)")
    parser.add_argument("--alpha", type=float, default=1.0,
                        help="scale of the attraction cost (quirk §k.6 guarded: 0 gave NaN weights in the original, "
                             "here a clear error)")
    parser.add_argument("--beta", type=float, default=None,
                        help="scale of the repulsion cost (default as the original files: 1.0, stl10 2.0; the "
                             "README STL-10 command uses 1.0)")
    parser.add_argument("--choice", type=str, default="full", choices=CHOICES,
                        help="full / without_w1 (uniform attraction) / without_w2 (uniform repulsion) / none")
    parser.add_argument("--loss", type=str, default="cacr", choices=("cacr", "simclr"),
                        help="cacr: the CACR loss; simclr: the plain SimCLR baseline, NT-Xent over the same views "
                             "with temperature --temperature (not in the original)")
    parser.add_argument("--temperature", type=float, default=0.5, help="NT-Xent temperature of --loss simclr")
    parser.add_argument("--tau_plus", type=float, default=0.1,
                        help="class prior of the debiased variant (quirk §k.5 reproduced: the positive term is not "
                             "scaled by beta)")
    parser.add_argument("--with_debiased", action="store_true",
                        help="debiased repulsion (choice=full only; quirk §k.5 reproduced as in the original)")
    parser.add_argument("--cost", type=str, default="euclidean", choices=("euclidean", "rbf"),
                        help="repulsion cost: euclidean (the original's active code) or rbf (its commented-out "
                             "variant, exp(-t*d))")
    parser.add_argument("--rbf_t", type=float, default=2.0, help="t of the rbf cost")
    parser.add_argument("--data_folder", type=str, default=os.environ.get("DATA", "./data"),
                        help="dataset root (env DATA); nothing is downloaded")
    parser.add_argument("--imbalanced", action="store_true", help="cifar10 / cifar100: the imbalanced subset")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=None, help="SGD learning rate (default 0.12*Ns/256)")
    parser.add_argument("--lr_decay_rate", type=float, default=0.1)
    parser.add_argument("--lr_decay_epochs", type=int, nargs="*", default=[155, 170, 185])
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--feat_dim", type=int, default=128)
    parser.add_argument("--num_workers", type=int, default=6)
    parser.add_argument("--log_interval", type=int, default=40)
    parser.add_argument("--gpus", type=int, nargs="*", default=None,
                        help="CUDA ids for nn.DataParallel (default: all visible; quirk §k.15 fixed: the original's "
                             "default ids were nonsense; without CUDA a notice and the CPU)")
    parser.add_argument("--result_folder", type=str, default=None,
                        help="checkpoint root (default: the run directory runs/cacr/<name>)")
    parser.add_argument("--log_folder", type=str, default=None,
                        help="accepted for the original's commands; TensorBoard files go to the run folder")
    # additions of this re-implementation
    parser.add_argument("--arch", type=str, default="small_alexnet",
                        help="encoder: small_alexnet (the paper) or any common.backbones name (+ linear head, "
                             "L2 norm) for quick CPU runs")
    parser.add_argument("--image-size", type=int, default=None,
                        help="crop size (default 32, STL-10 64); smaller values for quick runs with --arch")
    parser.add_argument("--crop-min", type=float, default=None,
                        help="min scale of the RandomResizedCrop (default 0.2, STL-10 0.08)")
    add_augment_arg(parser)
    add_precision_args(parser)
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (quirk §k.15 fixed: the original did not seed)")
    parser.add_argument("--resume", type=str, default="",
                        help="checkpoint to resume; by default the newest checkpoint of the run directory is used")
    add_run_args(parser, name="derived from the flags", auto_resume="--no-auto-resume")
    parser.add_argument("--monitor", type=str, default="linear", choices=("linear", "knn", "none"),
                        help="print the evaluation of the untrained and of the trained encoder as "
                             "'initial/final <metric>: <value>': linear = logistic regression on frozen "
                             "--monitor-layer features of the train split tested on the test split; knn = "
                             "weighted kNN (k=--monitor-knn-k, T=0.1) on the L2-normalised features")
    parser.add_argument("--monitor-knn-k", type=int, default=20, help="k of the kNN monitor")
    parser.add_argument("--monitor-epochs", type=int, default=100, help="epochs of the monitor's linear probe")
    parser.add_argument("--monitor-max-images", type=int, default=10000,
                        help="use at most this many train / test images for the monitor")
    parser.add_argument("--monitor-layer", type=int, default=-2, help="encoder layer for the monitor (-2 = fc7)")
    parser.add_argument("--no-monitor-bn-recalibrate", dest="monitor_bn_recalibrate", action="store_false",
                        help="evaluate with the encoder's own BN running statistics; by default the monitor "
                             "re-estimates them on the train split (an untrained network has none)")
    args = parser.parse_args(argv)

    defaults = util.FLAG_DEFAULTS[args.dataset]
    if args.tau_neg is None:
        args.tau_neg = defaults["tau_neg"]
    if args.beta is None:
        args.beta = defaults["beta"]
    if args.lr is None:
        args.lr = 0.12 * args.Ns / 256
    if args.Ny < 1:
        raise UserError("--Ny must be >= 1 (CACR needs at least one positive view)")
    if args.Ns < 2:
        raise UserError("--Ns must be >= 2 (every sample needs in-batch negatives)")
    if args.with_debiased and args.choice != "full":
        raise UserError("--with_debiased only applies to --choice full")

    return args


def readable_name(args) -> str:
    """The readable part of the default run name (the engine appends a digest of the result flags)."""
    name = (f"{args.dataset}_Ny{args.Ny}_Ns{args.Ns}_tau_pos{args.tau_pos}_tau_neg{args.tau_neg}"
            f"_alpha{args.alpha}_beta{args.beta}_choice_{args.choice}_with_debiased_{args.with_debiased}")
    if args.dataset != "stl10":
        name += f"_with_imbalanced_{args.imbalanced}"
    if args.arch != "small_alexnet":
        name += f"_{args.arch}"
    if args.loss != "cacr":
        name += f"_{args.loss}"
    return name


def set_loader(args):
    if args.augment == "batched":   # the loader only decodes; DeviceViews makes the Ny+1 views on the device
        from common.augment.batched import ToUint8Tensor
        base = dataset = util.pretrain_dataset(args.dataset, args.data_folder, args.imbalanced, ToUint8Tensor())
    else:
        transform = util.pretrain_transform(args.dataset, args.image_size, args.crop_min)
        base = util.pretrain_dataset(args.dataset, args.data_folder, args.imbalanced)
        dataset = util.MultiAugUnsupervisedDataset(base, transform, args.Ny + 1)
    generator = torch.Generator()
    # no drop_last, like the original: the last batch is smaller (quirk §k.15, kept)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.Ns, shuffle=True, num_workers=args.num_workers,
                                         pin_memory=args.device.type == "cuda", generator=generator,
                                         persistent_workers=False,
                                         collate_fn=uint8_collate if args.augment == "batched" else None)
    return loader, generator, len(base)


def train_one_epoch(encoder, loader, criterion, optimizer, epoch, args, run: Run, views_of: DeviceViews,
                    precision: MixedPrecision) -> dict:
    meters = {k: AverageMeter(k) for k in ("loss1", "loss2", "loss", "time")}
    loss2_iter_mean = AverageMeter("loss2_plain")
    end = time.time()
    _, batches = train_batches(run, loader, encoder, args, f"epoch {epoch}")
    for it, batch in batches:
        views = views_of(batch[0] if args.augment == "batched" else batch)     # batched: (uint8 images, target)
        with precision.autocast():
            # each view is a separate pass so BN statistics are per view (as in the original)
            z = torch.stack([encoder(v) for v in views])
        loss, loss1, loss2 = criterion(z.float())
        optimizer.zero_grad(set_to_none=True)
        precision.backward_step(loss, optimizer)
        run.step += 1

        batch = views[0].shape[0]
        values = torch.stack([loss1.detach(), loss2.detach(), loss.detach()]).tolist()  # one host sync
        check_finite(values[2], f"epoch {epoch} iteration {it}", "For CACR also check --alpha/--beta/--tau_*.")
        meters["loss1"].update(values[0], batch)
        meters["loss2"].update(values[1], batch)
        loss2_iter_mean.update(values[1], 1)
        meters["loss"].update(values[2], batch)
        meters["time"].update(time.time() - end)
        end = time.time()
        batches.postfix(loss=f"{values[2]:.4f}")
        if (it + 1) % args.log_interval == 0:
            run.info(f"Epoch {epoch} [{it + 1}/{len(loader)}] loss1 {values[0]:.4f} ({meters['loss1'].avg:.4f}) "
                     f"loss2 {values[1]:.4f} ({meters['loss2'].avg:.4f}) loss {values[2]:.4f} "
                     f"({meters['loss'].avg:.4f}) time {meters['time'].val:.3f} ({meters['time'].avg:.3f})")
    # epoch averages: loss1 / total sample-weighted, loss2 a plain mean over iterations (as the original)
    return {"loss": meters["loss"].avg, "loss1": meters["loss1"].avg, "loss2": loss2_iter_mean.avg}


def encoder_publish_path(args) -> str | None:
    """The original's ``<result_folder>/ours/Ny{Ny}_Ns{Ns}/<terms>/encoder.pth`` (``./results`` inside the dataset
    folder the README runs it in), where ``linear_eval.py --encoder_checkpoint`` is pointed at."""
    terms = (f"tau_pos{args.tau_pos}_tau_neg{args.tau_neg}_alpha{args.alpha}_beta{args.beta}_choice_{args.choice}"
             f"_with_debiased_{args.with_debiased}")
    if args.dataset != "stl10":
        terms += f"_with_imbalanced_{args.imbalanced}"
    relative = os.path.join("ours", f"Ny{args.Ny}_Ns{args.Ns}", terms, "encoder.pth")
    if args.result_folder:
        return os.path.join(args.result_folder, relative)
    if args.dataset not in ORIGINAL_DATASET_FOLDERS:   # digits is this project's addition: no original folder
        return None
    return original_output_path(os.path.join(SMALL_SCALE_DIR, args.dataset), os.path.join("results", relative))


def main(argv=None, dataset_default: str = "cifar10"):
    args = parse_option(argv, dataset_default)
    gpus_available("--gpus", args.gpus)  # without CUDA: one notice line, the run goes on on the CPU
    args.device = get_device(args.device)
    seed_everything(args.seed)
    # an explicit --resume FILE continues that file whatever the folder holds (as --no-auto-resume starts over it)
    with Run.open("cacr", args, readable=readable_name(args), name=args.name, root=args.result_folder,
                  ignore=("log_folder", "log_interval"), overwrite=bool(args.resume) or not args.auto_resume) as run:
        return train(run, args)


def train(run: Run, args):
    run.info(" ".join(sys.argv))
    loader, generator, n_images = set_loader(args)
    run.info(f"{args.dataset}{' (imbalanced)' if args.imbalanced else ''}: {n_images} images, "
             f"{args.Ny + 1} views, batch {args.Ns}")
    input_size = util.image_size(args.dataset, args.image_size)
    precision = MixedPrecision(args.device, args.amp, args.channels_last)
    encoder = precision.prepare(build_encoder(args.arch, args.feat_dim, input_size).to(args.device))
    model = encoder
    views_of = DeviceViews(util.batched_pretrain_views(args.dataset, args.Ny + 1, args.image_size, args.crop_min)
                           if args.augment == "batched" else None, args.device, args.seed,
                           channels_last=args.channels_last)
    if args.device.type == "cuda" and args.gpus and len(args.gpus) > 1:
        model = nn.DataParallel(encoder, device_ids=args.gpus)
    if args.loss == "simclr":
        criterion = SimCLRBaseline(args.temperature)
    else:
        criterion = CACRLoss(args.alpha, args.beta, args.tau_pos, args.tau_neg, args.choice, args.with_debiased,
                             args.tau_plus, args.cost, args.rbf_t)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.lr_decay_epochs,
                                                     gamma=args.lr_decay_rate)
    start_epoch = 0
    state = run.resume_state(args.resume, RESUME_FILE, require=("epoch", "state_dict", "optimizer"))
    if state is not None:
        source = args.resume or os.path.join(run.run_dir, RESUME_FILE)
        if "epoch" not in state:   # the original's only file, encoder.pth: weights without a training state
            raise UserError(f"'{source}' holds no training state (no epoch / optimizer: it is an encoder.pth-style "
                            "state dict of the encoder); evaluate it with linear_eval.py --encoder_checkpoint, or "
                            "resume from a checkpoint.pth.tar of this script")
        load_model_state(encoder, state["state_dict"], source=f"checkpoint '{source}'")
        start_epoch = run.restore(state, optimizer=optimizer, scaler=precision.scaler,
                                  extra={"scheduler": scheduler} if state.get("scheduler") else None)

    if args.monitor != "none" and start_epoch == 0:
        run.report("initial", *monitor_accuracy(encoder, args), step=0)

    last = {}     # the last epoch's training scalars (the run's final number when nothing is evaluated)

    def one_epoch(epoch):
        # the shuffling order depends only on (seed, epoch), so a resumed run sees the same batches
        generator.manual_seed(args.seed * 100003 + epoch)
        views_of.set_epoch(epoch)
        last.update(train_one_epoch(model, loader, criterion, optimizer, epoch, args, run, views_of, precision))
        scheduler.step()
        return {**last, "lr": optimizer.param_groups[0]["lr"]}

    def checkpoint(done, metrics, best):
        return {"epoch": done, "state_dict": encoder.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": precision.scaler.state_dict(), "scheduler": scheduler.state_dict(),
                "args": args_record(args)}

    fit(run, start_epoch, args.epochs, one_epoch, checkpoint, resume_name=RESUME_FILE)

    # the original's only artefact: the bare encoder's state_dict (no bookkeeping keys: it loads as the original's)
    path = run.save(encoder.state_dict(), "encoder.pth", bookkeeping=False)
    publish(path, encoder_publish_path(args))
    run.info(f"saved {path}")
    # no evaluation asked for: the run's last number is its training loss
    metric, value = monitor_accuracy(encoder, args) if args.monitor != "none" else ("loss", last.get("loss"))
    if value is not None:
        run.report("final", metric, value)
    run.finish(metric, value)
    return encoder


if __name__ == "__main__":
    run_main(main)
