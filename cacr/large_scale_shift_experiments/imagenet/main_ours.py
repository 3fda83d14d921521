"""CACR with a queue MoCo on label-shifted large-scale data (spec §b.3, §e.2, §f.2, §g.2).

ImageFolder data (ImageNet-1K / ImageNet-100 / ImageNet-22K, ``<data>/train``) or, from ``webvision/main_ours.py``,
the WebVision-v1 file lists.  The README command:

    python large_scale_shift_experiments/imagenet/main_ours.py -a resnet50 --lr 0.03 --Ny 4 --Ns 256 \
      --moco-k 65536 --tau_pos 1.0 --tau_neg 2.0 --alpha 1.0 --beta 1.0 --mlp --aug-plus --cos \
      --dist-url tcp://localhost:10001 --multiprocessing-distributed --world-size 1 --rank 0 <data>
"""
from __future__ import annotations

import argparse
import os

import torch

from common import distributed as cdist
from common.augment import moco_v1_transform, moco_v2_transform
from common.backbones import build_backbone
from common.data import WebVision, build_dataset
from common.data.seeded import SeededTransformDataset
from common.engine import add_run_args, args_record, fit, original_output_path, publish
from common.training import add_moco_args, add_moco_model_args, meter_epoch, rank_split_loader
from common.schedules import moco_epoch_lr
from common.utils import HelpFormatter, MixedPrecision, UserError, add_precision_args, run_main, set_visible_gpus

from cacr.large_scale_shift_experiments.imagenet.ours.builder import MoCo
from cacr.large_scale_shift_experiments.imagenet.ours.loader import MultiCropsTransform
from cacr.worker import open_run

RESUME_FILE = "checkpoint.pth.tar"
LARGE_SCALE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_parser(webvision: bool = False):
    parser = argparse.ArgumentParser(description=f"CACR queue-MoCo pre-training on "
                                                 f"{'WebVision-v1' if webvision else 'an ImageFolder dataset'}",
                                     formatter_class=HelpFormatter)
    add_moco_args(parser, batch_size=None, print_freq=50, data_help="dataset root (ImageFolder with train/; "
                  "WebVision: root with info/); env DATA", helps={
                      "arch": "torchvision / common backbone name", "workers": "data loading workers per node",
                      "start_epoch": "manual epoch number (overwritten by resume)",
                      "resume": "checkpoint to resume (default: the newest checkpoint of the run directory)",
                      "seed": "seed (+ rank)"})
    parser.add_argument("--interval", default=50, type=int, help="keep checkpoint_XXXX.pth.tar every N epochs")
    parser.add_argument("--gpus", type=int, nargs="*", default=None,
                        help="GPU ids on this node, written to CUDA_VISIBLE_DEVICES before CUDA starts (default all); "
                             "without CUDA a notice and the CPU")
    add_moco_model_args(parser, t=None, helps={"moco_k": "queue length K", "mlp": "2-layer MLP head (MoCo v2)"})
    parser.add_argument("--moco-contr-w", default=0, type=float,
                        help="leftover of the original; must be 0 (quirk §k.16: any other value crashed the original; "
                             "here a clear error)")
    parser.add_argument("--moco-contr-tau", default=0.07, type=float, help="leftover of the original; unused")
    parser.add_argument("--moco-unif-no-intra-batch", action="store_true",
                        help="repulsion over the queue only (drop the in-batch negatives)")
    parser.add_argument("--moco-queue-per-view", action=argparse.BooleanOptionalAction, default=True,
                        help="queue repulsion with every view's own q·queue (default: the queue-caching bug, "
                             "quirk 1, is fixed). --no-moco-queue-per-view reproduces the original, which caches "
                             "q_0·queue and reuses it for every view (the published numbers were trained so)")
    parser.add_argument("--Ny", type=int, default=4, help="positives per sample (Ny+1 views)")
    add_precision_args(parser)
    parser.add_argument("--Ns", type=int, default=128, help="batch size per node (divided over its processes)")
    parser.add_argument("--tau_pos", type=float, default=1.0)
    parser.add_argument("--tau_neg", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=3.0,
                        help="scale of the attraction cost (quirk §k.6 guarded: 0 is a clear error)")
    parser.add_argument("--beta", type=float, default=3.0,
                        help="scale of the repulsion cost (quirk §k.6 guarded: 0 is a clear error)")
    parser.add_argument("--tau_plus", type=float, default=0.1,
                        help="passed to the model, unused (quirk §k.5 reproduced, as the original)")
    parser.add_argument("--with_debiased", action="store_true",
                        help="unused by the model (quirk §k.5 reproduced, as the original)")
    parser.add_argument("--output_folder", default=None, type=str,
                        help="root of runs/cacr/... (default $CL_RUNS_DIR or the working directory; the original "
                             "wrote to ./results)")
    parser.add_argument("--image-size", default=224, type=int, help="crop size (224; small values for smoke tests)")
    add_run_args(parser, auto_resume="--no-auto-resume", freeze_bn="--freeze-bn")
    cdist.add_distributed_args(parser, dist_url="tcp://localhost:10004")
    return parser


