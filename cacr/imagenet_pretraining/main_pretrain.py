"""CACR ImageNet pre-training, MoCo-v3 style (spec §b.6, §e.3, §f.3, §g.3).

README commands (spec §c.3):
    ResNet-50: python imagenet_pretraining/main_pretrain.py --moco-m-cos --crop-min=.2 --lr=.3 --wd=1.5e-6 \
        --moco-m=0.996 --epochs=1000 --dist-url=tcp://[addr]:[port] --multiprocessing-distributed \
        --world-size=[nodes] --rank=[node] --output_dir=[dir] [imagenet]
    ViT-B/16:  ... -a vit_base --optimizer=adamw --lr=1.5e-4 --weight-decay=.1 --epochs=300 --warmup-epochs=40 \
        --moco-m-cos --moco-t=.2 ...
Note (quirk §k.7): without ``--use-local-crops`` each term has one query, the attraction weights are all 1 and the
rbf CACR loss is exactly half the MoCo-v3 loss; the paper's numbers used the light multi-crop mode.
"""
from __future__ import annotations

import argparse

import torch

from common import distributed as cdist
from common.backbones import build_backbone
from common.data import build_dataset
from common.data.seeded import SeededTransformDataset
from common.engine import add_run_args, args_record, fit
from common.training import add_moco_args, meter_epoch, rank_split_loader
from common.schedules import cosine_momentum, set_lr, warmup_cosine_lr
from common.utils import HelpFormatter, MixedPrecision, UserError, add_precision_args, run_main

from cacr.imagenet_pretraining import vits
from cacr.imagenet_pretraining.moco import builder as moco_builder
from cacr.imagenet_pretraining.moco.loader import MulCropsTransform, global_transforms, local_transform
from cacr.imagenet_pretraining.moco.optimizer import LARS
from cacr.worker import open_run

RESUME_FILE = "checkpoint.pth.tar"


def get_parser():
    parser = argparse.ArgumentParser(
        description="CACR ImageNet pre-training (MoCo-v3 style)", formatter_class=HelpFormatter)
    add_moco_args(parser, epochs=100, batch_size=4096, lr=0.6, schedule=None, weight_decay=1e-6,
                  data_help="path to the dataset (uses DIR/train); env DATA", helps={
                      "arch": "vit_small, vit_base, vit_conv_small, vit_conv_base, vit_tiny (tests) or a ResNet name",
                      "workers": "data loading workers per node", "batch_size": "total batch over all processes",
                      "lr": "base lr; the actual lr is lr * batch-size / 256",
                      "resume": "checkpoint to resume (default: the newest checkpoint of the output directory)"})
    parser.add_argument("--output_dir", default=None, type=str,
                        help="checkpoint / log directory (default runs/cacr/pretrain_<arch>; original ./output_dir)")
    parser.add_argument("--save-freq", default=50, type=int,
                        help="keep checkpoint_XXXX.pth.tar every N epochs (quirk §k.17 fixed: the original kept every "
                             "epoch); "
                             "checkpoint.pth.tar is rewritten every epoch")
    parser.add_argument("--cacr-cost", default="rbf", type=str, choices=moco_builder.COSTS,
                        help="rbf (weighted InfoNCE, default) or euclidean")
    parser.add_argument("--use-full-mode", action="store_true",
                        help="with --use-local-crops: local crops also go through the momentum encoder and serve as "
                             "keys (full mode; quirk §k.7: without local crops it changes nothing)")
    parser.add_argument("--moco-dim", default=256, type=int)
    parser.add_argument("--moco-mlp-dim", default=4096, type=int)
    parser.add_argument("--moco-m", default=0.99, type=float)
    parser.add_argument("--moco-m-cos", action="store_true", help="cosine increase of the momentum to 1")
    parser.add_argument("--moco-t", default=1.0, type=float, help="temperature T")
    parser.add_argument("--stop-grad-conv1", action="store_true", help="ViT: freeze the patch projection")
    parser.add_argument("--optimizer", default="lars", type=str, choices=["lars", "adamw"],
                        help="LARS (ResNet) or AdamW (ViT); both touch all parameters, AdamW decays BN / biases too "
                             "(quirk §k.19 reproduced)")
    parser.add_argument("--warmup-epochs", default=10, type=int)
    parser.add_argument("--crop-min", default=0.08, type=float)
    parser.add_argument("--use-local-crops", action="store_true",
                        help="add local (multi-)crops (light mode: local crops are queries only). Quirk §k.7: the "
                             "README commands (and sh/pretrain_*.sh) run without it, as the original did; then each "
                             "term has one query, the CACR attraction weights are all 1 and the rbf loss is ½ × the "
                             "MoCo-v3 loss (the CACR weighting is inactive). Pass it (the README says the paper used "
                             "the light multi-crop mode) to enable the CACR weighting")
    parser.add_argument("--local_crops_number", type=int, default=8)
    parser.add_argument("--local_crops_scale", type=float, nargs="+", default=(0.05, 0.4))
    parser.add_argument("--image-size", default=224, type=int, help="global crop size (small for smoke tests)")
    parser.add_argument("--local-crop-size", default=96, type=int, help="local crop size")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision")
    add_precision_args(parser, amp=False)
    add_run_args(parser, auto_resume="--no-auto-resume", freeze_bn="--freeze-bn")
    cdist.add_distributed_args(parser, dist_url="env://")
    return parser


