"""Linear classification of a MoCo-MCL checkpoint (network 0's query encoder), MoCo's protocol (spec §b.4, §h).

    python main_lincls.py -a resnet18 --lr 30.0 --batch-size 256 --pretrained <dir>/checkpoint_0199.pth.tar \
        --dist-url tcp://localhost:10001 --multiprocessing-distributed --world-size 1 --rank 0 --data ./data/ImageNet

Fixed against the original (README.md): ``-e/--evaluate`` works (quirk 11), accuracy meters are weighted by
the batch size (quirk 12), ``--resume`` works (quirk 13). The backbone stays in eval mode while training
(frozen BN statistics), as in the original. The run lives in the run folder of ``common.engine``
(``$CL_RUNS_DIR/mcl/<name>/``, auto-resume from its newest ``lincls_mcl_checkpoint_{epoch:04d}.pth.tar``); the
checkpoints keep the original's layout (``module.`` keys, epoch + 1, best_acc1) and are also published to the
original's ``./checkpoint/`` (``--checkpoint``).
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torch.utils.data import DataLoader

from common.backbones import build_backbone
from common.checkpoint import load_checkpoint
from common.distributed import (add_distributed_args, all_reduce_mean, cleanup, init_distributed,
                                is_main_process, launch, module_state_dict, per_process_batch_size,
                                per_process_workers)
from common.engine import Run, add_run_args, fit, original_input
from common.schedules import set_lr
from common.training import (add_moco_args, check_frozen, classifier_epoch, linear_classification_sets,
                             linear_head_training, load_model_state, progress, rank_split_loader)
from common.utils import HelpFormatter, UserError, check_finite, run_main, seed_everything, set_visible_gpus
from mcl.engine import MCL_DIR, METHOD, original_dir, publish_to, require_keys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Linear evaluation of MoCo-MCL (main_lincls.py)",
                                formatter_class=HelpFormatter)
    add_moco_args(p, data="./data/ImageNet/", data_help="dataset root holding train/ and val/", epochs=100, lr=30.0,
                  schedule=[60, 80], weight_decay=0.0, evaluate=True, helps={
                      "arch": "encoder name (common.backbones)", "workers": "data loading workers (total)",
                      "resume": "lincls checkpoint to resume (FIXED: crashed in the original, quirk 13; default: "
                                "newest checkpoint of the run directory)",
                      "evaluate": "only evaluate --resume on the validation set (FIXED: crashed in the original, "
                                  "quirk 11)"})
    p.add_argument("--gpu-ids", default=None, type=str,
                   help="written to CUDA_VISIBLE_DEVICES before CUDA starts, if given; without CUDA a notice and the "
                        "CPU")
    p.add_argument("--pretrained", default="", type=str, help="main_moco_mcl.py checkpoint (network 0 is used)")
    p.add_argument("--checkpoint", default=None, type=str,
                   help="the original's output folder: every lincls_mcl_checkpoint_{epoch:04d}.pth.tar and "
                        "model_best.pth.tar is also published there (default ./checkpoint beside this script)")
    # additions
    p.add_argument("--num-classes", default=1000, type=int, help="classifier outputs (the original: 1000)")
    p.add_argument("--image-size", default=224, type=int, help="crop size (smaller for smoke tests)")
    p.add_argument("--resize", default=256, type=int, help="validation resize before the center crop")
    add_run_args(p, name="lincls_mcl_<arch>-<digest of the result flags>")
    add_distributed_args(p)
    return p


PREFIX = "module.encoder_q_0."   # network 0's query encoder


def adjust_learning_rate(optimizer, epoch, args):
    return set_lr(optimizer, args.lr * 0.1 ** sum(1 for m in args.schedule if epoch >= m))


def run_epoch(loader, model, optimizer, epoch, args, run: Run | None = None):
    """One training pass (``optimizer`` given) or validation pass: (loss, top-1, top-5), batch-size weighted
    (quirk 12 fixed: not by images[0].size(0))."""
    train = optimizer is not None
    total = min(len(loader), args.max_iters) if (train and args.max_iters) else len(loader)

    def check(i, loss, *_):
        if i % args.print_freq == 0:   # every process stops together on NaN
            check_finite(all_reduce_mean(loss.detach()) if train else loss, f"{epoch}:{i}")

    bar = progress(loader, f"{'train' if train else 'val'} {epoch}", args.progress and is_main_process(), total=total)
    # frozen BN statistics also while training the classifier (the original's protocol)
    return classifier_epoch(model, loader, args, optimizer, run, bar, check, args.max_iters if train else 0)


CHECKPOINT = "lincls_mcl_checkpoint_{epoch:04d}.pth.tar"   # numbered by the epoch index, as in MoCo


def main_worker(local_rank, args):
    init_distributed(args, local_rank)
    seed_everything(args.seed, deterministic=args.seed is not None)
    if args.evaluate:   # nothing is written: no run folder
        linear(None, args)
    else:
        with Run.open(METHOD, args, readable=f"lincls_mcl_{args.arch}", name=args.name, ignore=("checkpoint", "gpu_ids"),
                      overwrite=not args.auto_resume or bool(args.resume)) as run:
            run.info(f"args: {vars(args)}")
            linear(run, args)
    cleanup()


def linear(run: Run | None, args) -> None:
    """Train the fc over the frozen encoder in ``run``, or (``run`` None, ``-e``) validate ``--resume``."""
    if args.evaluate and not args.resume and not args.pretrained:
        raise UserError("-e/--evaluate needs --resume <lincls checkpoint> (or --pretrained to evaluate a fresh fc)")
    args.local_batch_size = per_process_batch_size(args.batch_size, args)
    workers = per_process_workers(args.workers, args)
    try:
        model = build_backbone(args.arch, num_classes=args.num_classes)
    except ValueError as e:
        raise UserError(f"-a/--arch {args.arch}: {e}") from None
    model, optimizer, reference = linear_head_training(
        model, model.fc, "fc", args, args.pretrained and original_input(args.pretrained, MCL_DIR), PREFIX)

    best_acc1 = 0.0
    if run is None:   # -e
        if args.resume:
            state = load_checkpoint(args.resume)
            require_keys(state, ("state_dict", "epoch"), args.resume, "main_lincls.py")
            load_model_state(model, state["state_dict"], source=f"checkpoint '{args.resume}'")
    elif (state := run.resume_state(args.resume or None, "lincls_mcl_checkpoint_[0-9]*.pth.tar",
                                    require=("state_dict", "epoch"))) is not None:
        require_keys(state, ("state_dict", "epoch"), run.resume_path, "main_lincls.py")
        args.start_epoch = run.restore(state, model, optimizer)
        best_acc1 = float(state.get("best_acc1", 0.0))  # quirk 13 fixed: a float, no .to(gpu)
        run.info(f"=> loaded checkpoint '{run.resume_path}' (epoch {state['epoch']})")

    # with --seed an image's crop / flip depends on (seed, epoch, index) only, and process r takes samples r, r+W,
    # ... of each global batch: 1 and W processes train on the same global batches (the last partial batch is split
    # with the sampler's padding)
    train_dataset, val_dataset = linear_classification_sets(args.data, args.image_size, args.resize, args.seed,
                                                            train=run is not None)
    val_loader = DataLoader(val_dataset, batch_size=args.local_batch_size, shuffle=False, num_workers=workers)
    if run is None:
        _, acc1, acc5 = run_epoch(val_loader, model, None, args.start_epoch, args)
        if is_main_process():
            print(f" * Acc@1 {acc1:.3f} Acc@5 {acc5:.3f}\ntop-1: {acc1:.2f}", flush=True)
        return

    train_loader, set_epoch = rank_split_loader(train_dataset, args.local_batch_size, workers, args, drop_last=False)
    last = {"best": best_acc1}   # the training pass's numbers and the best top-1, for the log line

    def train_epoch(epoch):
        set_epoch(epoch)
        lr = adjust_learning_rate(optimizer, epoch, args)
        loss, top1, _ = run_epoch(train_loader, model, optimizer, epoch, args, run)
        if run.main and epoch == args.start_epoch and args.pretrained:
            check_frozen(model, reference)
        last.update(lr=lr, loss=loss, top1=top1)
        return {"loss": loss, "top1": top1, "lr": lr}

    def evaluate(epoch):
        val_loss, acc1, acc5 = run_epoch(val_loader, model, None, epoch, args)
        last["best"] = max(acc1, last["best"])
        line = (f"Epoch:{epoch}\t lr:{last['lr']:.4f}\t train loss:{last['loss']:.4f}\t "
                f"train Acc@1:{last['top1']:.3f}\t val loss:{val_loss:.4f}\t Acc@1:{acc1:.3f}\t Acc@5:{acc5:.3f}\t "
                f"best Acc@1:{last['best']:.3f}")
        run.info(line)
        if run.main:
            with open(os.path.join(run.run_dir, f"imagenet_mcl_{args.arch}_moco.txt"), "a") as f:
                f.write(line + "\n")
        return {"loss": val_loss, "linear_top1": acc1, "top5": acc5}

    def checkpoint(done, metrics, best):
        # the original's keys: DDP state dict ('module.' keys), epoch + 1, arch, best_acc1, optimizer
        return {"epoch": done, "arch": args.arch, "state_dict": module_state_dict(model), "best_acc1": best,
                "optimizer": optimizer.state_dict(), "args": vars(args)}

    def published(path, is_best):   # also where the original wrote them
        publish_to(path, original_dir(args.checkpoint))
        if is_best:
            publish_to(path and os.path.join(run.run_dir, "model_best.pth.tar"), original_dir(args.checkpoint))

    _, best_acc1 = fit(run, args.start_epoch, args.epochs, train_epoch, checkpoint, evaluate, metric="linear_top1",
                       resume_name=CHECKPOINT, best_name="model_best.pth.tar", best=best_acc1, on_saved=published)
    run.info(f"final top-1: {best_acc1:.2f}")
    run.finish("top-1", best_acc1)


def main(argv=None):
    args = build_parser().parse_args(argv)
    set_visible_gpus("--gpu-ids", args.gpu_ids)  # before any CUDA call, as the original
    launch(main_worker, args)


if __name__ == "__main__":
    run_main(main)