def dataset_name_from_path(path: str) -> str:
    """The original's folder name rule; anything else falls back to the folder's basename (quirk §k.16, fixed)."""
    p = path.lower()
    if "imbalanced_linear" in p:
        return "imagenet100_imbalanced_linear"
    if "imbalanced_exp" in p:
        return "imagenet100_imbalanced_exp"
    if "imagenet100" in p and "imbalanced" not in p:
        return "imagenet100"
    if "imagenet" in p and "100" not in p:
        return "imagenet"
    return os.path.basename(os.path.normpath(path)) or "dataset"


def run_name(args, dataset_name: str) -> str:
    terms = [f"mocom{args.moco_m:g}_moco_k{args.moco_k:g}"]
    terms.append(f"Ny{args.Ny:g}")
    terms.append(f"Ns{args.Ns:g}" + ("(no-intra-batch)" if args.moco_unif_no_intra_batch else ""))
    terms.append(f"K{args.moco_k:g}")
    if args.mlp:
        terms.append("mlp")
    if args.aug_plus:
        terms.append("aug+")
    if args.cos:
        terms.append("cos")
    if args.moco_queue_per_view:
        terms.append("queue_per_view")
    terms += [f"b{args.Ns}", f"lr{args.lr:g}", f"e{','.join(map(str, args.schedule))},{args.epochs}",
              f"tau_pos{args.tau_pos:g}", f"tau_neg{args.tau_neg:g}", f"alpha{args.alpha:g}", f"beta{args.beta:g}",
              f"with_debiased_{args.with_debiased}"]
    return os.path.join("ours", dataset_name, args.arch, "_".join(terms))


def build_train_dataset(args):
    size = args.image_size
    base = moco_v2_transform(size) if args.aug_plus else moco_v1_transform(size)
    transform = MultiCropsTransform(base, args.Ny + 1)
    images = WebVision(args.data) if args.webvision else build_dataset("imagefolder", args.data, "train")
    # with --seed the views of an image depend on (seed, epoch, index) only, whatever the number of processes
    return SeededTransformDataset(images, transform, args.seed)


def main(argv=None, webvision: bool = False):
    args = get_parser(webvision).parse_args(argv)
    args.webvision = webvision
    if not args.data:
        raise UserError("no dataset root given: pass it as the positional DIR argument or set DATA")
    if args.moco_contr_w != 0:
        raise UserError("--moco-contr-w is a leftover of the align-uniform code and crashes the original; "
                        "only 0 is supported")
    if args.Ny < 1:
        raise UserError("--Ny must be >= 1")
    set_visible_gpus("--gpus", args.gpus)  # before any CUDA call, as the original
    args.dataset_name = "webvision_v1" if webvision else dataset_name_from_path(args.data)
    cdist.launch(main_worker, args)


def main_worker(local_rank, args):
    with open_run(local_rank, args, readable=run_name(args, args.dataset_name), root=args.output_folder,
                  ignore=("interval", "start_epoch")) as run:
        pretrain(run, args)
    cdist.cleanup()


