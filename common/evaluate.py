"""Evaluate the backbone of any checkpoint of the five methods (this project's or the originals' formats).

    python -m common.evaluate CHECKPOINT [--dataset digits] [--data PATH] [--arch NAME] [--knn] [--linear]
                              [--shots] [--export OUT.pth]

The backbone is found by :func:`common.checkpoint_formats.extract_backbone_state` (wrapper prefixes stripped,
heads / projectors / queues / momentum encoders dropped, architecture inferred from the weights unless ``--arch``),
built with ``common.backbones.build_backbone`` and frozen in eval mode. Features of the un-augmented training and
evaluation splits (ToTensor + the dataset's normalisation; CACR's SmallAlexNet: its fc7 output, the feature CACR's
linear evaluation uses) feed the protocols of :mod:`common.eval`:

* ``--knn``: weighted k-NN on L2-normalised features (k = 200, T = 0.1; the InstDisc / MoCo-demo / ASCL monitor);
* ``--linear``: a linear classifier on the frozen features (SGD momentum 0.9, cosine schedule, features
  standardised with the training mean / std by default, see ``--linear-*``);
* ``--shots``: many / medium / few-shot accuracy of each protocol run (PaCo's split by training images per class).

No protocol flag: ``--knn --linear``. ``--export OUT.pth`` atomically writes the plain backbone state dict (and is
the only action when no protocol flag is given alongside it). The evaluation split is labelled by class name with
the training split's indices (``classes=`` of :func:`common.data.build_dataset`).
"""
from __future__ import annotations

import argparse
import json

import torch

from common.utils import UserError, run_main

DATASETS = ("digits", "cifar10", "cifar100", "stl10", "tinyimagenet", "imagefolder")
# dataset -> (training split, evaluation split, normalisation, native image size or None)
DATASET_DEFAULTS = {
    "digits": ("train", "test", "digits", 32),
    "cifar10": ("train", "test", "cifar10", 32),
    "cifar100": ("train", "test", "cifar100", 32),
    "stl10": ("train", "test", "stl10_ascl", 96),
    "tinyimagenet": ("train", "val", "tinyimagenet_ascl", 64),
    "imagefolder": ("train", "val", "imagenet", None),
}


def build_parser() -> argparse.ArgumentParser:
    from common.augment.normalize import NORMALIZE
    p = argparse.ArgumentParser(
        prog="python -m common.evaluate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="k-NN / linear-probe / many-medium-few evaluation of the backbone of a CACR, ASCL, PaCo, MCL or "
                    "AttentioNCE checkpoint (this project's training checkpoints and the original repositories' "
                    "files), and export of the plain backbone state dict.")
    p.add_argument("checkpoint", help="checkpoint file (.pth / .pth.tar) of any of the five methods")
    p.add_argument("--dataset", default="digits", choices=DATASETS,
                   help="evaluation dataset (digits is embedded: no --data needed)")
    p.add_argument("--data", default=None, help="dataset root (as common.data.build_dataset reads it)")
    p.add_argument("--train-split", default=None,
                   help="split used as k-NN bank / linear training set (default: train)")
    p.add_argument("--eval-split", default=None,
                   help="split evaluated (default: test; val for tinyimagenet / imagefolder)")
    p.add_argument("-a", "--arch", default=None,
                   help="common.backbones name of the backbone (default: inferred from the weights)")
    p.add_argument("--maxpool", action=argparse.BooleanOptionalAction, default=None,
                   help="cifar_resnet* only: keep the 3x3/2 max-pool (ASCL on STL-10 / Tiny-ImageNet); default: "
                        "from the checkpoint's args, else off (weights do not show it)")
    p.add_argument("--member", type=int, default=0,
                   help="network index of a multi-network (MCL) checkpoint")
    p.add_argument("--knn", action="store_true", help="weighted k-NN accuracy")
    p.add_argument("--linear", action="store_true", help="linear-probe accuracy on frozen features")
    p.add_argument("--shots", action="store_true", help="also many / medium / few-shot accuracy of each protocol")
    p.add_argument("--export", default=None, metavar="OUT.pth", help="write the plain backbone state dict here")
    g = p.add_argument_group("input")
    g.add_argument("--image-size", type=int, default=None,
                   help="center-crop size (default: native size; 224 for imagefolder)")
    g.add_argument("--resize", type=int, default=None,
                   help="resize the shorter side first (default: none at native size, 256 for imagefolder)")
    g.add_argument("--normalize", default=None, choices=sorted(NORMALIZE),
                   help="normalisation constants (default: the dataset's)")
    g.add_argument("-b", "--batch-size", type=int, default=256, help="feature-extraction batch size")
    g.add_argument("-j", "--workers", type=int, default=0, help="data-loading workers")
    g.add_argument("--device", default=None, help="cpu / cuda / cuda:N (default: cuda if available)")
    k = p.add_argument_group("k-NN")
    k.add_argument("--knn-k", type=int, default=200, help="neighbours")
    k.add_argument("--knn-t", type=float, default=0.1, help="temperature of the exp(sim / T) weights")
    lin = p.add_argument_group("linear probe")
    lin.add_argument("--linear-epochs", type=int, default=100)
    lin.add_argument("--linear-lr", type=float, default=0.1)
    lin.add_argument("--linear-batch-size", type=int, default=256)
    lin.add_argument("--linear-wd", type=float, default=0.0, help="weight decay")
    lin.add_argument("--linear-features", default="standardize", choices=("standardize", "l2", "raw"),
                     help="feature scaling before the classifier: per-dimension train mean / std (scale-free: one "
                          "--linear-lr fits every backbone; still a linear classifier of the raw feature), L2 "
                          "normalisation, or none")
    lin.add_argument("--seed", type=int, default=0, help="classifier init and mini-batch order")
    s = p.add_argument_group("many / medium / few")
    s.add_argument("--many-shot-thr", type=int, default=100, help="many: more training images than this")
    s.add_argument("--low-shot-thr", type=int, default=20, help="few: fewer training images than this")
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the results as JSON")
    return p