def build_model(args):
    if args.arch.startswith("vit"):
        base = lambda num_classes: vits.build_vit(args.arch, args.image_size, num_classes=num_classes,  # noqa: E731
                                                  stop_grad_conv1=args.stop_grad_conv1)
        return moco_builder.MoCo_ViT(base, args.moco_dim, args.moco_mlp_dim, args.moco_t)
    def base(num_classes, zero_init_residual=True):
        try:
            return build_backbone(args.arch, num_classes=num_classes, zero_init_residual=zero_init_residual)
        except TypeError as e:  # the CIFAR-style ResNets of common.backbones take no zero_init_residual
            raise UserError(f"-a {args.arch} cannot be used by the MoCo-v3 ResNet model ({e}); choose a torchvision "
                            "ResNet (resnet18/34/50/101/152, resnext*, wide_resnet*) or a vit_* model") from None
    return moco_builder.MoCo_ResNet(base, args.moco_dim, args.moco_mlp_dim, args.moco_t)


def adjust_learning_rate(optimizer, epoch, args):
    """Linear warm-up then half-cosine; ``epoch`` fractional (epoch + it/iters_per_epoch)."""
    return set_lr(optimizer, warmup_cosine_lr(args.lr, epoch, args.epochs, args.warmup_epochs))


def adjust_moco_momentum(epoch, args):
    """m(e) = 1 − ½(1 + cos(π·e/epochs))·(1 − m₀)."""
    return cosine_momentum(args.moco_m, epoch, args.epochs)


def main(argv=None):
    args = get_parser().parse_args(argv)
    if not args.data:
        raise UserError("no dataset root given: pass it as the positional DIR argument or set DATA")
    if args.use_full_mode and not args.use_local_crops:
        raise UserError("--use-full-mode only changes anything with --use-local-crops")
    if len(args.local_crops_scale) != 2:
        raise UserError("--local_crops_scale takes two numbers (min max)")
    cdist.launch(main_worker, args)


def main_worker(local_rank, args):
    # --output_dir is the run folder itself, as in the original (default: runs/cacr/pretrain_<arch>-<digest>)
    with open_run(local_rank, args, readable=f"pretrain_{args.arch}", folder=args.output_dir,
                  ignore=("start_epoch",)) as run:
        pretrain(run, args)
    cdist.cleanup()


