"""Helpers under common.engine: loading a state dict into a (DDP) model with one clear error, progress bars, the
linear-probe pass the linear evaluations share, the flags of MoCo's ``main_moco.py`` / ``main_lincls.py``."""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.nn.functional as F

from common.distributed import is_main_process, unwrap_model
from common.utils import UserError


def _strip_prefix(state_dict: dict, prefix: str = "module.") -> dict:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def load_model_state(model: torch.nn.Module, state_dict: dict, source: str = "checkpoint",
                     strict: bool = True) -> None:
    """Load ``state_dict`` into ``model`` (DDP-wrapped or not, ``module.`` prefixes tolerated) and turn
    missing / unexpected keys and shape mismatches into one ``UserError`` naming a few of them."""
    target = unwrap_model(model)
    state_dict = _strip_prefix(dict(state_dict))
    try:
        # the model's own load hooks run here (e.g. renaming an original repository's key layout)
        target.load_state_dict(state_dict, strict=strict)
        return
    except RuntimeError:
        pass
    own = target.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state_dict.items()
              if k in own and torch.is_tensor(v) and tuple(v.shape) != tuple(own[k].shape)]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:4])})")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:4])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
    raise UserError(f"{source} does not match this model: {'; '.join(problems) or 'incompatible tensors'}. Was it "
                    "written by another method or architecture (-a/--arch, --num-classes, --dim)?")


def progress(iterable: Iterable, desc: str = "", enabled: bool = True, total: int | None = None, **kwargs):
    """A tqdm bar on the main process when ``enabled`` (the plain iterable otherwise)."""
    if not (enabled and is_main_process()):
        return iterable
    from tqdm import tqdm
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, total=total, **kwargs)


class TrainBatches:
    """``(i, batch)`` of a loader behind a progress bar, stopping after ``max_iters`` batches (0: all; like the loops
    it replaces, it still draws the batch after the last); ``postfix`` / ``describe`` / ``close`` act on the bar (a
    no-op without one)."""

    def __init__(self, bar, max_iters: int):
        self.bar, self.max_iters = bar, max_iters

    def __iter__(self):
        for i, batch in enumerate(self.bar):
            if self.max_iters and i >= self.max_iters:
                break
            yield i, batch

    def postfix(self, **values) -> None:
        if hasattr(self.bar, "set_postfix"):
            self.bar.set_postfix(**values)

    def describe(self, text: str) -> None:
        if hasattr(self.bar, "set_description"):
            self.bar.set_description(text)

    def close(self) -> None:
        if hasattr(self.bar, "close"):
            self.bar.close()


def train_batches(run, loader, model, args, desc: str = "", max_iters: int | None = None,
                  enabled: bool | None = None):
    """Put ``model`` in training mode (its BatchNorm frozen with ``--freeze-bn``) and return ``(iterations, batches)``:
    ``batches`` (:class:`TrainBatches`) yields ``(i, batch)`` of ``loader`` behind the run's progress bar
    (``--no-progress``; ``enabled`` where an entry point spells it otherwise) and stops after ``--max-iters`` batches
    (``max_iters`` where it spells it otherwise; 0: all)."""
    from common.backbones import freeze_batchnorm
    model.train()
    if getattr(args, "freeze_bn", False):
        freeze_batchnorm(model)
    max_iters = args.max_iters if max_iters is None else max_iters
    total = min(len(loader), max_iters) if max_iters else len(loader)
    bar = run.progress(loader, desc, total=total, enabled=args.progress if enabled is None else enabled)
    return total, TrainBatches(bar, max_iters)


