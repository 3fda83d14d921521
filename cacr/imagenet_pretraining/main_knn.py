"""Weighted k-NN evaluation of a pre-trained backbone (spec §b.8, §h; DINO's ``eval_knn.py`` adapted).

Features of ImageNet train / val (Resize 256 bicubic + CenterCrop 224), L2-normalised; every test image votes with
its k nearest train features (cosine), weight exp(sim/T); top-1 / top-5 (%) for every k of ``--nb_knn``.
Launch with ``torchrun --nproc_per_node=N main_knn.py ...`` (or ``python -m torch.distributed.launch``) or as one
process.  Fixed (quirk §k.17): any torchvision / common backbone or ViT works, ``--dump_features`` is optional,
fewer than 100 test images are fine, validation features are extracted once (sharded over the ranks).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T

from common import distributed as cdist
from common.augment import normalize_transform
from common.backbones import build_backbone
from common.checkpoint import load_checkpoint, save_checkpoint
from common.data import build_dataset
from common.eval.knn import knn_accuracy
from common.logger import make_run_dir
from common.training import load_pretrained_encoder
from common.utils import HelpFormatter, UserError, get_device, run_main

from cacr.imagenet_pretraining import vits


def bool_flag(s):
    if s.lower() in {"off", "false", "0"}:
        return False
    if s.lower() in {"on", "true", "1"}:
        return True
    raise argparse.ArgumentTypeError("invalid value for a boolean flag (on/off, true/false, 1/0)")


def get_parser():
    parser = argparse.ArgumentParser("Evaluation with weighted k-NN on ImageNet", formatter_class=HelpFormatter)
    parser.add_argument("--cfg", type=str, default=None, help="unused (kept for the original's command lines)")
    parser.add_argument("--arch", default="vit_base", type=str,
                        help="vit_base / vit_small / vit_conv_* / vit_tiny or a torchvision / common backbone "
                             "(quirk §k.17 fixed: the original's default deit_small was not buildable)")
    parser.add_argument("--batch_size_per_gpu", default=128, type=int)
    parser.add_argument("--nb_knn", default=[10, 20, 100, 200], nargs="+", type=int)
    parser.add_argument("--temperature", default=0.07, type=float)
    parser.add_argument("--pretrained_weights", default="", type=str, help="pre-training checkpoint")
    parser.add_argument("--use_cuda", default=True, type=bool_flag, help="keep the feature bank on the GPU")
    parser.add_argument("--patch_size", default=16, type=int, help="unused")
    parser.add_argument("--checkpoint_key", default="teacher", type=str, help="unused")
    parser.add_argument("--dump_features", default=None, help="folder for features.pth + log.txt "
                                                              "(default runs/cacr/knn_<arch>)")
    parser.add_argument("--load_features", default=None, help="load features from this folder instead")
    parser.add_argument("--num_workers", default=10, type=int)
    parser.add_argument("--dist_url", default="env://", type=str)
    parser.add_argument("--local_rank", "--local-rank", default=0, type=int, help="set by the launcher")
    parser.add_argument("--data_path", default=os.environ.get("DATA", "/path/to/imagenet/"), type=str)
    parser.add_argument("--zip_mode", type=bool_flag, default=False,
                        help="not supported (quirk §k.17: needs a module absent from the original; a clear error)")
    parser.add_argument("--image-size", default=224, type=int, help="crop size (small for smoke tests)")
    parser.add_argument("--device", default=None, type=str)
    parser.add_argument("--seed", default=0, type=int,
                        help="seed of the random initialisation used without --pretrained_weights (the same on every "
                             "process, so the shards come from one network)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="unused")
    return parser


def build_feature_model(arch, image_size):
    if arch.startswith("vit"):
        return vits.build_vit(arch, image_size, num_classes=0)
    model = build_backbone(arch, num_classes=1000)
    model.fc = nn.Identity()
    return model


class IndexedDataset(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, _ = self.dataset[index]
        return image, index


@torch.no_grad()
def extract_features(model, dataset, args):
    """Features of ``dataset`` in dataset order; each rank encodes a shard, rank 0 assembles the bank."""
    indexed = IndexedDataset(dataset)
    sampler = torch.utils.data.distributed.DistributedSampler(indexed, shuffle=False) if args.distributed else None
    loader = torch.utils.data.DataLoader(indexed, sampler=sampler, batch_size=args.batch_size_per_gpu,
                                         num_workers=args.num_workers, pin_memory=args.device.type == "cuda")
    feats, idxs = [], []
    for images, index in loader:
        feats.append(model(images.to(args.device, non_blocking=True)).float())
        idxs.append(index.to(args.device))
    feats, idxs = torch.cat(feats), torch.cat(idxs)
    if args.distributed:
        feats, idxs = cdist.concat_all_gather_uneven(feats), cdist.concat_all_gather_uneven(idxs)
    bank = torch.zeros(len(dataset), feats.shape[1], device=feats.device)
    bank[idxs] = feats  # padded duplicates of the sampler write the same rows again
    return bank


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.zip_mode:
        raise UserError("--zip_mode needs a module that the original repository does not ship; unpack the data")
    args.world_size, args.rank, args.multiprocessing_distributed = -1, -1, False
    args.dist_backend = None
    requested = args.device
    cdist.init_distributed(args, int(os.environ.get("LOCAL_RANK", args.local_rank)))
    if requested is not None and not args.distributed:
        args.device = get_device(requested)
    out_dir = args.dump_features or make_run_dir("cacr", f"knn_{args.arch}", create=False)

    if args.load_features:
        feats = load_checkpoint(os.path.join(args.load_features, "features.pth"))
        train_features, test_features = feats["train_features"], feats["test_features"]
        train_labels, test_labels = feats["train_labels"], feats["test_labels"]
    else:
        transform = T.Compose([T.Resize(max(args.image_size * 256 // 224, args.image_size),
                                        interpolation=T.InterpolationMode.BICUBIC),
                               T.CenterCrop(args.image_size), T.ToTensor(), normalize_transform("imagenet")])
        train_set = build_dataset("imagefolder", args.data_path, "train", transform)
        val_set = build_dataset("imagefolder", args.data_path, "val", transform, classes=train_set)
        torch.manual_seed(args.seed)
        model = build_feature_model(args.arch, args.image_size)
        if args.pretrained_weights:
            load_pretrained_encoder(model, args.pretrained_weights, ("module.base_encoder.", "module.encoder_q."), "fc",
                                    flag="--pretrained_weights")
            cdist.rank0_print(f"=> loaded '{args.pretrained_weights}'")
        else:
            cdist.rank0_print("no --pretrained_weights: evaluating a randomly initialised network")
        model = model.to(args.device).eval()
        train_features = F.normalize(extract_features(model, train_set, args), dim=1)
        test_features = F.normalize(extract_features(model, val_set, args), dim=1)
        train_labels = torch.tensor(train_set.targets, dtype=torch.long)
        test_labels = torch.tensor(val_set.targets, dtype=torch.long)
        if cdist.is_main_process() and args.dump_features:
            os.makedirs(out_dir, exist_ok=True)
            save_checkpoint(dict(train_features=train_features.cpu(), test_features=test_features.cpu(),
                                 train_labels=train_labels, test_labels=test_labels),
                            os.path.join(out_dir, "features.pth"))

    if cdist.is_main_process():
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        os.makedirs(out_dir, exist_ok=True)
        for k in args.nb_knn:
            # the exp(sim/T)-weighted vote of the k nearest train features
            top1, top5 = knn_accuracy(test_features, test_labels, train_features, train_labels, num_classes, k,
                                      args.temperature)
            print(f"{k}-NN classifier result: Top1: {top1}, Top5: {top5}")
            with open(os.path.join(out_dir, "log.txt"), "a") as f:
                f.write(json.dumps({"k": k, "top1": top1, "top5": top5, "argv": sys.argv[1:]}) + "\n")
        print(f"final knn top-1: {top1:.2f}")
    cdist.barrier()
    cdist.cleanup()


if __name__ == "__main__":
    run_main(main)
