"""Self-supervised MoCo + Mutual Contrastive Learning pre-training (spec §b.3, §d.4, §g.3).

    python main_moco_mcl.py -a resnet18 --lr 0.03 --batch-size 256 --number-net 2 \
        --dist-url tcp://localhost:10001 --multiprocessing-distributed --world-size 1 --rank 0 --data ./data/ImageNet

Differences from the original (README.md): the end-of-epoch log line works (quirk 9), ``--mlp`` really adds
the MoCo-v2 head (quirk 10, only with the flag), ``--gpu-ids`` is optional and a single-process run (CPU or
one GPU) is allowed with identity gathers (quirk 22), the run folder of ``common.engine`` (``$CL_RUNS_DIR/mcl/
<name>/``, auto-resume from its newest ``checkpoint_{epoch:04d}.pth.tar``), each checkpoint also published to the
original's ``./checkpoint/`` (``--checkpoint``) where the README's ``main_lincls.py --pretrained`` reads it.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from common.augment import moco_v1_transform, moco_v2_transform
from common.augment.on_device import DeviceViews, add_augment_arg, uint8_collate
from common.backbones import build_backbone
from common.data import ImageFolder
from common.data.seeded import SeededTransformDataset
from common.eval.metrics import accuracy
from common.distributed import (add_distributed_args, cleanup, init_distributed, launch,
                                module_state_dict, per_process_batch_size, per_process_workers, wrap_ddp)
from common.engine import Run, add_run_args, fit
from common.schedules import moco_epoch_lr
from common.training import add_moco_args, add_moco_model_args, meter_epoch, rank_split_loader
from common.utils import (HelpFormatter, MixedPrecision, UserError, add_precision_args, run_main,
                          seed_everything, set_visible_gpus)
from mcl.engine import METHOD, original_dir, publish_to, require_keys
from mcl.moco.builder_mcl import MoCo
from mcl.moco.loader import TwoCropsTransform


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="MoCo + MCL pre-training (main_moco_mcl.py)",
                                formatter_class=HelpFormatter)
    add_moco_args(p, data="./data/ImageNet/", data_help="dataset root holding train/", helps={
        "arch": "torchvision-style encoder name from common.backbones (resnet18, resnet50, ...)",
        "workers": "data loading workers (total, split per process)",
        "resume": "checkpoint to resume from, ours or the original's (default: the run folder's newest "
                  "checkpoint_*.pth.tar)"})
    p.add_argument("--gpu-ids", default=None, type=str,
                   help="written to CUDA_VISIBLE_DEVICES before CUDA starts, if given (quirk 22 fixed: optional here, "
                        "required by the original); without CUDA a notice and the CPU")
    p.add_argument("--number-net", default=2, type=int,
                   help="number of peer networks N (quirk 21: at least 2, N = 1 crashed late in the original; refused "
                        "up front)")
    p.add_argument("--checkpoint", default=None, type=str,
                   help="the original's output folder: every checkpoint_{epoch:04d}.pth.tar is also published there "
                        "(default ./checkpoint beside this script); the run itself lives in its run folder")
    add_moco_model_args(p, helps={
        "moco_k": "queue size per network; must be divisible by the batch",
        "mlp": "MoCo-v2 MLP head. FIXED: replaces each encoder's fc with Linear-ReLU-fc; in the original the flag "
               "registered unused modules and had no effect (quirk 10)"})
    # additions
    p.add_argument("--image-size", default=224, type=int, help="crop size (smaller for smoke tests)")
    add_augment_arg(p)
    add_precision_args(p)
    add_run_args(p, name="moco_mcl_<arch>_n<N>-<digest of the result flags>", freeze_bn="--freeze-bn")
    add_distributed_args(p)
    return p


def build_encoder(arch):
    def base_encoder(num_classes):
        try:
            return build_backbone(arch, num_classes=num_classes)
        except ValueError as e:
            raise UserError(f"-a/--arch {arch}: {e}") from None
    return base_encoder


CHECKPOINT = "checkpoint_{epoch:04d}.pth.tar"   # numbered by the epoch index, as in MoCo: after epoch 0 -> 0000


def main_worker(local_rank, args):
    init_distributed(args, local_rank)
    seed_everything(args.seed, deterministic=args.seed is not None)
    with Run.open(METHOD, args, readable=f"moco_mcl_{args.arch}_n{args.number_net}", name=args.name,
                  ignore=("checkpoint", "gpu_ids"),
                  overwrite=not args.auto_resume or bool(args.resume)) as run:
        run.info(f"args: {vars(args)}")
        pretrain(run, args)
    cleanup()


def pretrain(run: Run, args) -> None:
    args.local_batch_size = per_process_batch_size(args.batch_size, args)
    global_batch = args.local_batch_size * args.world_size
    if args.moco_k % global_batch:
        raise UserError(f"--moco-k {args.moco_k} is not divisible by the global batch size {global_batch} "
                        f"(--batch-size x processes); the queue would be overrun. Pick a multiple, "
                        f"e.g. --moco-k {global_batch * max(1, args.moco_k // global_batch)}")

    model = MoCo(build_encoder(args.arch), args.number_net, args.moco_dim, args.moco_k, args.moco_m,
                 args.moco_t, args.mlp)
    precision = MixedPrecision(args.device, args.amp, args.channels_last)
    model = wrap_ddp(precision.prepare(model), args)
    # over every parameter like the original (the key encoders get no gradient, so SGD leaves them alone): the
    # optimizer state has the original's layout, and the original's checkpoints resume here
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)

    state = run.resume_state(args.resume or None, "checkpoint_[0-9]*.pth.tar", require=("state_dict", "epoch"))
    if state is not None:
        require_keys(state, ("state_dict", "epoch", "optimizer"), run.resume_path, "main_moco_mcl.py")
        args.start_epoch = run.restore(state, model, optimizer, precision.scaler)
        run.info(f"=> loaded checkpoint '{run.resume_path}' (epoch {state['epoch']})")

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
    train_loader, set_epoch = rank_split_loader(train_dataset, args.local_batch_size,
                                                per_process_workers(args.workers, args), args,
                                                collate_fn=uint8_collate if batched is not None else None)

    last = {}

    def train_epoch(epoch):
        set_epoch(epoch)
        views_of.set_epoch(epoch)
        lr = moco_epoch_lr(optimizer, epoch, args)
        meters = train(train_loader, model, optimizer, epoch, args, run, views_of, precision)
        last["loss"] = meters["Loss"].avg
        # quirk 9 fixed: the original referenced undefined top1_avg / top5_avg here
        line = (f"Epoch:{epoch}\t lr:{lr:.5f}\t loss:{last['loss']:.4f}\t "
                + "\t ".join(f"{n}:{meters[n].avg:.4f}" for n in ("VCL", "SoftVCL", "ICL", "SoftICL"))
                + f"\t Acc@1:{meters['Acc@1'].avg:.3f}\t Acc@5:{meters['Acc@5'].avg:.3f}")
        run.info(line)
        if run.main:
            with open(os.path.join(run.run_dir, f"imagenet_{args.arch}_moco.txt"), "a") as f:
                f.write(line + "\n")
        return {tag: meters[name].avg for tag, name in TAGS.items()} | {"lr": lr}

    def checkpoint(done, metrics, best):
        # the original's checkpoint: DDP state dict ('module.' keys, what main_lincls.py reads), epoch + 1, arch,
        # optimizer; plus the AMP loss scale and the arguments (common.engine adds flags, RNG, step, code version)
        return {"epoch": done, "arch": args.arch, "state_dict": module_state_dict(model),
                "optimizer": optimizer.state_dict(), "scaler": precision.scaler.state_dict(), "args": vars(args)}

    fit(run, args.start_epoch, args.epochs, train_epoch, checkpoint, resume_name=CHECKPOINT,
        on_saved=lambda path, _: publish_to(path, original_dir(args.checkpoint)))
    if "loss" in last:
        run.report("final", "loss", last["loss"])
    run.finish("loss", last.get("loss"))


# training meters -> tags of the logging schema (train/<tag>)
TAGS = {"loss": "Loss", "loss_vcl": "VCL", "loss_soft_vcl": "SoftVCL", "loss_icl": "ICL", "loss_soft_icl": "SoftICL",
        "top1": "Acc@1", "top5": "Acc@5"}


def train(train_loader, model, optimizer, epoch, args, run: Run, views_of: DeviceViews, precision: MixedPrecision):
    def step(i, images_target):
        im_q, im_k = views_of(images_target[0])
        with precision.autocast():  # the builder computes the MoCo-MCL loss in float32 whatever autocast says
            logits, labels, vcl, soft_vcl, icl, soft_icl = model(im_q, im_k)
        loss = vcl + soft_vcl + icl + soft_icl

        def report():   # weighted by the batch size (the original's lincls used images[0].size(0))
            acc1, acc5 = accuracy(logits[0], labels, topk=(1, 5))
            return torch.stack([loss, vcl, soft_vcl, icl, soft_icl, acc1, acc5])
        return loss, im_q.shape[0], report

    names = ("Loss", "VCL", "SoftVCL", "ICL", "SoftICL", "Acc@1", "Acc@5")
    return meter_epoch(run, train_loader, model, args, epoch, step, optimizer, precision.backward_step,
                       [(n, ":.4f") for n in names], show=not args.progress, where="{epoch}:{i}",
                       hint="Try a lower --lr.")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.number_net < 2:
        raise UserError(f"--number-net {args.number_net}: MCL needs at least 2 networks (quirk 21)")
    set_visible_gpus("--gpu-ids", args.gpu_ids)  # before any CUDA call, as the original
    launch(main_worker, args)


if __name__ == "__main__":
    run_main(main)
