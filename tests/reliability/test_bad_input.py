"""Bad input to every entry point of every method (issue 9): one table, one row per (entry point, failure kind).

Each row runs ``python <entry> <argv>`` inside its method folder (one CPU thread, runs under the row's own
directory) on tiny data in the real formats and requires: exit code 2, the last stderr line an ``error:``
line containing the row's substrings (the problem: the path, the flag, the file; most also name the fix),
no ``Traceback`` anywhere in the output, no checkpoint-like file (``*.pth``, ``*.pth.tar``, ``*.pt``,
``*.tmp``) created, and no checkpoint or fixture file changed or removed. ``nan_loss`` rows first run a good
tiny training (``setup``, must exit 0 and write the checkpoint ``keep``), then continue it (auto-resume or
``--resume``) with a setting that makes the loss non-finite: the run must stop at the step with the
"loss is nan/inf at step …" message (the likely causes), write nothing, and leave the good checkpoint
byte-identical and loadable.

Failure kinds: ``missing_data`` (the path does not exist), ``wrong_format`` (data of another format: an
ImageFolder given as CIFAR, CIFAR-10 given as CIFAR-100, a list file without labels or naming absent images,
an empty class folder, unreadable images, a WebVision root without its lists, Tiny-ImageNet without its val
annotations), ``flags`` (incompatible flags: a queue not divisible by the batch, N < 2 networks, d_pos ≤ 0, an
unknown ``-a/--arch``, ...), ``resume_checkpoint`` /
``eval_checkpoint`` (corrupt, foreign or missing checkpoint for ``--resume`` / for the linear-eval, evaluation
and conversion inputs), ``nan_loss``. Thin launchers (``cacr/small_scale_experiments/<dataset>/*.py``,
``ascl/main_simple.py``, ``cacr/*/webvision/main_*.py``, ``attentionce/tiny-Imagenet/*.py``, ...) get the rows
that exercise what they change (their default dataset / variant); their training loop is the one of the
entry they launch and has its ``nan_loss`` row there.

Speed: the rows of one method run in one interpreter (``ci/entry_batch.py``: each entry file is executed as
``__main__`` with its own argv, cwd, environment and captured file descriptors), so torch is imported five
times instead of once per row. ``CL_BAD_INPUT_ISOLATED=1`` runs every row in its own ``python`` process
instead (same assertions; use it to check that no row depends on what an earlier row left in the process).
Selecting rows (``-k``) still runs the whole batch of their method; ``-s`` prints the time spent per method and
the slowest rows.

    python -m pytest tests/reliability/test_bad_input.py -q
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from ci import warm
from ci.smoke import ROOT, scratch_dir, smoke_env

KINDS = ("missing_data", "wrong_format", "flags", "resume_checkpoint", "eval_checkpoint", "nan_loss")
CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt", ".tmp")
ISOLATED = os.environ.get("CL_BAD_INPUT_ISOLATED") == "1"


@dataclass(frozen=True)
class Case:
    """``argv`` / ``setup`` items are formatted with the data paths (``{cifar}``, ``{imagefolder}``, ...),
    ``{case}`` (the row's directory, also ``$CL_RUNS_DIR``) and whatever ``make(case_dir, data)`` returns.
    ``keep``: glob (relative to the row's directory) of the checkpoint ``setup`` writes; ``{keep}`` in
    ``argv`` is that file (the newest match when the row starts)."""
    method: str
    entry: str
    kind: str
    argv: tuple
    expect: tuple
    make: Callable | None = None
    setup: tuple | None = None
    keep: str | None = None
    variant: str = ""
    absent: tuple = ()        # paths (relative to the row's directory) the failing run must not create

    @property
    def id(self) -> str:
        return f"{self.method}/{self.entry}:{self.kind}" + (f"-{self.variant}" if self.variant else "")


# ---------------------------------------------------------------------------------------------- fixture makers

def corrupt(name: str = "bad.pth.tar", key: str = "ckpt") -> Callable:
    """A file with a checkpoint's name whose content is a truncated zip (what an interrupted copy leaves)."""
    def make(case_dir: Path, data: dict) -> dict:
        path = case_dir / name
        path.write_bytes(b"PK\x03\x04 truncated before the central directory")
        return {key: str(path)}
    return make


def foreign(state: Callable[[], dict], name: str = "foreign.pth.tar", key: str = "ckpt") -> Callable:
    """A valid torch checkpoint written by something else (``state()`` builds it)."""
    def make(case_dir: Path, data: dict) -> dict:
        path = case_dir / name
        torch.save(state(), path)
        return {key: str(path)}
    return make


def other_model_checkpoint() -> dict:
    """A training checkpoint of some other network: right keys at the top, nothing this code's models hold."""
    return {"epoch": 3, "state_dict": {"backbone.stem.weight": torch.zeros(4, 3, 3, 3)}, "optimizer": None}


def combine(*makers: Callable) -> Callable:
    def make(case_dir: Path, data: dict) -> dict:
        out = {}
        for m in makers:
            out.update(m(case_dir, data))
        return out
    return make


def imagefolder_with_empty_class(case_dir: Path, data: dict) -> dict:
    from common.data import fake
    root = fake.write_imagefolder(case_dir / "inet", n_classes=2, n_per_class=2, size=32)
    for image in (case_dir / "inet" / "train" / "n01441764").iterdir():
        image.unlink()
    return {"bad": root}


def imagefolder_with_unreadable_images(case_dir: Path, data: dict) -> dict:
    from common.data import fake
    root = fake.write_imagefolder(case_dir / "inet", n_classes=2, n_per_class=2, size=32)
    for image in (case_dir / "inet").rglob("*.JPEG"):
        image.write_bytes(b"not an image")
    return {"bad": root}


def cifar_with_garbage_pickles(folder: str, names: tuple) -> Callable:
    def make(case_dir: Path, data: dict) -> dict:
        (case_dir / "bad" / folder).mkdir(parents=True)
        for name in names:
            (case_dir / "bad" / folder / name).write_bytes(b"this is not a pickle")
        return {"bad": str(case_dir / "bad")}
    return make


CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")


def text_file(name: str, content: str, key: str) -> Callable:
    def make(case_dir: Path, data: dict) -> dict:
        (case_dir / name).write_text(content)
        return {key: str(case_dir / name)}
    return make


def list_files(content: str) -> Callable:
    """ImageNet-LT list files (train and test) with ``content`` each, under ``<case>/lists``."""
    def make(case_dir: Path, data: dict) -> dict:
        (case_dir / "lists" / "ImageNet_LT").mkdir(parents=True)
        for split in ("train", "test"):
            (case_dir / "lists" / "ImageNet_LT" / f"ImageNet_LT_{split}.txt").write_text(content)
        return {"lists": str(case_dir / "lists")}
    return make


def webvision_without_images(case_dir: Path, data: dict) -> dict:
    from common.data import fake
    root = fake.write_webvision(case_dir / "webvision", n_classes=2, n_google_per_class=2, n_flickr_per_class=2)
    for source in ("google", "flickr"):
        for image in (case_dir / "webvision" / source).rglob("*.jpg"):
            image.unlink()
    return {"bad": root}


def cacr_encoder(size: int = 32) -> Callable:
    """The ``encoder.pth`` main_ours.py writes, for a ResNet-20 encoder (linear-eval rows that test the data)."""
    def make(case_dir: Path, data: dict) -> dict:
        from cacr.small_scale_experiments.encoder import build_encoder
        torch.manual_seed(0)
        path = case_dir / "encoder.pth"
        torch.save(build_encoder("resnet20_option_a", 128, size).state_dict(), path)
        return {"encoder": str(path)}
    return make


def moco_checkpoint(prefix: str) -> Callable:
    """A pre-training checkpoint of a ResNet-20 with the encoder under ``prefix`` (``module.base_encoder.``:
    main_pretrain.py, ``module.encoder_q.``: the queue MoCo, ``module.encoder_q_0.``: MoCo-MCL)."""
    def make(case_dir: Path, data: dict) -> dict:
        from common.backbones import build_backbone
        torch.manual_seed(0)
        weights = build_backbone("resnet20_option_a", num_classes=8).state_dict()
        path = case_dir / "pretrain.pth.tar"
        torch.save({"epoch": 1, "arch": "resnet20_option_a",
                    "state_dict": {prefix + k: v for k, v in weights.items()}}, path)
        return {"pretrained": str(path)}
    return make


moco_v3_checkpoint = moco_checkpoint("module.base_encoder.")


def attentionce_model(case_dir: Path, data: dict) -> dict:
    from attentionce.image.model import Model, add_module_prefix
    torch.manual_seed(0)
    path = case_dir / "digits_SimCLR_4model_8_1_1.0_1.0.pth"
    torch.save(add_module_prefix(Model(16, "resnet20_option_a").state_dict()), path)
    return {"model": str(path)}


# ------------------------------------------------------------------------------------------------------- table

def rows(method: str, entry: str, *cases: tuple) -> list:
    """``(kind, argv, expect[, make[, setup, keep]][, {"variant": ..., "absent": ...}])`` → ``Case`` rows of one
    entry point."""
    out = []
    for c in cases:
        kwargs = c[-1] if isinstance(c[-1], dict) else {}
        c = c[:-1] if kwargs else c
        kind, argv, expect, *rest = c
        make = rest[0] if rest else None
        setup, keep = (tuple(rest[1]), rest[2]) if len(rest) > 1 else (None, None)
        out.append(Case(method, entry, kind, tuple(argv), tuple(expect), make, setup, keep, **kwargs))
    return out


# --- CACR
CACR_SMALL = ["--arch", "resnet20_option_a", "--epochs", "1", "--max-iters", "1", "--Ns", "8", "--Ny", "1",
              "--num_workers", "0", "--monitor", "none", "--no-progress"]
CACR_LIN = ["--arch", "resnet20_option_a", "--epochs", "1", "--max-iters", "1", "--batch_size", "8",
            "--num_workers", "0", "--no-progress"]
CACR_LARGE = ["-a", "resnet20_option_a", "--Ns", "4", "--Ny", "1", "--moco-k", "8", "--moco-dim", "16", "-j", "0",
              "--image-size", "32", "--epochs", "1", "--max-iters", "1", "--no-progress"]
CACR_V3 = ["-a", "vit_tiny", "-b", "4", "--moco-dim", "16", "--moco-mlp-dim", "32", "-j", "0", "--image-size", "32",
           "--epochs", "1", "--max-iters", "1", "--no-amp", "--no-progress"]
CACR_LINCLS = ["-a", "resnet20_option_a", "-b", "4", "-j", "0", "--image-size", "32", "--epochs", "1", "--max-iters",
               "1", "--no-progress"]
CACR_KNN = ["--arch", "resnet20_option_a", "--batch_size_per_gpu", "4", "--nb_knn", "2", "--num_workers", "0",
            "--image-size", "32"]

CASES = [
    *rows("cacr", "small_scale_experiments/main_ours.py",
          ("missing_data", ["--dataset", "cifar10", "--data_folder", "{case}/nowhere", *CACR_SMALL],
           ["nowhere", "does not exist"]),
          ("wrong_format", ["--dataset", "cifar10", "--data_folder", "{imagefolder}", *CACR_SMALL],
           ["cifar-10-batches-py"]),
          ("flags", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--choice", "none", "--with_debiased",
                     *CACR_SMALL], ["--with_debiased", "--choice full"]),
          ("flags", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--alpha", "0", *CACR_SMALL], ["--alpha"],
           {"variant": "alpha0"}),
          ("flags", ["--dataset", "cifar10", "--data_folder", "{cifar}", *CACR_SMALL, "--arch", "resnet5O"],
           ["resnet5O"], {"variant": "arch"}),
          ("flags", ["--dataset", "stl10", "--data_folder", "{stl10}", "--imbalanced", *CACR_SMALL],
           ["--imbalanced", "cifar10 / cifar100 only"], {"variant": "imbalanced"}),
          ("resume_checkpoint", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--resume", "{ckpt}",
                                 *CACR_SMALL], ["bad.pth.tar", "corrupt"], corrupt()),
          ("resume_checkpoint", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--resume", "{ckpt}",
                                 *CACR_SMALL], ["foreign.pth.tar", "does not match this model"],
           foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("nan_loss", ["--dataset", "cifar10", "--data_folder", "{cifar}", *CACR_SMALL, "--max-iters", "3",
                        "--lr", "1e30", "--name", "nan", "--no-auto-resume"], ["loss is", "step epoch 0 iteration 1"],
           None, ["--dataset", "cifar10", "--data_folder", "{cifar}", *CACR_SMALL, "--name", "nan"],
           "cacr/nan/checkpoint.pth.tar")),
    *rows("cacr", "small_scale_experiments/cifar10/main_ours.py",
          ("missing_data", ["--data_folder", "{case}/nowhere", *CACR_SMALL], ["cifar10", "nowhere", "does not exist"])),
    *rows("cacr", "small_scale_experiments/cifar100/main_ours.py",
          ("missing_data", ["--data_folder", "{case}/nowhere", *CACR_SMALL],
           ["cifar100", "nowhere", "does not exist"])),
    *rows("cacr", "small_scale_experiments/stl10/main_ours.py",
          ("missing_data", ["--data_folder", "{case}/nowhere", *CACR_SMALL], ["stl10", "nowhere", "does not exist"]),
          ("wrong_format", ["--data_folder", "{cifar}", *CACR_SMALL], ["stl10_binary"])),
    *rows("cacr", "small_scale_experiments/linear_eval.py",
          ("missing_data", ["--dataset", "cifar10", "--data_folder", "{case}/nowhere", "--encoder_checkpoint",
                            "{encoder}", *CACR_LIN], ["nowhere", "does not exist"], cacr_encoder()),
          ("wrong_format", ["--dataset", "cifar100", "--data_folder", "{cifar10_only}", "--encoder_checkpoint",
                            "{encoder}", *CACR_LIN], ["cifar-100-python"], cacr_encoder()),
          ("flags", ["--dataset", "cifar10", "--data_folder", "{cifar}", *CACR_LIN], ["--encoder_checkpoint"]),
          ("flags", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--encoder_checkpoint", "{encoder}", *CACR_LIN,
                     "--arch", "resnet5O"], ["resnet5O"], cacr_encoder(), {"variant": "arch"}),
          ("eval_checkpoint", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--encoder_checkpoint", "{ckpt}",
                               *CACR_LIN], ["bad.pth.tar", "corrupt"], corrupt()),
          ("eval_checkpoint", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--encoder_checkpoint", "{ckpt}",
                               *CACR_LIN], ["foreign.pth.tar", "does not match this model"],
           foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("eval_checkpoint", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--encoder_checkpoint",
                               "{case}/missing.pth", *CACR_LIN], ["missing.pth", "does not exist"],
           {"variant": "missing"}),
          ("nan_loss", ["--dataset", "cifar10", "--data_folder", "{cifar}", "--encoder_checkpoint", "{encoder}",
                        *CACR_LIN, "--max-iters", "3", "--log_interval", "1", "--lr", "1e38"],
           ["loss is", "step epoch 0 iteration"],
           cacr_encoder())),
    *rows("cacr", "small_scale_experiments/cifar10/linear_eval.py",
          ("missing_data", ["--data_folder", "{case}/nowhere", "--encoder_checkpoint", "{encoder}", *CACR_LIN],
           ["cifar10", "nowhere", "does not exist"], cacr_encoder())),
    *rows("cacr", "small_scale_experiments/cifar100/linear_eval.py",
          ("missing_data", ["--data_folder", "{case}/nowhere", "--encoder_checkpoint", "{encoder}", *CACR_LIN],
           ["cifar100", "nowhere", "does not exist"], cacr_encoder())),
    *rows("cacr", "small_scale_experiments/stl10/linear_eval.py",
          ("missing_data", ["--data_folder", "{case}/nowhere", "--encoder_checkpoint", "{encoder}", *CACR_LIN],
           ["stl10", "nowhere", "does not exist"], cacr_encoder(64))),
    *rows("cacr", "large_scale_shift_experiments/imagenet/main_ours.py",
          ("missing_data", ["{case}/nowhere", *CACR_LARGE], ["nowhere", "does not exist"]),
          ("wrong_format", ["{bad}", *CACR_LARGE], ["n01441764", "at least one image per class"],
           imagefolder_with_empty_class),
          ("flags", ["{imagefolder}", *CACR_LARGE, "--moco-k", "10"], ["--moco-k 10", "divisible", "multiple"]),
          ("flags", ["{imagefolder}", *CACR_LARGE, "--moco-contr-w", "1"], ["--moco-contr-w", "only 0"],
           {"variant": "contr_w"}),
          ("flags", ["{imagefolder}", *CACR_LARGE, "-a", "resnet5O"], ["resnet5O"], {"variant": "arch"}),
          ("resume_checkpoint", ["{imagefolder}", *CACR_LARGE, "--resume", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("resume_checkpoint", ["{imagefolder}", *CACR_LARGE, "--resume", "{ckpt}"],
           ["foreign.pth.tar", "does not match this model"], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("nan_loss", ["{imagefolder}", *CACR_LARGE, "--Ns", "2", "--moco-k", "4", "--max-iters", "3", "--epochs", "2",
                        "--lr", "1e30", "--resume", "{keep}"], ["loss is", "step epoch 1 iteration"], None,
           ["{imagefolder}", *CACR_LARGE, "--Ns", "2", "--moco-k", "4"],
           "cacr/ours/*/resnet20_option_a/*_lr0.03_*/checkpoint.pth.tar")),
    *rows("cacr", "large_scale_shift_experiments/webvision/main_ours.py",
          ("missing_data", ["{case}/nowhere", *CACR_LARGE], ["nowhere", "does not exist"]),
          ("wrong_format", ["{imagefolder}", *CACR_LARGE], ["webvision", "train_filelist_google.txt"]),
          ("wrong_format", ["{bad}", *CACR_LARGE], ["image file", "does not exist"], webvision_without_images,
           {"variant": "absent_images"})),
    *rows("cacr", "large_scale_shift_experiments/imagenet/main_lincls.py",
          ("missing_data", ["{case}/nowhere", *CACR_LINCLS, "--pretrained", "{pretrained}"],
           ["nowhere", "does not exist"],
           moco_v3_checkpoint),
          ("eval_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{case}/missing.pth.tar"],
           ["missing.pth.tar", "--pretrained"]),
          ("eval_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt(), {"variant": "corrupt"}),
          ("eval_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{pretrained}"],
           ["module.encoder_q."], moco_v3_checkpoint, {"variant": "foreign"}),
          ("nan_loss", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{pretrained}", "--resume", "{keep}", "--epochs",
                        "2", "-b", "2", "--max-iters", "3", "-p", "1", "--lr", "3e38"],
           ["loss is", "step epoch 1 iteration"], moco_checkpoint("module.encoder_q."),
           ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{pretrained}", "-b", "2"],
           "lincls/pretrain.pth.tar/b2_lr30_e60,80,1/checkpoint.pth.tar")),
    *rows("cacr", "large_scale_shift_experiments/webvision/main_lincls.py",
          ("missing_data", ["{case}/nowhere", *CACR_LINCLS, "--pretrained", "{pretrained}"],
           ["nowhere", "does not exist"],
           moco_checkpoint("module.encoder_q.")),
          ("eval_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt())),
    *rows("cacr", "large_scale_shift_experiments/imagenet/scripts/create_imagenet_subset.py",
          ("missing_data", ["{case}/nowhere", "{case}/subset"], ["nowhere", "does not exist"]),
          ("wrong_format", ["{imagefolder}", "{case}/subset", "-s", "{classes}"], ["n99999999", "missing"],
           text_file("classes.txt", "n01440764\nn99999999\n", "classes"), {"absent": ("subset",)}),
          ("flags", ["{imagefolder}", "{case}/subset", "-s", "{classes}"], ["not WordNet ids", "cat"],
           text_file("classes.txt", "n01440764\ncat\n", "classes"), {"absent": ("subset",)}),
          ("flags", ["{imagefolder}", "{case}/subset", "-s", "{classes}"], ["already exists", "-f/--force"],
           combine(text_file("classes.txt", "n01440764\nn01441764\n", "classes"),
                   lambda case_dir, data: (case_dir / "subset" / "val" / "n01441764").mkdir(parents=True) or {}),
           {"variant": "exists", "absent": ("subset/train",)}),
          ("flags", ["{imagefolder}", "{case}/subset", "-s", "{classes}", "-f"], ["is a real folder", "move it away"],
           combine(text_file("classes.txt", "n01440764\nn01441764\n", "classes"),
                   lambda case_dir, data: (case_dir / "subset" / "val" / "n01441764").mkdir(parents=True) or {}),
           {"variant": "force_over_folder", "absent": ("subset/train",)})),
    *rows("cacr", "imagenet_pretraining/main_pretrain.py",
          ("missing_data", ["{case}/nowhere", *CACR_V3], ["nowhere", "does not exist"]),
          ("wrong_format", ["{bad}", *CACR_V3], ["cannot read image file", "not a valid image"],
           imagefolder_with_unreadable_images),
          ("flags", ["{imagefolder}", *CACR_V3, "--use-full-mode"], ["--use-full-mode", "--use-local-crops"]),
          ("flags", ["{imagefolder}", *CACR_V3, "-a", "resnet5O"], ["resnet5O"], {"variant": "arch"}),
          ("flags", ["{imagefolder}", *CACR_V3, "-a", "resnet20_option_a"], ["resnet20_option_a"],
           {"variant": "cifar_arch"}),
          ("resume_checkpoint", ["{imagefolder}", *CACR_V3, "--resume", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          # --resume: the setup run's folder belongs to its flags (common.engine); the file is continued explicitly
          ("nan_loss", ["{imagefolder}", *CACR_V3, "-b", "2", "--max-iters", "3", "-p", "1", "--epochs", "2", "--lr",
                        "1e30", "--output_dir", "{case}/out", "--resume", "{keep}"], ["loss is", "step epoch 1 iteration"],
           None,
           ["{imagefolder}", *CACR_V3, "-b", "2", "--output_dir", "{case}/out"],
           "out/checkpoint.pth.tar")),
    *rows("cacr", "imagenet_pretraining/main_lincls.py",
          ("missing_data", ["{case}/nowhere", *CACR_LINCLS, "--pretrained", "{pretrained}"],
           ["nowhere", "does not exist"],
           moco_v3_checkpoint),
          ("wrong_format", ["{cifar}", *CACR_LINCLS, "--pretrained", "{pretrained}"], ["train", "does not exist"],
           moco_v3_checkpoint),
          ("flags", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{pretrained}", "-a", "resnet5O"], ["resnet5O"],
           moco_v3_checkpoint),
          ("eval_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("eval_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{ckpt}"],
           ["foreign.pth.tar", "module.base_encoder."], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("eval_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--pretrained", "{case}/missing.pth.tar"],
           ["missing.pth.tar", "--pretrained"], {"variant": "missing"}),
          ("resume_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--resume", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("resume_checkpoint", ["{imagefolder}", *CACR_LINCLS, "--resume", "{pretrained}"],
           ["pretrain.pth.tar", "does not match this model"], moco_v3_checkpoint, {"variant": "pretraining_file"})),
    *rows("cacr", "imagenet_pretraining/main_knn.py",
          ("missing_data", [*CACR_KNN, "--data_path", "{case}/nowhere"], ["nowhere", "does not exist"]),
          ("wrong_format", [*CACR_KNN, "--data_path", "{bad}"], ["n01441764", "at least one image per class"],
           imagefolder_with_empty_class),
          ("flags", [*CACR_KNN, "--data_path", "{imagefolder}", "--zip_mode", "true"], ["--zip_mode"]),
          ("flags", [*CACR_KNN, "--data_path", "{imagefolder}", "--arch", "resnet5O"], ["resnet5O"],
           {"variant": "arch"}),
          ("eval_checkpoint", [*CACR_KNN, "--data_path", "{imagefolder}", "--pretrained_weights", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt()),
          ("eval_checkpoint", [*CACR_KNN, "--data_path", "{imagefolder}", "--pretrained_weights", "{ckpt}"],
           ["foreign.pth.tar", "module.base_encoder."], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("eval_checkpoint", [*CACR_KNN, "--data_path", "{imagefolder}", "--load_features", "{case}"],
           ["features.pth", "corrupt"], corrupt("features.pth"), {"variant": "features"})),
    *rows("cacr", "imagenet_pretraining/convert_to_deit.py",
          ("eval_checkpoint", ["--input", "{ckpt}", "--output", "{case}/deit.pth"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("eval_checkpoint", ["--input", "{ckpt}", "--output", "{case}/deit.pth"], ["base_encoder."],
           foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("eval_checkpoint", ["--input", "{case}/missing.pth.tar", "--output", "{case}/deit.pth"],
           ["missing.pth.tar", "does not exist"], {"variant": "missing"})),
]


# --- ASCL
ASCL_SMALL = ["--arch", "resnet20_option_a", "--epochs", "1", "--eval_epochs", "0", "--batch-size", "16",
              "--mem_size", "32", "--workers", "0", "--no_progress"]
ASCL_IMAGENET = ["-a", "resnet20_option_a", "-b", "4", "--moco-k", "8", "--moco-dim", "16", "-j", "0",
                 "--image-size", "32", "--epochs", "1", "--iters-per-epoch", "1", "--no-progress"]

CASES += [
    *rows("ascl", "main.py",
          ("missing_data", ["--dataset", "cifar10", "--data_path", "{case}/nowhere", *ASCL_SMALL],
           ["nowhere", "does not exist"]),
          ("wrong_format", ["--dataset", "cifar10", "--data_path", "{imagefolder}", *ASCL_SMALL],
           ["cifar-10-batches-py"]),
          ("flags", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--mem_size", "40"],
           ["--mem_size 40", "multiple of the batch size"]),
          ("flags", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--model", "byol", "--dim", "64"],
           ["--dim 128"], {"variant": "byol_dim"}),
          ("flags", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--arch", "resnet5O"],
           ["resnet5O"], {"variant": "arch"}),
          ("flags", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--type", "hard", "--K", "64"],
           ["top-64", "holds only 32"], {"variant": "hard_topk"}),
          ("flags", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--batch-size", "12",
                     "--mem_size", "36"], ["--batch-size 12", "SplitBatchNorm"], {"variant": "split_bn"}),
          ("resume_checkpoint", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--resume", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt()),
          ("resume_checkpoint", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--resume", "{ckpt}"],
           ["foreign.pth.tar", "does not match this model"], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("resume_checkpoint", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--resume"],
           ["--resume", "no checkpoint"], {"variant": "empty_run_dir"}),
          ("nan_loss", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--epochs", "2", "--lr", "1e30",
                        "--warm_up", "0", "--print_freq", "1", "--run_id", "nan", "--resume", "{keep}"],
           ["loss is nan", "of epoch 1"], None,
           ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--save_freq", "1", "--run_id", "nan"],
           "ascl/nan/cifar10_*_1_*/ckpts.pth")),
    *rows("ascl", "main_simple.py",
          ("missing_data", ["--dataset", "cifar10", "--data_path", "{case}/nowhere", *ASCL_SMALL],
           ["nowhere", "does not exist"]),
          ("wrong_format", ["--dataset", "cifar100", "--data_path", "{cifar10_only}", *ASCL_SMALL],
           ["cifar-100-python"]),
          # --K is the neighbour count here as in main.py (quirk 5): an original user's queue size is refused
          ("flags", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--K", "32"],
           ["--K 32", "--mem_size 32", "--nn_num"]),
          ("flags", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--K", "5", "--nn_num", "3"],
           ["--K 5", "--nn_num 3", "disagree"], {"variant": "neighbour_alias_conflict"}),
          ("resume_checkpoint", ["--dataset", "cifar10", "--data_path", "{cifar}", *ASCL_SMALL, "--resume", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt())),
    *rows("ascl", "ImageNet-1K/main_moco.py",
          ("missing_data", ["{case}/nowhere", *ASCL_IMAGENET], ["nowhere", "does not exist"]),
          ("wrong_format", ["{bad}", *ASCL_IMAGENET], ["n01441764", "at least one image per class"],
           imagefolder_with_empty_class),
          ("flags", ["{imagefolder}", *ASCL_IMAGENET, "--moco-k", "10"], ["--moco-k 10", "multiple of"]),
          ("flags", ["{imagefolder}", *ASCL_IMAGENET, "-a", "resnet5O"], ["resnet5O"], {"variant": "arch"}),
          ("resume_checkpoint", ["{imagefolder}", *ASCL_IMAGENET, "--resume", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("resume_checkpoint", ["{imagefolder}", *ASCL_IMAGENET, "--resume", "{ckpt}"],
           ["foreign.pth.tar", "does not match this model"], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("nan_loss", ["{imagefolder}", *ASCL_IMAGENET, "--epochs", "2", "--iters-per-epoch", "3", "-p", "1", "--lr",
                        "1e30", "--name", "nan", "--resume", "{keep}"], ["loss is", "of epoch 1"], None,
           ["{imagefolder}", *ASCL_IMAGENET, "--name", "nan"], "ascl/nan/checkpoint_0000.pth.tar")),
]

# --- PaCo (one process: --no-multiprocessing-distributed, as the other PaCo tests)
PACO = ["--image-size", "32", "-b", "4", "--moco-k", "16", "--moco-dim", "16", "--epochs", "1", "-j", "0", "--seed",
        "0", "--no-multiprocessing-distributed"]
PACO_CIFAR = ["--imb-factor", "0.01", "--alpha", "0.01", "--feat_dim", "64", *PACO]
PACO_LT = ["-a", "resnet32", "--feat_dim", "64", *PACO]
PACO_PLACES = ["--dataset", "places", "-a", "resnet18", "--feat_dim", "512", *PACO]
PACO_FULL = ["-a", "resnet18", *PACO]

CASES += [
    *rows("paco", "LT/paco_cifar.py",
          ("missing_data", ["--data", "{case}/nowhere", *PACO_CIFAR], ["nowhere", "does not exist"]),
          ("wrong_format", ["--data", "{cifar10_only}", *PACO_CIFAR], ["cifar-100-python"]),
          ("flags", ["--data", "{cifar}", *PACO_CIFAR, "--moco-k", "10"], ["--moco-k 10", "multiple of"]),
          ("flags", ["--data", "{cifar}", "--alpha", "0.01", "--no-multiprocessing-distributed"], ["--imb-factor"],
           {"variant": "imb_factor"}),
          ("resume_checkpoint", ["--data", "{cifar}", *PACO_CIFAR, "--resume", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("eval_checkpoint", ["--data", "{cifar}", *PACO_CIFAR, "--evaluate", "--reload", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt()),
          ("eval_checkpoint", ["--data", "{cifar}", *PACO_CIFAR, "--evaluate", "--reload", "{ckpt}"],
           ["foreign.pth.tar", "no tensor matches"], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("nan_loss", ["--data", "{cifar}", *PACO_CIFAR, "--epochs", "2", "--lr", "1e30", "--mark", "nan",
                        "--resume", "{keep}"],
           ["loss is", "step epoch 1 iteration"], None, ["--data", "{cifar}", *PACO_CIFAR, "--mark", "nan"],
           "paco/nan/moco_ckpt.pth.tar")),
    *rows("paco", "LT/paco_lt.py",
          ("missing_data", ["--data", "{case}/nowhere", "--list-dir", "{lt_lists}", *PACO_LT],
           ["nowhere", "does not exist"]),
          ("missing_data", ["--data", "{lt}", "--list-dir", "{case}/no_lists", *PACO_LT],
           ["no_lists", "ImageNet_LT_train.txt", "does not exist"], {"variant": "lists"}),
          ("wrong_format", ["--data", "{lt}", "--list-dir", "{lists}", *PACO_LT],
           ["ImageNet_LT_train.txt", "line 1", "relative/path label"], list_files("just-a-path-without-label\n")),
          ("wrong_format", ["--data", "{case}", "--list-dir", "{lt_lists}", *PACO_LT],
           ["image file", "does not exist"], {"variant": "absent_images"}),
          ("flags", ["--data", "{lt}", "--list-dir", "{lt_lists}", *PACO_LT, "--feat_dim", "2048"],
           ["--feat_dim 2048", "--feat_dim 64"]),
          ("resume_checkpoint", ["--data", "{lt}", "--list-dir", "{lt_lists}", *PACO_LT, "--resume", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt())),
    *rows("paco", "LT/paco_fp16_places.py",
          ("missing_data", ["--data", "{lt}", "--list-dir", "{case}/no_lists", *PACO_PLACES],
           ["no_lists", "Places_LT_train.txt", "does not exist"]),
          ("eval_checkpoint", ["--data", "{places}", "--list-dir", "{lt_lists}", *PACO_PLACES, "--reload_torch",
                               "{ckpt}"], ["bad.pth.tar", "corrupt"], corrupt()),
          ("eval_checkpoint", ["--data", "{places}", "--list-dir", "{lt_lists}", *PACO_PLACES, "--reload_torch",
                               "{ckpt}"], ["foreign.pth.tar", "no tensor matches"],
           foreign(other_model_checkpoint), {"variant": "foreign"})),
    *rows("paco", "Full-ImageNet/paco_imagenet.py",
          ("missing_data", ["--data", "{case}/nowhere", *PACO_FULL], ["nowhere", "does not exist"]),
          ("wrong_format", ["--data", "{bad}", *PACO_FULL], ["cannot read image file", "not a valid image"],
           imagefolder_with_unreadable_images),
          ("wrong_format", ["--data", "{bad}", *PACO_FULL], ["n01441764", "at least one image per class"],
           imagefolder_with_empty_class, {"variant": "empty_class"}),
          ("flags", ["--data", "{imagefolder}", *PACO_FULL, "--dataset", "inat"], ["implements only"]),
          ("resume_checkpoint", ["--data", "{imagefolder}", *PACO_FULL, "--resume", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt())),
]

# --- MCL
MCL_CIFAR = ["--data", "{cifar}", "--epochs", "1", "--max-iters", "2", "--batch-size", "8", "--num-workers", "0",
             "--no-progress"]
MCL_IMAGENET = ["--arch", "resnet18", "--image-size", "32", "--resize", "36", "--batch-size", "4", "--neg_k", "4",
                "--num-workers", "0", "--epochs", "1", "--max-iters", "1", "--no-progress"]
MCL_MOCO = ["-a", "resnet20_option_a", "--image-size", "32", "--batch-size", "4", "--moco-k", "8", "--moco-dim", "16",
            "--workers", "0", "--epochs", "1", "--max-iters", "1", "--no-progress"]
MCL_LINCLS = ["-a", "resnet20_option_a", "--image-size", "32", "--resize", "36", "--batch-size", "4", "--num-classes",
              "2", "--workers", "0", "--epochs", "1", "--max-iters", "1", "--no-progress"]

CASES += [
    *rows("mcl", "main_cifar.py",
          ("missing_data", [*MCL_CIFAR, "--data", "{case}/nowhere"], ["nowhere", "does not exist"]),
          ("wrong_format", [*MCL_CIFAR, "--data", "{bad}"], ["not a CIFAR python pickle"],
           cifar_with_garbage_pickles("cifar-100-python", ("train", "test", "meta"))),
          ("flags", [*MCL_CIFAR, "--number-net", "1"], ["--number-net 1", "at least 2 networks"]),
          ("flags", [*MCL_CIFAR, "--batch-size", "7"], ["--batch-size 7", "even"], {"variant": "odd_batch"}),
          ("flags", [*MCL_CIFAR, "--resume", "--evaluate"], ["mutually exclusive"], {"variant": "resume_evaluate"}),
          ("resume_checkpoint", [*MCL_CIFAR, "--resume", "--resume-checkpoint", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("resume_checkpoint", [*MCL_CIFAR, "--resume", "--resume-checkpoint", "{ckpt}"],
           ["foreign.pth.tar", "'net'"], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("eval_checkpoint", [*MCL_CIFAR, "--evaluate", "--evaluate-checkpoint", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt()),
          ("nan_loss", [*MCL_CIFAR, "--epochs", "2", "--max-iters", "3", "--print-freq", "1", "--init-lr", "1e30",
                        "--name", "nan", "--resume", "--resume-checkpoint", "{keep}"], ["loss is", "step 1:"], None,
           [*MCL_CIFAR, "--name", "nan"],
           "mcl/nan/resnet32.pth.tar")),
    *rows("mcl", "main_imagenet.py",
          ("missing_data", [*MCL_IMAGENET, "--data", "{case}/nowhere"], ["nowhere", "does not exist"]),
          ("wrong_format", [*MCL_IMAGENET, "--data", "{bad}"], ["n01441764", "at least one image per class"],
           imagefolder_with_empty_class),
          ("flags", [*MCL_IMAGENET, "--data", "{imagefolder}", "--number-net", "1"], ["--number-net 1"]),
          ("resume_checkpoint", [*MCL_IMAGENET, "--data", "{imagefolder}", "--resume", "--resume-checkpoint",
                                 "{ckpt}"], ["bad.pth.tar", "corrupt"], corrupt()),
          ("eval_checkpoint", [*MCL_IMAGENET, "--data", "{imagefolder}", "--evaluate", "--evaluate-checkpoint",
                               "{ckpt}"], ["bad.pth.tar", "corrupt"], corrupt()),
          ("nan_loss", [*MCL_IMAGENET, "--data", "{imagefolder}", "--batch-size", "2", "--epochs", "2", "--max-iters",
                        "3", "--print-freq", "1", "--init-lr", "1e30", "--name", "nan", "--resume",
                        "--resume-checkpoint", "{keep}"], ["loss is", "step 1:"], None,
           [*MCL_IMAGENET, "--data", "{imagefolder}", "--batch-size", "2", "--name", "nan"],
           "mcl/nan/resnet18.pth.tar")),
    *rows("mcl", "main_moco_mcl.py",
          ("missing_data", [*MCL_MOCO, "--data", "{case}/nowhere"], ["nowhere", "does not exist"]),
          ("wrong_format", [*MCL_MOCO, "--data", "{bad}"], ["n01441764", "at least one image per class"],
           imagefolder_with_empty_class),
          ("flags", [*MCL_MOCO, "--data", "{imagefolder}", "--moco-k", "10"], ["--moco-k 10", "not divisible"]),
          ("flags", [*MCL_MOCO, "--data", "{imagefolder}", "--number-net", "1"], ["--number-net 1"],
           {"variant": "one_net"}),
          ("flags", [*MCL_MOCO, "--data", "{imagefolder}", "-a", "resnet5O"], ["resnet5O"], {"variant": "arch"}),
          ("resume_checkpoint", [*MCL_MOCO, "--data", "{imagefolder}", "--resume", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt()),
          ("resume_checkpoint", [*MCL_MOCO, "--data", "{imagefolder}", "--resume", "{ckpt}"],
           ["foreign.pth.tar", "does not match this model"], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("nan_loss", [*MCL_MOCO, "--data", "{imagefolder}", "--batch-size", "2", "--moco-k", "4", "--epochs", "2",
                        "--max-iters", "3", "-p", "1", "--lr", "1e30", "--name", "nan", "--resume", "{keep}"],
           ["loss is", "step 1:"], None,
           [*MCL_MOCO, "--data", "{imagefolder}", "--batch-size", "2", "--moco-k", "4", "--name", "nan"],
           "mcl/nan/checkpoint_0000.pth.tar")),
    *rows("mcl", "main_lincls.py",
          ("missing_data", [*MCL_LINCLS, "--data", "{case}/nowhere"], ["nowhere", "does not exist"]),
          ("wrong_format", [*MCL_LINCLS, "--data", "{bad}"], ["n01441764", "at least one image per class"],
           imagefolder_with_empty_class),
          ("flags", [*MCL_LINCLS, "--data", "{imagefolder}", "--evaluate"], ["--evaluate needs --resume"]),
          ("flags", [*MCL_LINCLS, "--data", "{imagefolder}", "--pretrained", "{pretrained}", "--lr", "1e300"],
           ["beyond the float32 range", "--lr"], moco_checkpoint("module.encoder_q_0."), {"variant": "lr_overflow"}),
          ("eval_checkpoint", [*MCL_LINCLS, "--data", "{imagefolder}", "--pretrained", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt()),
          ("eval_checkpoint", [*MCL_LINCLS, "--data", "{imagefolder}", "--pretrained", "{ckpt}"],
           ["foreign.pth.tar", "module.encoder_q_0."], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("eval_checkpoint", [*MCL_LINCLS, "--data", "{imagefolder}", "--pretrained", "{case}/missing.pth.tar"],
           ["missing.pth.tar", "does not exist"], {"variant": "missing"}),
          ("resume_checkpoint", [*MCL_LINCLS, "--data", "{imagefolder}", "--resume", "{ckpt}"],
           ["bad.pth.tar", "corrupt"], corrupt()),
          ("nan_loss", [*MCL_LINCLS, "--data", "{imagefolder}", "--pretrained", "{pretrained}", "--batch-size", "2",
                        "--epochs", "2", "--max-iters", "3", "-p", "1", "--lr", "3e38", "--name", "nan", "--resume",
                        "{keep}"],
           ["loss is", "step 1:"], moco_checkpoint("module.encoder_q_0."),
           [*MCL_LINCLS, "--data", "{imagefolder}", "--pretrained", "{pretrained}", "--batch-size", "2", "--name",
            "nan"], "mcl/nan/lincls_mcl_checkpoint_0000.pth.tar")),
]

# --- AttentioNCE
ATT = ["--arch", "resnet20_option_a", "--feature_dim", "16", "--workers", "0", "--seed", "0", "--crop_size", "16",
       "--batch_size", "4", "--epochs", "1", "--steps_per_epoch", "2"]
ATT_LIN = ["--arch", "resnet20_option_a", "--batch_size", "8", "--epochs", "1", "--steps_per_epoch", "1",
           "--workers", "0", "--crop_size", "16"]


def tiny_without_annotations(case_dir: Path, data: dict) -> dict:
    from common.data import fake
    root = fake.write_tinyimagenet(case_dir / "tiny", n_classes=2, n_train_per_class=4, n_val_per_class=2, size=32)
    (case_dir / "tiny" / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    return {"bad": root}


CASES += [
    *rows("attentionce", "image/main.py",
          ("missing_data", ["--root", "{case}/nowhere", *ATT], ["nowhere", "does not exist"]),
          ("wrong_format", ["--root", "{bad}", *ATT], ["not a CIFAR python pickle"],
           cifar_with_garbage_pickles("cifar-10-batches-py", CIFAR10_FILES)),
          ("flags", ["--root", "{cifar}", *ATT, "--d_pos", "0"], ["--d_pos", "positive"]),
          ("flags", ["--root", "{cifar}", *ATT, "--batch_size", "1"], ["--batch_size 1"], {"variant": "batch1"}),
          ("flags", ["--root", "{cifar}", *ATT, "--arch", "resnet5O"], ["resnet5O"], {"variant": "arch"}),
          # rejected in main(), before any process is spawned
          ("flags", ["--root", "{cifar}", *ATT, "--batch_size", "5", "--multiprocessing-distributed", "--world-size",
                     "1", "--rank", "0", "--nproc-per-node", "2"], ["--batch_size 5", "not divisible", "2 processes"],
           {"variant": "processes"}),
          ("flags", ["--root", "{cifar}", *ATT, "--loss", "simclr", "--repeat_view4_bug"], ["--repeat_view4_bug"],
           {"variant": "simclr_view4"}),
          ("resume_checkpoint", ["--root", "{cifar}", *ATT, "--resume", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("resume_checkpoint", ["--root", "{cifar}", *ATT, "--resume", "{ckpt}"],
           ["foreign.pth.tar", "does not match this model"], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("nan_loss", ["--root", "{cifar}", *ATT, "--steps_per_epoch", "3", "--print_freq", "1", "--lr", "1e30",
                        "--name", "nan", "--no-auto_resume"], ["loss is nan", "at step", "--temperature"], None,
           ["--root", "{cifar}", *ATT, "--name", "nan"], "attentionce/nan/checkpoint.pth")),
    *rows("attentionce", "image/linear.py",
          ("missing_data", ["--root", "{case}/nowhere", "--model_path", "{model}", *ATT_LIN],
           ["nowhere", "does not exist"], attentionce_model),
          ("wrong_format", ["--root", "{cifar}", "--dataset_name", "stl10", "--model_path", "{model}", *ATT_LIN],
           ["stl10_binary"], attentionce_model),
          ("flags", ["--root", "{cifar}", "--dataset_name", "imagenet", "--model_path", "{model}", *ATT_LIN],
           ["Invalid dataset name", "imagenet"], attentionce_model),
          ("flags", ["--root", "{cifar}", "--model_path", "{model}", *ATT_LIN, "--arch", "resnet5O"], ["resnet5O"],
           attentionce_model, {"variant": "arch"}),
          ("eval_checkpoint", ["--root", "{cifar}", "--model_path", "{ckpt}", *ATT_LIN], ["bad.pth.tar", "corrupt"],
           corrupt()),
          ("eval_checkpoint", ["--root", "{cifar}", "--model_path", "{ckpt}", *ATT_LIN],
           ["foreign.pth.tar", "not an AttentioNCE model"], foreign(other_model_checkpoint), {"variant": "foreign"}),
          ("eval_checkpoint", ["--root", "{cifar}", *ATT_LIN], ["does not exist"], {"variant": "default_path"}),
          ("nan_loss", ["--root", "{cifar}", "--model_path", "{model}", *ATT_LIN, "--steps_per_epoch", "3", "--lr",
                        "1e30"], ["loss is", "at step"], attentionce_model)),
    *rows("attentionce", "tiny-Imagenet/main.py",
          ("missing_data", ["--root", "{case}/nowhere", *ATT], ["nowhere", "does not exist"]),
          ("wrong_format", ["--root", "{imagefolder}", *ATT], ["tiny-imagenet-200", "wnids.txt"]),
          ("resume_checkpoint", ["--root", "{tiny}", *ATT, "--resume", "{ckpt}"], ["bad.pth.tar", "corrupt"],
           corrupt())),
    *rows("attentionce", "tiny-Imagenet/linear.py",
          ("missing_data", ["--root", "{case}/nowhere", "--model_path", "{model}", *ATT_LIN],
           ["nowhere", "does not exist"], attentionce_model),
          ("wrong_format", ["--root", "{bad}", "--model_path", "{model}", *ATT_LIN], ["val_annotations.txt"],
           combine(tiny_without_annotations, attentionce_model)),
          ("eval_checkpoint", ["--root", "{tiny}", *ATT_LIN], ["cifar10_SimCLR_model_128_54.pth", "does not exist"])),
]


# ------------------------------------------------------------------------------------------------------ running

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    from common.data import fake
    root = tmp_path_factory.mktemp("bad_input_data")
    paths = {"cifar": fake.write_cifar10(root / "cifar", n_train=48, n_test=10)}
    fake.write_cifar100(root / "cifar", n_train=200, n_test=20)
    paths["cifar10_only"] = fake.write_cifar10(root / "cifar10_only", n_train=10, n_test=10)
    paths["stl10"] = fake.write_stl10(root / "stl10", n_train=10, n_test=10, n_unlabeled=10)
    paths["tiny"] = fake.write_tinyimagenet(root / "tiny", n_classes=2, n_train_per_class=4, n_val_per_class=2,
                                            size=32)
    paths["imagefolder"] = fake.write_imagefolder(root / "imagefolder", n_classes=2, n_per_class=4, size=32)
    paths["webvision"] = fake.write_webvision(root / "webvision", n_classes=2, n_google_per_class=2,
                                              n_flickr_per_class=2)
    lt = fake.write_list_dataset(root / "lt", "imagenet_lt", n_classes=3, list_dir=root / "lt_lists" / "ImageNet_LT")
    places = fake.write_list_dataset(root / "places", "places_lt", n_classes=3,
                                     list_dir=root / "lt_lists" / "Places_LT")
    paths["lt"], paths["places"], paths["lt_lists"] = lt["root"], places["root"], str(root / "lt_lists")
    return {k: str(v) for k, v in paths.items()}


def _case_dir(base: Path, case: Case) -> Path:
    return base / case.id.replace("/", "_").replace(":", "__")


def _format(argv, values: dict) -> list:
    return [a.format(**values) if isinstance(a, str) else str(a) for a in argv]


def _is_checkpoint(path: str) -> bool:
    return path.endswith(CHECKPOINT_SUFFIXES)


@pytest.fixture(scope="module")
def results(request, data, tmp_path_factory):
    """``results(case)`` → the entry_batch record of the row (and of its setup), running the row's method batch
    on first use."""
    with scratch_dir(request, tmp_path_factory, "bad_input_cases") as base:
        yield from _results(data, base)


def _results(data, base):
    done: dict = {}
    timings: dict = {}
    walls: dict = {}

    def run_method(method: str) -> None:
        start = time.time()
        jobs = []
        for case in (c for c in CASES if c.method == method):
            case_dir = _case_dir(base, case)
            case_dir.mkdir(parents=True)
            values = {**data, "case": str(case_dir)}
            if case.make is not None:
                values.update(case.make(case_dir, data))
            keep = str(case_dir / case.keep) if case.keep else ""
            common = dict(cwd=str(ROOT / method), entry=case.entry, watch=str(case_dir), timeout=300,
                          env={"CL_RUNS_DIR": str(case_dir), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                               "CL_ORIGINAL_OUTPUTS": str(case_dir / "original_outputs")},
                          globs={"keep": keep} if keep else {})
            if case.setup is not None:
                jobs.append(dict(common, id=case.id + "#setup", argv=_format(case.setup, {**values, "keep": "{keep}"})))
            jobs.append(dict(common, id=case.id, argv=_format(case.argv, {**values, "keep": "{keep}"})))
        made = time.time()
        jobs_file, results_file = base / f"{method}_jobs.json", base / f"{method}_results.json"
        jobs_file.write_text(json.dumps(jobs))
        cmd = [sys.executable, str(ROOT / "ci" / "entry_batch.py"), *(["--isolated"] if ISOLATED else []),
               str(jobs_file), str(results_file)]
        proc = warm.run(cmd, ROOT, smoke_env(), 1800)   # the batch interpreter itself starts warm (ci/warm.py)
        assert proc.returncode == 0, f"entry_batch for {method} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        done.update(json.loads(results_file.read_text()))
        for job_id, record in done.items():
            timings[job_id] = record["seconds"]
        walls[method] = (made - start, time.time() - made)

    def get(case: Case) -> tuple:
        if case.id not in done:
            run_method(case.method)
        return done[case.id], done.get(case.id + "#setup"), _case_dir(base, case)

    yield get
    if timings:
        by_method: dict = {}
        for job_id, seconds in timings.items():
            by_method[job_id.split("/")[0]] = by_method.get(job_id.split("/")[0], 0.0) + seconds
        print("\nbad-input rows, seconds inside the entry points per method:",
              ", ".join(f"{m} {s:.1f}" for m, s in sorted(by_method.items())),
              f"(total {sum(by_method.values()):.1f})")
        print("fixtures / batch wall time per method:",
              ", ".join(f"{m} {a:.1f} / {b:.1f}" for m, (a, b) in sorted(walls.items())))
        for job_id, seconds in sorted(timings.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {seconds:6.2f} s  {job_id}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, results):
    record, setup, case_dir = results(case)
    output = record["stdout"] + record["stderr"]
    if setup is not None:
        assert setup["returncode"] == 0, f"setup run failed:\n{(setup['stdout'] + setup['stderr'])[-3000:]}"
        kept = sorted(case_dir.glob(case.keep))
        assert len(kept) == 1, f"setup wrote {kept} for {case.keep!r}"
    assert "Traceback" not in output, output[-4000:]
    assert record["returncode"] == 2, f"exit code {record['returncode']}:\n{output[-3000:]}"
    lines = record["stderr"].strip().splitlines()
    assert lines and "error:" in lines[-1], f"no error line last on stderr:\n{record['stderr'][-3000:]}"
    for needle in case.expect:
        assert needle in lines[-1], f"{needle!r} not in the error line: {lines[-1]}"

    before, after = record["before"], record["after"]
    created = sorted(p for p in after if p not in before and _is_checkpoint(p))
    assert not created, f"checkpoint-like files written by a failing run: {created}"
    fixtures = (setup or record)["before"]   # what make() wrote, before any run of the row
    protected = [p for p in before if _is_checkpoint(p) or p in fixtures]
    changed = sorted(p for p in protected if after.get(p) != before[p])
    assert not changed, f"checkpoint / fixture files changed or removed: {changed}"
    left = [p for p in case.absent if (case_dir / p).exists()]
    assert not left, f"the failing run left {left} behind"
    if setup is not None:
        from common.checkpoint import load_checkpoint
        assert "epoch" in load_checkpoint(str(sorted(case_dir.glob(case.keep))[0]))
