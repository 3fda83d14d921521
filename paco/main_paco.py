"""Training / evaluation loop shared by PaCo's four entry points (spec §b, §g, §h, §i).

The entry files keep the originals' names and are thin: ``LT/paco_lt.py`` (ImageNet-LT, iNaturalist 2018),
``LT/paco_fp16_places.py`` (Places-LT), ``LT/paco_cifar.py`` (CIFAR-100-LT) and
``Full-ImageNet/paco_imagenet.py`` (full ImageNet) each call :func:`main` with their variant, which selects the
flag defaults of spec §b, the datasets, the LR schedule and the checkpoint habits of that script. Every
variant also accepts ``--dataset digits`` (the embedded scikit-learn digits, 32×32) for CPU runs.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.augment.on_device import DeviceViews, add_augment_arg, uint8_collate
from common.checkpoint import load_checkpoint
from common.data.seeded import SeededTransformDataset
from common.distributed import (add_distributed_args, all_reduce_mean, find_free_port, init_distributed, launch,
                                module_state_dict, per_process_batch_size, per_process_workers, unwrap_model,
                                wrap_ddp)
from common.engine import Run, fit
from common.eval import accuracy, class_counts, shot_accuracy
from common.meters import AverageMeter
from common.schedules import paco_cifar_lr, paco_lr, set_lr
from common.training import rank_split_loader
from common.utils import (BooleanFlag, HelpFormatter, MixedPrecision, UserError, add_precision_args, autocast,
                          check_finite, seed_everything)
from paco.augmentations import AUG_ALIASES, AUG_CHOICES, batched_train_views, test_transform, train_transform
from paco.losses import CrossEntropyBaseline, PaCoLoss
from paco.moco.builder import PaCo

METHOD = "paco"
VARIANTS = ("lt", "places", "cifar", "imagenet")
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                     "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2")
DEFAULT_DIST_URL = "tcp://localhost:9996"
CHECKPOINT = "moco_ckpt.pth.tar"
BEST_CHECKPOINT = "moco_ckpt.best.pth.tar"

# list files relative to --list-dir; the originals hard-code ./imagenet_inat/data/... run from PaCo/LT, where the
# release ships them: the same files are shipped at paco/LT/imagenet_inat/data (the large train lists of ImageNet-LT
# and iNaturalist 2018 excepted, users put them there or pass --list-dir)
SHIPPED_LIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "LT", "imagenet_inat", "data")
LIST_FILES = {
    "imagenet": ("ImageNet_LT/ImageNet_LT_train.txt", "ImageNet_LT/ImageNet_LT_test.txt"),
    "inat": ("iNaturalist18/iNaturalist18_train.txt", "iNaturalist18/iNaturalist18_val.txt"),
    "places": ("Places_LT/Places_LT_train.txt", "Places_LT/Places_LT_val.txt"),
}
NORMALIZATION = {"imagenet": "imagenet", "inat": "inat2018", "places": "places_lt",
                 "cifar100": "cifar100_lt_paco", "digits": "digits"}


# ------------------------------------------------------------------------------------------------------ flags

def build_parser(variant: str) -> argparse.ArgumentParser:
    """The flags of spec §b with the defaults of ``variant``; the originals' ``type=bool`` flags are real
    switches (``--mlp`` / ``--no-mlp`` …) with the same defaults (quirk §k.8)."""
    lt, places, cifar, full = (variant == v for v in VARIANTS)
    d = lambda lt_v, places_v, cifar_v, full_v: {"lt": lt_v, "places": places_v, "cifar": cifar_v,  # noqa: E731
                                                 "imagenet": full_v}[variant]
    p = argparse.ArgumentParser(description={
        "lt": "PaCo on ImageNet-LT / iNaturalist 2018 (LT/paco_lt.py)",
        "places": "PaCo on Places-LT, fp16, frozen-stage fine-tuning (LT/paco_fp16_places.py)",
        "cifar": "PaCo on CIFAR-100-LT (LT/paco_cifar.py)",
        "imagenet": "PaCo on full ImageNet (Full-ImageNet/paco_imagenet.py)"}[variant],
        formatter_class=HelpFormatter)
    datasets = d(("imagenet", "inat"), ("imagenet", "places"), ("cifar100", "inat", "imagenet"), ("imagenet", "inat"))
    p.add_argument("--dataset", default=datasets[0], choices=datasets + ("digits",),
                   help="digits = embedded 32x32 scikit-learn digits (CPU runs)" +
                   ("; imagenet and places both read the Places-LT lists, as the original did" if places else ""))
    p.add_argument("--data", metavar="DIR", default=d("./data", "./data", "./cifar", "./data"),
                   help="image root the list paths are joined to (ImageFolder root with train/ val/ for full "
                        "ImageNet; CIFAR-100 python folder for CIFAR — the original ignored --data and read ./cifar)")
    p.add_argument("--list-dir", default=os.environ.get("PACO_LISTS", SHIPPED_LIST_DIR),
                   help="folder holding ImageNet_LT/, iNaturalist18/, Places_LT/ list files (the original hard-codes "
                        "LT/imagenet_inat/data, shipped here with the original's lists; $PACO_LISTS overrides)")
    p.add_argument("--root_path", type=str, default=None,
                   help="output root; runs go to <root_path>/runs/paco/<mark> (default $CL_RUNS_DIR/paco/<mark>, "
                        "else ./runs/paco/<mark>)")
    archs = d(TORCHVISION_ARCHS + ("resnext101_32x4d", "resnet32"), TORCHVISION_ARCHS, ("resnet32",) + TORCHVISION_ARCHS,
              TORCHVISION_ARCHS + ("resnet200",))
    p.add_argument("-a", "--arch", metavar="ARCH", default=d("resnet50", "resnet50", "resnet32", "resnet50"),
                   choices=archs, help="model architecture: " + " | ".join(archs) +
                   (" (resnet32 = the CIFAR ResNet-32, not in the original paco_lt.py: for --dataset digits)"
                    if lt else ""))
    p.add_argument("-j", "--workers", default=d(32, 32, 0, 32), type=int, metavar="N",
                   help="data loading workers per node (divided by the processes per node, rounded up)")
    p.add_argument("--epochs", default=d(400, 200, 400, 200), type=int, metavar="N")
    p.add_argument("--start-epoch", default=0, type=int, metavar="N", help="overwritten on resume")
    p.add_argument("-b", "--batch-size", default=128, type=int, metavar="N",
                   help="TOTAL batch of one node; each process gets floor(b / processes per node) (quirk §k.23)")
    p.add_argument("--lr", "--learning-rate", default=d(0.02, 0.02, 0.05, 0.04), type=float, metavar="LR", dest="lr")
    p.add_argument("--schedule", default=d([120, 160], [120, 160], [160, 180], [120, 160]), nargs="*", type=int,
                   help="step milestones, only used with --no-cos" + (" (ignored by the CIFAR schedule)" if cifar else ""))
    p.add_argument("--momentum", default=0.9, type=float, metavar="M")
    p.add_argument("--wd", "--weight-decay", default=d(5e-4, 1e-4, 5e-4, 1e-4), type=float, metavar="W",
                   dest="weight_decay", help="weight decay on all parameters")
    p.add_argument("-p", "--print-freq", default=d(50, 50, 40, 50), type=int, metavar="N",
                   help="log every N iterations" + (" (and snapshot every N epochs)" if cifar else ""))
    p.add_argument("-e", "--evaluate", dest="evaluate", action="store_true", help="evaluate once and exit" +
                   (" (quirk §k.10 fixed: it crashed in the original paco_cifar.py)" if cifar else ""))
    p.add_argument("--resume", default="", type=str, metavar="PATH",
                   help="checkpoint to resume (ours or the original's); without it <run dir>/moco_ckpt.pth.tar is "
                        "resumed automatically")
    p.add_argument("--seed", default=None, type=int, help="seed python, numpy and torch (numpy too: quirk §k.24)")
    add_distributed_args(p, world_size=1, rank=0, dist_url=DEFAULT_DIST_URL, multiprocessing_distributed=True)
    p.add_argument("--moco-dim", default=128, type=int, help="projection dimension d")
    p.add_argument("--moco-k", default=d(8192, 8192, 1024, 8192), type=int,
                   help="queue size K; must be a multiple of the global batch")
    p.add_argument("--moco-m", default=0.999, type=float, help="key-encoder momentum")
    p.add_argument("--moco-t", default=d(0.2, 0.2, 0.07, 0.2), type=float, help="temperature T of the PaCo loss")
    bool_flag = dict(action=BooleanFlag)  # also the original's "--mlp True" / "--normalize False" (meaning it)
    quirk8 = (" (quirk §k.8 fixed: --{0} / --no-{0} or the original's --{0} True / False, meaning what they say; "
              "the original's type=bool flag read False as True)")
    p.add_argument("--mlp", default=True, help="2-layer projection head with BN" + quirk8.format("mlp"), **bool_flag)
    p.add_argument("--aug-plus", default=True,
                   help="MoCo-v2 recipe for the mocov2 pipelines" + quirk8.format("aug-plus"),
                   **bool_flag)
    p.add_argument("--cos", default=True, help="cosine LR after warm-up" + (" (ignored by the CIFAR schedule, quirk "
                                                                            "§k.9)" if cifar else "") +
                   quirk8.format("cos"), **bool_flag)
    p.add_argument("--normalize", default=False, help="L2-normalise the pooled feature before the classifier" +
                   quirk8.format("normalize"), **bool_flag)
    p.add_argument("--mark", default=None, type=str,
                   help="run name: the run folder <runs>/paco/<mark> and its <mark>.log (default: "
                        "<dataset>_<arch>_<aug>-<digest of the result flags>)")
    p.add_argument("--auto-resume", default=True, **bool_flag,
                   help="continue the run folder's moco_ckpt.pth.tar (--no-auto-resume: train the folder afresh)")
    p.add_argument("--reload", default=None, type=str,
                   help="load the matching tensors of a checkpoint's state_dict (released or ours; 'module.' "
                        "prefixes accepted, quirk §k.30" + ("; quirk §k.13 fixed: the original loaded nothing from "
                                                             "'module.' checkpoints" if places else "") +
                        "; nothing matching is an error)")
    if places:
        p.add_argument("--reload_torch", default=None, type=str,
                       help="torchvision ImageNet state dict loaded into both encoders' backbones")
        p.add_argument("--test-split", default="val", choices=("val", "test"),
                       help="Places-LT evaluation list: val (7,300 images, what the original used, quirk §k.14) "
                            "or test (Places_LT_test.txt, 36,500 images)")
    p.add_argument("--warmup_epochs", default=d(10, 5, 10, 10), type=int, help="linear warm-up epochs" +
                   (" (quirk §k.9 reproduced: the CIFAR warm-up uses <=, so epoch w runs at 1.1 x the base LR with "
                    "w = 10)" if cifar else ""))
    p.add_argument("--alpha", default=d(1.0, 1.0, None, 1.0), type=float, help="weight of sample-sample positives")
    p.add_argument("--beta", default=1.0, type=float, help="weight of the sample-centre positive")
    p.add_argument("--gamma", default=1.0, type=float, help="weight of the sample terms in the denominator")
    p.add_argument("--loss", default="paco", choices=("paco", "ce"),
                   help="paco: the PaCo loss; ce: the supervised baseline, plain cross-entropy on the classifier "
                        "logits (no class prior, no contrastive term) with the same network, data and schedule "
                        "(not in the original)")
    aliases = AUG_ALIASES.get(variant, {})
    p.add_argument("--aug", default=None, type=str, choices=AUG_CHOICES[variant] + tuple(aliases),
                   help="augmentation pair (§d.3); the original crashed without it, here it falls back to the first "
                        "choice" + "".join(f"; {a} = {b} (the original's name)" for a, b in aliases.items()))
    if full:
        p.add_argument("--rand_m", default=10, type=int, help="RandAugment magnitude (clipped to 10, quirk §k.17)")
        p.add_argument("--rand_n", default=2, type=int, help="RandAugment ops per image")
    elif not cifar:
        p.add_argument("--randaug_m", default=10, type=int, help="RandAugment magnitude" +
                       (" (ignored: the Places pipeline is fixed at n2 m10, quirk §k.15)" if places else ""))
        p.add_argument("--randaug_n", default=2, type=int, help="RandAugment ops per image")
    if not full:
        p.add_argument("--num_classes", default=d(1000, 365, 100, None), type=int, help="number of classes C" + (
            " (quirk §k.11 fixed: the original's evaluation hard-coded 1000, so iNat crashed)" if lt else ""))
        p.add_argument("--feat_dim", default=2048, type=int,
                       help="input dim of the classifier; must equal the backbone's pooled feature "
                            "(64 for resnet32, 512 for resnet18/34; quirk §k.28 reproduced: the default is not per "
                            "arch, the CIFAR scripts pass 64)")
    p.add_argument("--fp16", "--amp", dest="fp16", action="store_true",
                   help="mixed precision: float16 autocast with loss scaling on CUDA, bfloat16 autocast on CPU" +
                   (" (not in the original paco_cifar.py)" if cifar else ""))
    add_precision_args(p, amp=False)
    add_augment_arg(p)
    if cifar:
        p.add_argument("--imb-factor", default=None, type=float, help="imbalance factor n_min / n_max (required)")
    p.add_argument("--image-size", default=d(224, 224, 32, 224), type=int,
                   help="crop size (not in the original; smaller values are for smoke runs only)")
    return p


def parse_args(variant: str, argv=None) -> argparse.Namespace:
    args = build_parser(variant).parse_args(argv)
    args.variant = variant
    if args.dataset == "digits":
        args.image_size = 32
    if variant == "imagenet":
        args.num_classes = 1000
        args.randaug_n, args.randaug_m = args.rand_n, args.rand_m
    elif args.dataset == "digits":
        args.num_classes = 10
    if variant == "cifar":
        args.randaug_n, args.randaug_m = 2, 10
        if args.imb_factor is None:
            raise UserError("--imb-factor is required (e.g. 0.01 for CIFAR-100-LT with imbalance ratio 100)")
        if not 0 < args.imb_factor <= 1:
            raise UserError(f"--imb-factor must be in (0, 1], got {args.imb_factor}")
        if args.alpha is None:
            raise UserError("--alpha is required for paco_cifar.py (the scripts pass 0.01)")
    if args.aug is None:
        args.aug = AUG_CHOICES[variant][0]
    args.aug = AUG_ALIASES.get(variant, {}).get(args.aug, args.aug)
    if args.augment == "batched":  # refuse --aug pairs without a batched equivalent before any process starts
        batched_train_views(args.aug, variant, "imagenet", args.image_size, args.aug_plus)
    for name in ("batch_size", "epochs", "moco_k", "moco_dim"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.moco_t <= 0:
        raise UserError(f"--moco-t must be positive, got {args.moco_t}")
    if args.dist_url == DEFAULT_DIST_URL and max(args.world_size, 1) == 1:
        # a fixed local port collides between concurrent runs; the original scripts draw a random one too
        args.dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    return args


def main(variant: str, argv=None) -> None:
    args = parse_args(variant, argv)
    launch(main_worker, args)


# ------------------------------------------------------------------------------------------------------- data

def build_datasets(args):
    """(train two-view dataset, test dataset, cls_num_list). Training items are ([view1, view2], label)."""
    from common.data import ListFileDataset, TargetSubset, build_dataset, cifar_long_tailed_indices
    normalize = NORMALIZATION.get(args.dataset, "imagenet")
    size = args.image_size
    if args.augment == "batched":  # the loader only decodes; the two views are made on the device
        from common.augment.batched import ToUint8Tensor
        two_view = ToUint8Tensor()
    else:
        two_view = train_transform(args.aug, args.variant, normalize, size, args.randaug_n, args.randaug_m,
                                   args.aug_plus)
    small_images = args.dataset in ("cifar100", "digits")
    test_tf = test_transform(normalize, size, resize_crop=not small_images)
    if args.dataset in ("cifar100", "digits"):
        name = "cifar100" if args.dataset == "cifar100" else "digits"
        root = args.data if name == "cifar100" else None
        train = build_dataset(name, root, "train")
        test = build_dataset(name, root, "test", transform=test_tf, classes=train)
        if args.variant == "cifar" or args.dataset == "digits":
            # CIFAR-100-LT (spec §d.2); digits gets the same exponential profile so the run is long-tailed
            imb = args.imb_factor if args.variant == "cifar" else 0.1
            train = TargetSubset(train, cifar_long_tailed_indices(train.targets, imb, "exp", seed=0,
                                                                  num_classes=len(train.classes)))
    elif args.variant == "imagenet":
        if args.dataset != "imagenet":
            raise UserError("paco_imagenet.py implements only --dataset imagenet (ImageFolder train/ val/) and digits")
        train = build_dataset("imagefolder", args.data, "train")
        # val labelled by class name with train's indices (a val/ lacking a class keeps the other labels)
        test = build_dataset("imagefolder", args.data, "val", transform=test_tf, classes=train)
    else:
        # paco_fp16_places.py read the Places lists whatever --dataset said (its default is imagenet)
        key = "places" if args.variant == "places" else args.dataset
        train_list, test_list = LIST_FILES[key]
        if not os.path.isfile(os.path.join(args.list_dir, train_list)) and key in ("imagenet", "inat"):
            raise UserError(f"training list {os.path.join(args.list_dir, train_list)} does not exist: the release's "
                            f"{os.path.basename(train_list)} is too large to ship; put it in that folder "
                            f"(next to the shipped test list) or pass --list-dir FOLDER holding {train_list}")
        if key == "places" and getattr(args, "test_split", "val") == "test":
            test_list = "Places_LT/Places_LT_test.txt"
        train = ListFileDataset(args.data, os.path.join(args.list_dir, train_list), num_classes=args.num_classes)
        test = ListFileDataset(args.data, os.path.join(args.list_dir, test_list), transform=test_tf,
                               num_classes=args.num_classes)
    # with --seed the views of an image depend on (seed, epoch, index) only, whatever the number of processes
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"the {'training' if len(train) == 0 else 'test'} split of {args.data} holds no image"
                        + (f" (its long-tailed subset with --imb-factor {args.imb_factor} is empty: every class needs "
                           "enough images for the profile)" if args.variant == "cifar" and len(train) == 0 else ""))
    train = SeededTransformDataset(train, two_view, args.seed)
    num_labels = max(max(train.targets), max(test.targets)) + 1
    if num_labels > args.num_classes:
        raise UserError(f"the data has label {num_labels - 1} but --num_classes is {args.num_classes}; "
                        f"pass --num_classes {num_labels} or higher")
    return train, test, class_counts(list(train.targets), args.num_classes).tolist()


# ------------------------------------------------------------------------------------------------------ model

def build_model(args) -> PaCo:
    from common.backbones import build_backbone
    arch = "resnet32_option_a" if args.arch == "resnet32" else args.arch

    def base_encoder(num_classes):
        return build_backbone(arch, num_classes=num_classes)

    model = PaCo(base_encoder, dim=args.moco_dim, K=args.moco_k, m=args.moco_m, T=args.moco_t, mlp=args.mlp,
                 feat_dim=getattr(args, "feat_dim", None), num_classes=args.num_classes, normalize=args.normalize,
                 momentum_classifier=args.variant != "imagenet")
    feature_dim = getattr(model.encoder_q, "feature_dim", None)
    if args.variant == "imagenet":
        args.feat_dim = model.linear.in_features
    if feature_dim is not None and feature_dim != model.linear.in_features:
        raise UserError(f"--feat_dim {model.linear.in_features} does not match {args.arch}'s pooled feature "
                        f"({feature_dim}); pass --feat_dim {feature_dim} (quirk §k.28: the original crashes here)")
    return model


def load_matching(model: nn.Module, path: str, printer=print, key_map=None, flag: str = "--reload") -> int:
    """``--reload``: copy every tensor of ``path``'s state_dict whose key and shape match the model.
    ``module.`` prefixes are accepted on either side (fixes quirk §k.13). A file of which fewer than half of the
    model's tensors can be taken is refused (one error line naming what was found), so an eval script never
    evaluates a (mostly) random network; what was not loaded is listed. Returns the number of tensors loaded."""
    state = load_checkpoint(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not any(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{flag} '{path}' holds no state dict of tensors; give a PaCo checkpoint (moco_ckpt*.pth.tar, "
                        "a released model) or a torchvision state dict")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    own = unwrap_model(model).state_dict()
    matched = {}
    for key, value in own.items():
        source = key_map(key) if key_map else key
        if source in state and torch.is_tensor(state[source]) and state[source].shape == value.shape:
            matched[key] = state[source]
    skipped = [k for k in own if k not in matched]
    if len(matched) * 2 < len(own):
        found = ", ".join(list(state)[:4])
        how_many = "no tensor matches" if not matched else f"only {len(matched)} of this model's {len(own)} tensors match"
        raise UserError(f"{flag} '{path}': {how_many} this model (file keys "
                        f"e.g. {found}; model keys e.g. {', '.join(list(own)[:2])}); is it a PaCo checkpoint of the "
                        "same -a/--arch, --num_classes and --feat_dim?")
    unwrap_model(model).load_state_dict(matched, strict=False)
    printer(f"=> reloaded {len(matched)}/{len(own)} tensors from '{path}'"
            + (f"; kept this model's initial values for {len(skipped)} ({', '.join(skipped[:4])}"
               f"{', ...' if len(skipped) > 4 else ''})" if skipped else ""))
    return len(matched)


def freeze_for_places(model: PaCo) -> None:
    """Places fine-tuning (spec §g): every conv weight frozen except those of the last Bottleneck of
    encoder_q.layer4; BN affine parameters, the MLP head and the classifier stay trainable (quirk §k.15)."""
    layer4 = getattr(model.encoder_q, "layer4", None)
    last = f"encoder_q.layer4.{len(layer4) - 1}." if layer4 is not None else None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and not (last and name.startswith(last)):
            module.weight.requires_grad = False


# ------------------------------------------------------------------------------------------------------ loops

def adjust_learning_rate(optimizer, epoch: int, args) -> float:
    if args.variant == "cifar":
        lr = paco_cifar_lr(args.lr, epoch, args.warmup_epochs)
    else:
        lr = paco_lr(args.lr, epoch, args.epochs, args.warmup_epochs, cos=args.cos, milestones=args.schedule)
    return set_lr(optimizer, lr)


def train_one_epoch(loader, model, criterion, optimizer, precision, epoch, args, run, views_of: DeviceViews):
    model.train()
    losses, top1 = AverageMeter("Loss", ":.4e"), AverageMeter("Acc@1", ":6.2f")
    batch_time, end = AverageMeter("Time", ":6.3f"), time.time()
    num_batches = len(loader)
    for i, (images, target) in enumerate(run.progress(loader, desc=f"epoch {epoch}")):
        im_q, im_k = views_of(images)
        target = target.to(args.device, non_blocking=True)
        with autocast(args.device, enabled=args.fp16):
            features, labels, sup_logits = model(im_q, im_k, target)
            loss = criterion(features.float(), labels, sup_logits.float())
        # the meters read it anyway, so the finiteness check costs no extra sync; the mean over the processes is
        # the loss of the step (each process's loss is over its own anchors, DDP averages their gradients)
        loss_value = all_reduce_mean(loss.detach()).item()
        check_finite(loss_value, f"epoch {epoch} iteration {i}",
                     hint="lower --lr, or check the data / --moco-t")
        optimizer.zero_grad(set_to_none=True)
        precision.backward_step(loss, optimizer)
        run.step += 1
        acc1 = accuracy(sup_logits.detach(), target, topk=(1,))[0]
        losses.update(loss_value, im_q.size(0))
        top1.update(float(acc1), im_q.size(0))
        batch_time.update(time.time() - end)
        end = time.time()
        if i % args.print_freq == 0:
            run.scalar("train/loss", loss_value)
            run.scalar("train/top1", float(acc1))
            run.info(f"Epoch: [{epoch}][{i}/{num_batches}]\t{batch_time}\t{losses}\t{top1}")
    return losses.avg, top1.avg



@torch.no_grad()
def validate(loader, model, cls_num_list, args):
    """Top-1 / top-5 of linear(pooled feature of encoder_q) without prior, and many / medium / few-shot
    accuracy (unweighted means of per-class accuracies, fractions; spec §h). Any number of classes (§k.11)."""
    model.eval()
    preds, labels, loss_sum = [], [], 0.0
    top5_correct, count = 0, 0
    k = min(5, args.num_classes)
    for images, target in loader:
        images, target = images.to(args.device, non_blocking=True), target.to(args.device, non_blocking=True)
        with autocast(args.device, enabled=args.fp16):
            logits = model(images).float()
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        top5_correct += (logits.topk(k, dim=1).indices == target[:, None]).any(dim=1).sum().item()
        count += target.numel()
        preds.append(logits.argmax(dim=1).cpu())
        labels.append(target.cpu())
    preds, labels = torch.cat(preds), torch.cat(labels)
    shots = shot_accuracy(preds, labels, cls_num_list)
    return {"top1": float(shots["top1"]), "top5": 100.0 * top5_correct / max(count, 1),
            "loss": loss_sum / max(count, 1), "many": shots["many"], "medium": shots["medium"], "few": shots["few"]}


def build_optimizer(model, args) -> torch.optim.SGD:
    """SGD over ALL parameters, as the original: frozen ones (the key encoder, Places' frozen convolutions) get no
    gradient and are skipped by the step, but they hold their places in the optimizer's state dict, so the
    original's checkpoints and ours have the same optimizer layout."""
    return torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def restore(run, state: dict, model, optimizer, scaler, args) -> int:
    """Continue from ``state`` (ours or the original's, ``module.`` keys or not): the epoch to start at. An
    optimizer state of another layout (e.g. this code's files from before it followed the original, which held the
    trainable parameters only) is not loaded: the weights, epoch and best top-1 are, and the momentum restarts."""
    saved, params = state.get("optimizer"), len(list(unwrap_model(model).parameters()))
    if saved is not None and [len(g["params"]) for g in saved.get("param_groups", [])] != [params]:
        run.info(f"=> the checkpoint's optimizer does not hold this model's {params} parameters in one group: SGD "
                 "momentum re-initialised (weights, epoch and best top-1 restored)")
        state = dict(state, optimizer=None)
    if args.fp16 and scaler.is_enabled() and not state.get("scaler"):
        run.info("=> the checkpoint has no loss-scaler state (the original saved none): the fp16 loss scale starts "
                 "afresh")
    if "rng_state" not in state:
        run.info("=> the checkpoint has no RNG state (an original's file): random draws continue from this seed")
    return run.restore(state, model, optimizer, scaler)


def _report(run, metrics) -> None:
    run.info(f" * Acc@1 {metrics['top1']:.3f} Acc@5 {metrics['top5']:.3f}")
    run.info(f"Many_acc: {metrics['many']:.5f}, Medium_acc: {metrics['medium']:.5f} Low_acc: {metrics['few']:.5f}")


def main_worker(local_rank, args):
    device = init_distributed(args, local_rank)
    if args.seed is not None:
        seed_everything(args.seed + args.rank, deterministic=True)
    # an evaluation writes nothing and never completes the run; it reads the folder's checkpoint like the original
    with Run.open(METHOD, args, readable=f"{args.dataset}_{args.arch}_{args.aug}", name=args.mark,
                  root=args.root_path, subdir="checkpoint" if args.variant == "imagenet" else "",
                  overwrite=args.evaluate or not args.auto_resume, ignore=("variant",),
                  log_name=f"{args.mark}.log" if args.mark else "log.txt",  # rank 0 only (§k.18)
                  name_flag="--mark") as run:
        _main(run, device, args)


def _main(run, device, args):
    train_set, test_set, cls_num_list = build_datasets(args)
    model = build_model(args)
    if args.variant == "places":
        if getattr(args, "reload_torch", None):
            load_matching(model, args.reload_torch, run.info, key_map=lambda k: k[len("encoder_q."):],
                          flag="--reload_torch")
        freeze_for_places(model)
    precision = MixedPrecision(device, args.fp16, args.channels_last)
    model = wrap_ddp(precision.prepare(model), args, find_unused_parameters=True)
    if args.loss == "ce":
        criterion = CrossEntropyBaseline()
    else:
        criterion = PaCoLoss(alpha=args.alpha, beta=args.beta, gamma=args.gamma, temperature=args.moco_t,
                             K=args.moco_k, num_classes=args.num_classes,
                             cls_num_list=None if args.variant == "imagenet" else cls_num_list).to(device)
    optimizer = build_optimizer(model, args)
    scaler = precision.scaler

    if args.evaluate:   # the original evaluates its run's checkpoint when there is one (then applies --reload)
        path = args.resume or os.path.join(run.run_dir, CHECKPOINT)
        state = load_checkpoint(path) if args.resume or os.path.exists(path) else None
    else:
        state = run.resume_state(args.resume, CHECKPOINT, require=("epoch", "state_dict"))
        if state is not None and not args.resume:
            run.info(f"=> auto-resuming from '{os.path.join(run.run_dir, CHECKPOINT)}'")
    start_epoch = restore(run, state, model, optimizer, scaler, args) if state is not None else args.start_epoch
    best_acc = float(state.get("best_acc", state.get("acc", 0.0)) or 0.0) if state else 0.0  # §k.19
    if args.reload:
        load_matching(model, args.reload, run.info)

    batch = per_process_batch_size(args.batch_size, args)
    global_batch = batch * args.world_size
    if args.moco_k % global_batch != 0:
        raise UserError(f"--moco-k {args.moco_k} is not a multiple of the global batch {global_batch} "
                        f"(= floor(b / processes per node) x processes); the queue is written one global batch "
                        f"at a time. Choose --moco-k as a multiple of {global_batch}")
    workers = per_process_workers(args.workers, args)
    # the same global batches for any number of processes (rank r takes every W-th sample of each); the loader
    # shuffles from its own generator, re-seeded per epoch so a resumed run sees the same order
    train_loader, set_epoch = rank_split_loader(train_set, batch, workers, args, shuffle_seed_stride=1000,
                                                collate_fn=uint8_collate if args.augment == "batched" else None,
                                                batch_flag="-b/--batch-size")
    views_of = DeviceViews(batched_train_views(args.aug, args.variant, NORMALIZATION.get(args.dataset, "imagenet"),
                                               args.image_size, args.aug_plus) if args.augment == "batched" else None,
                           device, args.seed, args.rank, args.channels_last)
    # its own generator: evaluating must not advance the global one, which draws the shuffle-BN permutations (a
    # resumed run skips the initial evaluation and must draw the same ones)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=batch, shuffle=False, num_workers=workers,
                                              pin_memory=device.type == "cuda", generator=torch.Generator())

    if args.evaluate:
        metrics = validate(test_loader, model, cls_num_list, args)
        _report(run, metrics)
        run.info(f"top-1: {metrics['top1']:.2f}")
        return
    if start_epoch == 0:
        metrics = validate(test_loader, model, cls_num_list, args)
        _report(run, metrics)
        run.scalars({k: metrics[k] for k in ("top1", "top5", "many", "medium", "few")}, prefix="eval/")
        run.info(f"initial top-1: {metrics['top1']:.2f}")

    def train_epoch(epoch):
        set_epoch(epoch)
        views_of.set_epoch(epoch)
        lr = adjust_learning_rate(optimizer, epoch, args)
        loss, train_acc = train_one_epoch(train_loader, model, criterion, optimizer, precision, epoch, args, run,
                                          views_of)
        run.info(f"epoch {epoch}: lr {lr:.5f} loss {loss:.4f} train acc@1 {train_acc:.2f}")
        return {"lr": lr}   # loss and top-1 are logged per --print-freq steps

    def evaluate(epoch):
        metrics = validate(test_loader, model, cls_num_list, args)
        _report(run, metrics)
        return metrics

    def checkpoint(epoch_done, metrics, best):
        # the original's keys (spec §g) — its acc is this epoch's top-1 (the best one in Full-ImageNet) — then ours
        acc = best if args.variant == "imagenet" else metrics["top1"]
        return {"epoch": epoch_done, "arch": args.arch, "acc": acc, "state_dict": module_state_dict(model),
                "optimizer": optimizer.state_dict(), "best_acc": best, "scaler": scaler.state_dict(),
                "args": vars(args).copy()}

    metrics, best_acc = fit(run, start_epoch, args.epochs, train_epoch, checkpoint, evaluate, metric="top1",
                            resume_name=CHECKPOINT, best_name=BEST_CHECKPOINT,
                            snapshot_every=args.print_freq if args.variant == "cifar" else 0,
                            snapshot_name="moco_ckpt_{epoch:04d}.pth.tar", best=best_acc)
    if metrics is None:
        metrics = validate(test_loader, model, cls_num_list, args)
    run.info(f"final top-1: {metrics['top1']:.2f}")
    run.finish("top1", metrics["top1"])