# ----------------------------------------------------------------------------------------------------------- model
def load_backbone(path: str, arch: str | None = None, member: int = 0, maxpool: bool | None = None):
    """``(model in eval mode, BackboneState)`` of checkpoint ``path`` (``maxpool`` overrides a CIFAR ResNet's)."""
    from common.backbones import build_backbone
    from common.checkpoint import load_checkpoint
    from common.checkpoint_formats import extract_backbone_state
    obj = load_checkpoint(path, require_dict=False)
    try:
        found = extract_backbone_state(obj, arch=arch, member=member)
    except UserError as e:
        raise UserError(f"checkpoint '{path}': {e}") from None
    if maxpool is not None:
        if not found.arch.startswith("cifar_resnet"):
            raise UserError(f"--maxpool / --no-maxpool apply to the cifar_resnet* backbones only, not '{found.arch}'")
        found = found._replace(build_kwargs={**found.build_kwargs, "maxpool": maxpool})
    model = build_backbone(found.arch, num_classes=0, **found.build_kwargs)
    model.load_state_dict(found.state_dict, strict=True)
    return model.eval(), found


def feature_function(model):
    """The feature each method evaluates: SmallAlexNet's fc7 (CACR's ``layer_index=-2``), else the pooled feature."""
    from common.backbones.alexnet import SmallAlexNet
    if isinstance(model, SmallAlexNet):
        return lambda x: model(x, layer_index=-2)
    return model.forward_features


def export_backbone(found, out: str) -> str:
    """Atomically write the plain backbone state dict; returns what it loads into."""
    from common.checkpoint import atomic_torch_save
    from common.checkpoint_formats import torchvision_target
    atomic_torch_save({k: v.detach().cpu().clone() for k, v in found.state_dict.items()}, out)
    return torchvision_target(found.arch, found.build_kwargs)


# ------------------------------------------------------------------------------------------------------------ data
def eval_transform(args, model):
    import torchvision.transforms as T

    from common.augment.normalize import normalize_transform
    from common.backbones.alexnet import SmallAlexNet
    _, _, norm, native = DATASET_DEFAULTS[args.dataset]
    size, resize = args.image_size, args.resize
    if size is None and isinstance(model, SmallAlexNet) and native != model.input_size:
        size = model.input_size  # its fc6 fixes the input size (CACR STL-10: resize 70, crop 64)
        resize = resize or round(size * 70 / 64)
    fixed = getattr(model, "image_size", None)  # a ViT's position embedding fixes its input size
    if size is None and isinstance(fixed, int) and fixed != native:
        size, resize = fixed, resize or fixed
    if size is None and native is None:
        size, resize = 224, resize or 256
    steps = []
    if resize:
        steps.append(T.Resize(resize))
    if size and (resize or size != native):
        steps.append(T.CenterCrop(size))
    return T.Compose([*steps, T.ToTensor(), normalize_transform(args.normalize or norm)])