def meter_epoch(run, loader, model, args, epoch: int, step, optimizer, backward_step, meters, max_iters=None,
                enabled=None, every_step: bool = False, data_time: bool = True, show: bool = True,
                where: str = "epoch {epoch} iteration {i}", hint: str = "") -> dict:
    """One training epoch of the MoCo family with MoCo's ``ProgressMeter`` line. ``step(i, batch)`` runs the forward
    pass and returns ``(loss, n, report)``; the loss is back-propagated (``optimizer.zero_grad``, then
    ``backward_step(loss, optimizer)``, one ``run.step``). On the print steps (every ``-p`` iterations and the last;
    with ``every_step`` every step) ``report()`` gives the values of ``meters`` (``[(name, fmt)]``, the loss first)
    as one tensor, which is averaged over the processes (the global batch's values, not rank 0's share), checked
    finite (``where`` / ``hint`` name the step) and added with weight ``n``; the loss goes to ``train/loss`` and the
    meter line to the log (``show``). ``max_iters`` / ``enabled`` as in :func:`train_batches`. Returns the
    meters by name (``Time``, ``Data`` with ``data_time``, then ``meters``)."""
    import time
    from common.distributed import all_reduce_mean
    from common.meters import AverageMeter, ProgressMeter
    from common.utils import check_finite
    timing = [AverageMeter("Time", ":6.3f")] + ([AverageMeter("Data", ":6.3f")] if data_time else [])
    values_of = [AverageMeter(name, fmt) for name, fmt in meters]
    total, batches = train_batches(run, loader, model, args, f"epoch {epoch}", max_iters, enabled)
    line = ProgressMeter(total, timing + values_of, prefix=f"Epoch: [{epoch}]")
    end = time.time()
    for i, batch in batches:
        if data_time:
            timing[1].update(time.time() - end)
        loss, n, report = step(i, batch)
        optimizer.zero_grad(set_to_none=True)
        backward_step(loss, optimizer)
        run.step += 1
        if every_step or i % args.print_freq == 0 or i + 1 == total:
            values = all_reduce_mean(report().detach().float()).tolist()
            check_finite(values[0], where.format(epoch=epoch, i=i), hint)
            for meter, value in zip(values_of, values):
                meter.update(value, n)
        timing[0].update(time.time() - end)
        end = time.time()
        if i % args.print_freq == 0 or i + 1 == total:
            run.scalar("train/loss", values[0])
            if show:
                run.info(line.format(i))
    return {m.name: m for m in timing + values_of}


def loss_epoch(run, total: int, batches, step, optimizer, backward_step, print_freq: int, on_print, device):
    """The plain pre-training epoch (a loss, no meters): for each batch ``step(i, batch) -> (loss, n)``, one optimizer
    step (``optimizer.zero_grad``, ``backward_step(loss, optimizer)``, one ``run.step``) and the loss added with
    weight ``n``; ``on_print(i, loss, loss_sum, seen)`` every ``print_freq`` steps and after the last of the
    ``total`` (where the loop already reads the loss: NaN checks, the progress bar). ``batches`` as from
    :func:`train_batches`. Returns this process's ``(loss_sum, seen)``."""
    loss_sum, seen = torch.zeros((), device=device), 0
    for i, batch in batches:
        loss, n = step(i, batch)
        optimizer.zero_grad(set_to_none=True)
        backward_step(loss, optimizer)
        run.step += 1
        loss_sum += loss.detach() * n
        seen += n
        if (i + 1) % print_freq == 0 or i + 1 == total:
            on_print(i, loss, loss_sum, seen)
    batches.close()
    return loss_sum, seen


def classifier_pass(model, loader, device, optimizer=None, max_iters: int = 0, bar=None, on_batch=None,
                    run=None) -> torch.Tensor:
    """One pass of a classifier (a linear probe over a frozen encoder) over ``loader``, the model in the mode the
    caller set: with ``optimizer`` a training pass (cross-entropy, one step per batch, counted in ``run.step``),
    else an evaluation under no-grad. ``max_iters`` stops after that many batches (0: all); ``bar`` is what to
    iterate instead of ``loader`` (a progress bar over it). ``on_batch(i, loss, acc1, acc5, n, sums)`` follows each
    batch (logging, NaN checks). Returns ``(4,)`` on ``device``: the sums over the samples seen of the loss, top-1
    and top-5 (in %), and their count (a caller combining processes all-reduces it)."""
    from common.eval.metrics import accuracy
    train = optimizer is not None
    sums = torch.zeros(4, device=device)
    with torch.set_grad_enabled(train):
        for i, (images, targets) in enumerate(loader if bar is None else bar):
            if max_iters and i >= max_iters:
                break
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            logits = model(images)
            loss = F.cross_entropy(logits, targets)
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if run is not None:
                    run.step += 1
            n = images.shape[0]
            acc1, acc5 = accuracy(logits.detach(), targets, topk=(1, 5))
            sums[:3] += torch.stack([loss.detach(), acc1, acc5]) * n
            sums[3] += n
            if on_batch is not None:
                on_batch(i, loss, acc1, acc5, n, sums)
    return sums