def pretrain(run, args):
    batch_size = cdist.per_process_batch_size(args.Ns, args)
    global_batch = batch_size * args.world_size
    if args.moco_k % global_batch != 0:
        raise UserError(f"--moco-k {args.moco_k} is not divisible by the global batch {global_batch} "
                        f"(--Ns {args.Ns} per node x {args.world_size // max(args.ngpus_per_node, 1)} nodes); "
                        "the queue is filled in whole batches: choose --moco-k as a multiple of it")

    model = MoCo(lambda num_classes: build_backbone(args.arch, num_classes=num_classes), args.moco_dim,
                 args.moco_k, args.moco_m, args.mlp, args.Ny, args.tau_pos, args.tau_neg, args.alpha, args.beta,
                 args.tau_plus, args.with_debiased, not args.moco_unif_no_intra_batch, args.moco_queue_per_view)
    precision = MixedPrecision(args.device, args.amp, args.channels_last)
    model = cdist.wrap_ddp(precision.prepare(model), args)
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    start_epoch = args.start_epoch
    # ours (checkpoint.pth.tar) or the original's checkpoint_XXXX.pth.tar: the same keys (module.encoder_q ...)
    state = run.resume_state(args.resume, RESUME_FILE, require=("epoch", "state_dict", "optimizer"))
    if state is not None:   # the original's file has no scaler / RNG state: the run continues with fresh ones
        start_epoch = run.restore(state, model, optimizer, precision.scaler)

    dataset = build_train_dataset(args)
    loader, set_epoch = rank_split_loader(dataset, batch_size, cdist.per_process_workers(args.workers, args), args,
                                          shuffle_seed_stride=100003, batch_flag="--Ns")

    last = {}     # the last epoch's training scalars: the run's final number (no evaluation in pre-training)

    def one_epoch(epoch):
        set_epoch(epoch)
        lr = moco_epoch_lr(optimizer, epoch, args)
        last.update(train(loader, model, optimizer, epoch, args, run, precision), lr=lr)
        return last

    def checkpoint(done, metrics, best):
        # the original's layout: DDP keys (module.encoder_q..., module.queue), epoch = the next epoch
        state = {"epoch": done, "arch": args.arch, "state_dict": cdist.module_state_dict(model),
                 "optimizer": optimizer.state_dict(), "scaler": precision.scaler.state_dict(),
                 "args": args_record(args)}
        if done % args.interval == 0:   # the original's kept file, numbered by the 0-based epoch just trained
            path = run.save(state, original_checkpoint_name(done - 1))
            publish(path, original_publish_path(args, original_checkpoint_name(done - 1)))
        return state

    fit(run, start_epoch, args.epochs, one_epoch, checkpoint, resume_name=RESUME_FILE)
    run.finish("loss", last.get("loss"))


def train(loader, model, optimizer, epoch, args, run, precision: MixedPrecision) -> dict:
    def step(i, images_target):
        images = [precision.input(im.to(args.device, non_blocking=True)) for im in images_target[0]]
        with precision.autocast():
            losses = model(images, epoch)
        loss = losses.loss1 + losses.loss2
        return loss, images[0].shape[0], lambda: torch.stack([loss, losses.loss1, losses.loss2])

    # the epoch's means over every step (the run's final number), not only over the printed ones
    meters = meter_epoch(run, loader, model, args, epoch, step, optimizer, precision.backward_step,
                         [("Loss", ":.4e"), ("Loss1", ":.4e"), ("Loss2", ":.4e")], every_step=True, data_time=False)
    return {"loss": meters["Loss"].avg, "loss1": meters["Loss1"].avg, "loss2": meters["Loss2"].avg}


def original_checkpoint_name(epoch: int) -> str:
    """The original's ``checkpoint_{:04d}.pth.tar`` of the 0-based ``epoch`` (the last of 200 epochs: 0199)."""
    return f"checkpoint_{epoch:04d}.pth.tar"


def original_publish_path(args, filename: str) -> str | None:
    """Where the original wrote its kept checkpoints, which its README's ``main_lincls.py --pretrained`` reads:
    ``<--output_folder>/ours/<dataset>/<arch>/<terms>/`` (default ``results/`` of the folder it ran in)."""
    relative = os.path.join(run_name(args, args.dataset_name), filename)
    if args.output_folder:
        return os.path.join(args.output_folder, relative)
    script_dir = os.path.join(LARGE_SCALE_DIR, "webvision" if args.webvision else "imagenet")
    return original_output_path(script_dir, os.path.join("results", relative))


if __name__ == "__main__":
    run_main(main)