def build_splits(args, transform):
    from common.data import build_dataset
    train_split, eval_split, _, _ = DATASET_DEFAULTS[args.dataset]
    train = build_dataset(args.dataset, args.data, args.train_split or train_split, transform)
    evaluation = build_dataset(args.dataset, args.data, args.eval_split or eval_split, transform, classes=train)
    return train, evaluation


# ------------------------------------------------------------------------------------------------------- protocols
def _shots(preds, labels, train_counts, args) -> dict:
    from common.eval import shot_accuracy
    out = shot_accuracy(preds, labels, train_counts, args.many_shot_thr, args.low_shot_thr)
    return {k: 100.0 * out[k] for k in ("many", "medium", "few")}


def run_protocols(args, train_x, train_y, test_x, test_y, num_classes: int) -> dict:
    from common.eval import class_counts, train_linear_probe, weighted_knn_predict
    results = {}
    counts = class_counts(train_y.cpu(), num_classes)
    if args.knn:
        train_n = torch.nn.functional.normalize(train_x, dim=1)
        test_n = torch.nn.functional.normalize(test_x, dim=1)
        _, ranked = weighted_knn_predict(test_n, train_n, train_y, num_classes, args.knn_k, args.knn_t)
        correct = ranked.eq(test_y.view(-1, 1))
        results["knn"] = {"top1": 100.0 * float(correct[:, 0].float().mean()),
                          "top5": 100.0 * float(correct[:, :5].any(1).float().mean()),
                          "k": min(args.knn_k, train_x.shape[0]), "temperature": args.knn_t}
        if args.shots:
            results["knn"].update(_shots(ranked[:, 0], test_y, counts, args))
    if args.linear:
        top1, preds = train_linear_probe(train_x, train_y, test_x, test_y, epochs=args.linear_epochs,
                                         lr=args.linear_lr, batch_size=args.linear_batch_size,
                                         num_classes=num_classes, weight_decay=args.linear_wd,
                                         normalize=args.linear_features == "l2",
                                         standardize=args.linear_features == "standardize", seed=args.seed,
                                         return_predictions=True)
        results["linear"] = {"top1": float(top1), "epochs": args.linear_epochs, "lr": args.linear_lr,
                             "features": args.linear_features}
        if args.shots:
            results["linear"].update(_shots(preds, test_y, counts, args))
    return results


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.knn_k < 1 or args.linear_epochs < 1 or args.batch_size < 1:
        raise UserError("--knn-k, --linear-epochs and --batch-size must be at least 1")
    if not (args.knn or args.linear):
        if args.export and not args.shots:
            args.knn = args.linear = False
        else:
            args.knn = args.linear = True
    from common.utils import get_device
    model, found = load_backbone(args.checkpoint, args.arch, args.member, args.maxpool)
    kwargs = "".join(f", {k}={v!r}" for k, v in found.build_kwargs.items())
    print(f"=> {args.checkpoint}: {found.source}")
    print(f"=> backbone {found.arch}{kwargs} ({sum(v.numel() for v in found.state_dict.values()):,} values in "
          f"{len(found.state_dict)} tensors)")
    results = {"checkpoint": args.checkpoint, "arch": found.arch, "source": found.source}
    if args.export:
        target = export_backbone(found, args.export)
        print(f"=> wrote {args.export}: loads with strict=True into {target}")
        results["export"] = args.export
    if args.knn or args.linear:
        from torch.utils.data import DataLoader

        from common.eval import extract_features
        device = get_device(args.device)
        model.to(device)
        train, evaluation = build_splits(args, eval_transform(args, model))
        num_classes = len(train.classes)
        features = feature_function(model)
        loaders = [DataLoader(d, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
                   for d in (train, evaluation)]
        with torch.no_grad():
            train_x, train_y = extract_features(features, loaders[0], device)
            test_x, test_y = extract_features(features, loaders[1], device)
        print(f"=> {args.dataset}: {len(train)} training / {len(evaluation)} evaluation images, {num_classes} "
              f"classes, {train_x.shape[1]}-d features")
        results.update(dataset=args.dataset, feature_dim=int(train_x.shape[1]),
                       **run_protocols(args, train_x, train_y, test_x, test_y, num_classes))
        for name in ("knn", "linear"):
            if name in results:
                r = results[name]
                shots = (f"  many {r['many']:.2f}  medium {r['medium']:.2f}  few {r['few']:.2f}"
                         if "many" in r else "")
                label = f"k-NN (k={r['k']}, T={r['temperature']:g})" if name == "knn" else \
                    f"linear ({r['epochs']} epochs, lr {r['lr']:g}, {r['features']} features)"
                print(f"{label} top-1: {r['top1']:.2f}{shots}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    run_main(main)