def rank_split_loader(dataset, batch_size: int, workers: int, args, drop_last: bool = True,
                      shuffle_seed_stride: int | None = None, collate_fn=None, batch_flag: str = "--batch-size"):
    """The training loader of a run whose global batches do not depend on the number of processes: a
    :func:`common.distributed.rank_split_sampler` (rank r takes every W-th sample of each global batch, the
    permutation a function of (``--seed``, epoch)). With ``shuffle_seed_stride`` the loader also draws its worker
    seeds from its own generator, re-seeded with ``seed * stride + epoch`` every epoch (so a resumed run sees what it
    would have seen); without it they come from the global torch RNG, as a plain loader's do. Returns ``(loader,
    set_epoch)``; call ``set_epoch(epoch)`` before each epoch (sampler, generator and the dataset's own
    ``set_epoch``, e.g. :class:`common.data.seeded.SeededTransformDataset`'s). With ``drop_last``, a data set smaller
    than one global batch is a ``UserError`` naming ``batch_flag``."""
    from torch.utils.data import DataLoader
    from common.distributed import rank_split_sampler, set_sampler_epoch
    seed = args.seed or 0
    sampler = rank_split_sampler(dataset, shuffle=True, drop_last=drop_last, seed=seed)
    generator = torch.Generator() if shuffle_seed_stride is not None else None
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=args.device.type == "cuda",
                        sampler=sampler, drop_last=drop_last, generator=generator, collate_fn=collate_fn)
    if len(loader) == 0:
        world = getattr(sampler, "num_replicas", 1)
        raise UserError(f"the training set has {len(dataset)} images, fewer than one global batch of "
                        f"{batch_size * world} ({batch_size} per process x {world}); lower {batch_flag}")

    def set_epoch(epoch: int) -> None:
        if generator is not None:
            generator.manual_seed(seed * shuffle_seed_stride + epoch)
        set_sampler_epoch(sampler, epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    return loader, set_epoch


def train_head_only(model: torch.nn.Module, head: torch.nn.Linear, head_name: str) -> None:
    """MoCo's linear classification set-up: every parameter but those of the classifier ``head`` (the module
    ``head_name`` of ``model``) frozen; the head initialised N(0, 0.01²) with a zero bias."""
    for name, param in model.named_parameters():
        if not name.startswith(head_name + "."):
            param.requires_grad = False
    torch.nn.init.normal_(head.weight, mean=0.0, std=0.01)
    torch.nn.init.zeros_(head.bias)


def frozen_tensors(model: torch.nn.Module, head_name: str) -> dict:
    """A copy of every tensor of ``model``'s state but the head's, for :func:`check_frozen`."""
    return {k: v.detach().clone() for k, v in unwrap_model(model).state_dict().items()
            if not k.startswith(head_name + ".")}


def check_frozen(model: torch.nn.Module, reference: dict) -> None:
    """MoCo's sanity check of a linear classification: no backbone weight or BatchNorm statistic has changed."""
    state = unwrap_model(model).state_dict()
    for k, v in reference.items():
        if not torch.equal(state[k].cpu(), v.cpu()):
            raise UserError(f"{k} changed during linear classification; the backbone must stay frozen")


def linear_head_training(model: torch.nn.Module, head: torch.nn.Linear, head_name: str, args, pretrained: str = "",
                         prefix: str | tuple = "module.encoder_q."):
    """MoCo's linear classification start, in the originals' order: only ``head`` trainable (:func:`train_head_only`),
    the backbone of the pre-training checkpoint ``pretrained`` (if given) loaded, the frozen tensors copied for
    :func:`check_frozen`, the model wrapped for DDP and SGD over the head's weight and bias (``args.lr``,
    ``--momentum``, ``--wd``). Returns ``(wrapped model, optimizer, frozen tensors)``."""
    from common.distributed import wrap_ddp
    train_head_only(model, head, head_name)
    if pretrained:
        load_pretrained_encoder(model, pretrained, prefix, head_name)
    reference = frozen_tensors(model, head_name)
    model = wrap_ddp(model, args)
    parameters = [p for p in model.parameters() if p.requires_grad]
    assert len(parameters) == 2  # the head's weight and bias
    optimizer = torch.optim.SGD(parameters, args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return model, optimizer, reference


def classifier_epoch(model, loader, args, optimizer=None, run=None, bar=None, on_batch=None, max_iters: int = 0):
    """One :func:`classifier_pass` of a linear classification (the frozen backbone in eval mode while the head trains,
    as MoCo's protocol) whose loader each process walks its share of: the sums are added over the processes.
    Returns ``(loss, top-1, top-5)`` means."""
    model.eval()
    sums = classifier_pass(model, loader, args.device, optimizer, max_iters, bar, on_batch, run)
    if getattr(args, "distributed", False):
        torch.distributed.all_reduce(sums)
    return tuple((sums[:3] / sums[3].clamp_min(1)).tolist())


def load_pretrained_encoder(model: torch.nn.Module, path: str, prefix: str | tuple, head_name: str,
                            flag: str = "--pretrained") -> None:
    """MoCo's linear classification start: the tensors ``<prefix>*`` of a pre-training checkpoint (its
    ``state_dict``, or the file itself; ``prefix`` with or without its ``module.``; a tuple: the first one present),
    minus any classifier or projection head, into ``model``, whose every tensor but its classifier ``head_name``
    must be among them."""
    from common.checkpoint import load_checkpoint
    state = load_checkpoint(path)
    state_dict = state.get("state_dict", state)
    if not isinstance(state_dict, dict):
        raise UserError(f"{flag} '{path}' has no state_dict; pass a pre-training checkpoint")
    # checkpoints saved without DDP (one process) have no 'module.' prefix
    prefixes = (prefix,) if isinstance(prefix, str) else tuple(prefix)
    candidates = [c for p in prefixes for c in ((p, p[len("module."):]) if p.startswith("module.") else (p,))]
    chosen = next((p for p in candidates if any(k.startswith(p) for k in state_dict)), None)
    if chosen is None:
        raise UserError(f"{flag} '{path}' holds no '{prefixes[0]}*' weights; is it a pre-training checkpoint of this "
                        f"script family? (found keys like {list(state_dict)[:3]})")
    heads = (head_name + ".", "fc.", "head.", "heads.")
    backbone = {k[len(chosen):]: v for k, v in state_dict.items()
                if k.startswith(chosen) and not k[len(chosen):].startswith(heads)}
    try:
        missing, unexpected = model.load_state_dict(backbone, strict=False)
    except RuntimeError as e:   # shapes of another architecture
        raise UserError(f"{flag} '{path}' does not fit this -a/--arch: {' '.join(str(e).split())[:300]}") from None
    missing = [k for k in missing if not k.startswith(head_name + ".")]
    if missing or unexpected:
        raise UserError(f"{flag} '{path}' does not fit -a/--arch: missing {missing[:4]}, unexpected {unexpected[:4]}")


def linear_classification_sets(data: str, image_size: int, resize: int, seed: int | None, train: bool = True):
    """MoCo's linear classification data, ``(train, val)`` of the ImageFolder root ``data``: ``train/`` with the
    random crop / flip of each image a function of (``seed``, epoch, index) only (so any number of processes, and a
    resumed run, see the same global batches; ``None`` without ``train``), ``val/`` resized to ``resize`` and
    centre-cropped, labelled by class name with train's indices (a val/ lacking a class keeps the other labels)."""
    import os
    from common.augment import linear_train_transform, linear_val_transform
    from common.data import ImageFolder, folder_classes
    from common.data.seeded import SeededTransformDataset
    root = os.path.expanduser(data)
    train_dir = os.path.join(root, "train")
    # train first (its problems are reported first); without it, val is labelled by the class folders' names (the
    # training images are not listed)
    train_set = None
    if train:
        train_set = SeededTransformDataset(ImageFolder(train_dir), linear_train_transform(image_size), seed)
    val_set = ImageFolder(os.path.join(root, "val"), linear_val_transform(image_size, resize),
                          classes=train_set if train else folder_classes(train_dir))
    return train_set, val_set


# the help of MoCo's main_moco.py / main_lincls.py flags; an entry point passes its own where the meaning differs
MOCO_HELP = {
    "arch": "model architecture (a common.backbones name)", "workers": "number of data loading workers",
    "epochs": "number of total epochs to run", "start_epoch": "manual epoch number (useful on restarts)",
    "batch_size": "total mini-batch size of all processes of this node", "lr": "initial learning rate",
    "schedule": "learning rate schedule (when to drop lr by 10x)",
    "momentum": "momentum of SGD solver", "weight_decay": "weight decay", "print_freq": "print frequency",
    "resume": "path to latest checkpoint (default: the run folder's checkpoint)",
    "seed": "seed for initializing training",
    "evaluate": "evaluate model on validation set", "moco_dim": "feature dimension",
    "moco_k": "queue size; number of negative keys", "moco_m": "moco momentum of updating key encoder",
    "moco_t": "softmax temperature", "mlp": "use mlp head", "aug_plus": "use moco v2 data augmentation",
    "cos": "use cosine lr schedule",
}


def add_moco_args(parser, data: str | None = None, epochs: int = 200, batch_size: int | None = 256,
                  lr: float = 0.03, schedule: list | None = (120, 160), weight_decay: float = 1e-4,
                  print_freq: int = 10, workers: int = 32, evaluate: bool = False, data_help: str | None = None,
                  helps: dict | None = None) -> None:
    """The optimisation flags of MoCo's ``main_moco.py`` / ``main_lincls.py``, which several entry points keep:
    the dataset root (``data`` None: the positional ``DIR``, default ``$DATA``; else ``--data`` with this default),
    ``-a``, ``-j``, ``--epochs``, ``--start-epoch``, ``-b`` (``batch_size`` None: not added), ``--lr``,
    ``--schedule`` (None: not added), ``--momentum``, ``--wd``, ``-p``, ``--resume``, ``--seed`` and with
    ``evaluate`` ``-e``. ``data_help`` / ``helps``: this entry point's help of the dataset root / of a flag (by dest)
    where it says more than :data:`MOCO_HELP`."""
    h = {**MOCO_HELP, **(helps or {})}
    if data is None:
        parser.add_argument("data", metavar="DIR", nargs="?", default=os.environ.get("DATA"),
                            help=data_help or "path to the dataset; default $DATA")
    else:
        parser.add_argument("--data", metavar="DIR", default=data, help=data_help or "dataset root")
    parser.add_argument("-a", "--arch", metavar="ARCH", default="resnet50", help=h["arch"])
    parser.add_argument("-j", "--workers", default=workers, type=int, metavar="N", help=h["workers"])
    parser.add_argument("--epochs", default=epochs, type=int, metavar="N", help=h["epochs"])
    parser.add_argument("--start-epoch", default=0, type=int, metavar="N", help=h["start_epoch"])
    if batch_size is not None:
        parser.add_argument("-b", "--batch-size", default=batch_size, type=int, metavar="N", help=h["batch_size"])
    parser.add_argument("--lr", "--learning-rate", default=lr, type=float, metavar="LR", dest="lr", help=h["lr"])
    if schedule is not None:
        parser.add_argument("--schedule", default=list(schedule), nargs="*", type=int, help=h["schedule"])
    parser.add_argument("--momentum", default=0.9, type=float, metavar="M", help=h["momentum"])
    parser.add_argument("--wd", "--weight-decay", default=weight_decay, type=float, metavar="W", dest="weight_decay",
                        help=h["weight_decay"])
    parser.add_argument("-p", "--print-freq", default=print_freq, type=int, metavar="N", help=h["print_freq"])
    parser.add_argument("--resume", default="", type=str, metavar="PATH", help=h["resume"])
    if evaluate:
        parser.add_argument("-e", "--evaluate", dest="evaluate", action="store_true", help=h["evaluate"])
    parser.add_argument("--seed", default=None, type=int, help=h["seed"])


def add_moco_model_args(parser, k: int = 65536, t: float | None = 0.07, switches: bool = True,
                        helps: dict | None = None) -> None:
    """MoCo's model flags: ``--moco-dim`` 128, ``--moco-k``, ``--moco-m`` 0.999, ``--moco-t`` (``t`` None: not
    added) and with ``switches`` the ``--mlp`` / ``--aug-plus`` / ``--cos`` switches; ``helps`` as in
    :func:`add_moco_args`."""
    h = {**MOCO_HELP, **(helps or {})}
    parser.add_argument("--moco-dim", default=128, type=int, help=h["moco_dim"])
    parser.add_argument("--moco-k", default=k, type=int, help=h["moco_k"])
    parser.add_argument("--moco-m", default=0.999, type=float, help=h["moco_m"])
    if t is not None:
        parser.add_argument("--moco-t", default=t, type=float, help=h["moco_t"])
    if switches:
        for flag in ("--mlp", "--aug-plus", "--cos"):
            parser.add_argument(flag, action="store_true", help=h[flag[2:].replace("-", "_")])