def pretrain(run, args):
    precision = MixedPrecision(args.device, args.amp, args.channels_last)
    model = precision.prepare(build_model(args))
    args.lr = args.lr * args.batch_size / 256  # infer the actual learning rate from the total batch
    if args.distributed and args.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = cdist.wrap_ddp(model, args)
    batch_size = args.batch_size // args.world_size
    if batch_size < 2:
        raise UserError(f"--batch-size {args.batch_size} over {args.world_size} processes leaves {batch_size} "
                        "image(s) per process; BatchNorm needs at least 2")

    if args.optimizer == "lars":
        optimizer = LARS(model.parameters(), args.lr, weight_decay=args.weight_decay, momentum=args.momentum)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=args.weight_decay)
    scaler = precision.scaler
    start_epoch = args.start_epoch
    # ours (checkpoint.pth.tar) or the original's checkpoint_XXXX.pth.tar: the same keys (module.base_encoder ...)
    state = run.resume_state(args.resume, RESUME_FILE, require=("epoch", "state_dict", "optimizer"))
    if state is not None:
        start_epoch = run.restore(state, model, optimizer, scaler)

    t1, t2 = global_transforms(args.crop_min, args.image_size)
    if args.use_local_crops:
        transform = MulCropsTransform(t1, t2, local_transform(args.local_crops_scale, args.local_crop_size),
                                      args.local_crops_number)
    else:
        transform = MulCropsTransform(t1, t2)
    # with --seed the crops of an image depend on (seed, epoch, index) only, whatever the number of processes
    dataset = SeededTransformDataset(build_dataset("imagefolder", args.data, "train"), transform, args.seed)
    loader, set_epoch = rank_split_loader(dataset, batch_size, cdist.per_process_workers(args.workers, args), args,
                                          shuffle_seed_stride=100003)
    last = {}     # the last epoch's training scalars: the run's final number (no evaluation in pre-training)

    def one_epoch(epoch):
        set_epoch(epoch)
        last.update(loss=train(loader, model, optimizer, precision, epoch, args, run),
                    lr=optimizer.param_groups[0]["lr"])
        return last

    def checkpoint(done, metrics, best):
        # the original's layout: DDP keys (module.base_encoder..., module.momentum_encoder..., module.predictor...)
        state = {"epoch": done, "arch": args.arch, "state_dict": cdist.module_state_dict(model),
                 "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "args": args_record(args)}
        if done % args.save_freq == 0 or done == args.epochs:
            # the original's file name: checkpoint_%04d % the 0-based epoch just trained (last of 100: 0099)
            run.save(state, f"checkpoint_{done - 1:04d}.pth.tar")
        return state

    fit(run, start_epoch, args.epochs, one_epoch, checkpoint, resume_name=RESUME_FILE)
    run.finish("loss", last.get("loss"))


def train(loader, model, optimizer, precision, epoch, args, run):
    iters_per_epoch = len(loader)

    def step(i, images_target):
        # per iteration: the fractional epoch's lr (and momentum with --moco-m-cos)
        lr = adjust_learning_rate(optimizer, epoch + i / iters_per_epoch, args)
        moco_m = adjust_moco_momentum(epoch + i / iters_per_epoch, args) if args.moco_m_cos else args.moco_m
        images = [precision.input(im.to(args.device, non_blocking=True)) for im in images_target[0]]
        local = images[2:] if args.use_local_crops else None
        with precision.autocast():
            loss = model(images[0], images[1], moco_m, local, args.cacr_cost, args.use_full_mode)
        return loss, images[0].shape[0], lambda: torch.stack([loss.float(), torch.tensor(lr, device=loss.device)])

    meters = meter_epoch(run, loader, model, args, epoch, step, optimizer, precision.backward_step,
                         [("Loss", ":.4e"), ("LR", ":.4e")], hint="With AMP try --no-amp or a lower --lr.")
    return meters["Loss"].avg


if __name__ == "__main__":
    run_main(main)
