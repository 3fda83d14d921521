"""The originals' documented command lines, run as typed (issue 16): one row per command line of each original's
README and shell scripts (spec ``/work/shared/reference/<method>.md`` §c; the project mirrors the scripts in
``<method>/sh/``), run from the folder the original ran it in (``cd image && python main.py ...``), on CPU, on
tiny fake data in the real on-disk format (``common.data.fake``).

What a row may change, and nothing else:

* **data placeholders** (``[data]``, ``<imagenet>``, ``data/CIFAR100``) become the fake data; where the original
  read its data from a fixed default location (``../data``, ``./data``, ``./imagenet_inat/data``), the row appends
  the project's data flag (``--root`` / ``--data_folder`` / ``--data``) pointing at the fake data instead of writing
  into the source tree (``data=``);
* the rendezvous port of ``--dist-url tcp://localhost:10001`` (README lines) or ``$((10000 + RANDOM))`` (PaCo's
  scripts) is a free port (``{port}``): the five batches, and other tests, run at the same time on one machine;
* **checkpoint placeholders** (``[ckpt]``, ``<dir>/checkpoint_0199.pth.tar``) become the file the row's
  predecessor wrote, at the path the original's next command expects (``chain``);
* a command too heavy for a CPU even for one step gets the smallest honest change, written in the row
  (``change=``, with the reason).

Every row must exit 0 without a traceback; a GPU-selecting flag (``--gpu``, ``--gpus``, ``--gpuid``, ``--gpu-ids``)
must print exactly one CPU-fallback notice; the row's outputs must exist where the original's next command reads
them (``expect``). Outputs go under the test's ``$CL_RUNS_DIR`` / ``$CL_ORIGINAL_OUTPUTS`` (``ci.smoke.smoke_env``),
never into the source tree.

Speed: ``CL_SHORT_RUN=1`` (``common.faults``) makes every training loader yield one batch and every epoch loop
run only its last epoch, so a 400-epoch command finishes in seconds while running all of its code and writing
its final files under their final names; the rows of one method run in one interpreter (``ci/entry_batch.py``),
in table order (a chained row follows its predecessor), and the five methods' interpreters run at the same time. ``CL_ORIGINAL_COMMANDS_ISOLATED=1`` runs every row in its
own ``python`` process instead (same assertions). ``-s`` prints each row's time.

    python -m pytest tests/test_original_commands.py -q --durations=5
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ci.smoke import ROOT, scratch_dir, smoke_env

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback notice needs a machine without CUDA")]

ISOLATED = os.environ.get("CL_ORIGINAL_COMMANDS_ISOLATED") == "1"
NOTICE = re.compile(r"^notice: \S+ .+ selects GPUs but CUDA is not available; running on the CPU$", re.M)
GPU_FLAG = re.compile(r"(^|\s)--gpu(s|id|-ids|_ids|-id)?(\s|=|$)")


@dataclass(frozen=True)
class Command:
    """``line``: the documented command as typed, ``python <entry> <args>`` (placeholders written ``{name}``: the
    fake data set ``name`` or, for ``{runs}`` / ``{outputs}``, the test's run and original-output folders).
    ``cwd``: the folder (relative to the method folder) the original ran it from. ``source``: README or script.
    ``data``: arguments appended to locate the fake data where the original used a fixed default location.
    ``change``: arguments appended as the smallest honest change of a command too heavy for a CPU, ``why`` says
    why. ``expect``: files (globs, formatted like ``line``) the command must leave for the next one. ``globs``:
    ``(NAME, pattern)`` pairs: ``{NAME}`` in the arguments becomes the newest file matching ``pattern`` when the row
    starts (the checkpoint an earlier row wrote, for a placeholder such as ``[ckpt]``). ``fails``: a documented
    command that fails in the original as well: it must stop with exit 2 and this text in its one ``error:`` line."""
    method: str
    source: str
    cwd: str
    line: str
    data: tuple = ()
    change: tuple = ()
    why: str = ""
    expect: tuple = ()
    globs: tuple = ()
    fails: str = ""

    @property
    def id(self) -> str:
        return f"{self.method}/{self.cwd}: {self.line[len('python '):]}"

    def argv(self, paths: dict) -> tuple[str, list[str]]:
        paths = {**paths, **{name: "{" + name + "}" for name, _ in self.globs}}
        words = [w.format(**paths) for w in shlex.split(self.line)]
        assert words[0] == "python", self.line
        return words[1], words[2:] + [a.format(**paths) for a in (*self.data, *self.change)]


# ------------------------------------------------------------------------------------------------- the table

# One pre-training step of the README's batch (256 images x 6 views through a ResNet-50) costs ~2 CPU-minutes: the
# pre-training rows run with --batch_size 2 (the file name carries the batch: ..._4model_2_400_...), and the linear
# row reads that file under the name the pre-training row wrote.
ATTENTIONCE_BATCH = ("--batch_size", "2")
ATTENTIONCE_WHY = "batch 256 x 6 views of ResNet-50 is ~2 CPU-minutes per step"
ATTENTIONCE = [
    # README: pre-training, run inside image/ (CIFAR10, STL10, CIFAR100) and tiny-Imagenet/; data at the default
    # ../data (../tiny-imagenet-200) replaced by --root; checkpoints ../results/<dataset>/<dataset>_SimCLR_4model_...
    Command("attentionce", "README", "image", "python main.py --dataset_name cifar10 --d_pos 1 --d_neg 10",
            data=("--root", "{cifar10}"), change=ATTENTIONCE_BATCH, why=ATTENTIONCE_WHY,
            expect=("{outputs}/results/cifar10/cifar10_SimCLR_4model_2_400_1.0_10.0.pth",)),
    Command("attentionce", "README", "image", "python main.py --dataset_name stl10 --d_pos 2 --d_neg 0.5",
            data=("--root", "{stl10}"), change=ATTENTIONCE_BATCH, why=ATTENTIONCE_WHY,
            expect=("{outputs}/results/stl10/stl10_SimCLR_4model_2_400_2.0_0.5.pth",)),
    Command("attentionce", "README", "image", "python main.py --dataset_name cifar100 --d_pos 1 --d_neg 10",
            data=("--root", "{cifar100}"), change=ATTENTIONCE_BATCH, why=ATTENTIONCE_WHY,
            expect=("{outputs}/results/cifar100/cifar100_SimCLR_4model_2_400_1.0_10.0.pth",)),
    Command("attentionce", "README", "tiny-Imagenet", "python main.py --dataset_name tinyImageNet --d_pos 4 --d_neg 1",
            data=("--root", "{tinyimagenet}"), change=ATTENTIONCE_BATCH, why=ATTENTIONCE_WHY,
            expect=("{outputs}/results/tinyImageNet/tinyImageNet_SimCLR_4model_2_400_4.0_1.0.pth",)),
    # README: linear evaluation of the STL10 checkpoint written above, given as the README gives it (relative to
    # image/); the file name's batch follows the pre-training row's change
    Command("attentionce", "README", "image",
            "python linear.py --dataset_name stl10 --model_path ../results/stl10/stl10_SimCLR_4model_256_400_2.0_0.5.pth",
            data=("--root", "{stl10}"),
            change=("--model_path", "../results/stl10/stl10_SimCLR_4model_2_400_2.0_0.5.pth"),
            why="the pre-training row's file (its batch is 2, see above)"),
]


# ImageNet-scale rows: one CPU step of the documented batch at 224 px costs minutes (ResNet-50: ~12 GFLOP per image
# forward and backward); they run with a batch of 2 at 32 px, which keeps every layer and every code path
SMALL_224 = ("--batch-size", "2", "--image-size", "32")
PX224 = "at 224 px is minutes per CPU step: batch 2 at 32 px"

# CACR: no shell scripts; README commands (spec c.1-c.3). Small scale runs inside small_scale_experiments/<dataset>/
# with its data at the default ./data (replaced by --data_folder); the encoder lands at the README's
# ./results/ours/Ny4_Ns128/<terms>/encoder.pth, which linear_eval.py --encoder_checkpoint is given.
CACR_TERMS = "tau_pos1.0_tau_neg{}_alpha1.0_beta1.0_choice_full_with_debiased_False{}"
CACR_SMALL = [(ds, tau_neg, CACR_TERMS.format(tau_neg, "" if ds == "stl10" else "_with_imbalanced_False"))
              for ds, tau_neg in (("cifar10", "0.9"), ("cifar100", "2.0"), ("stl10", "2.0"))]
CACR = [
    *[row for ds, tau_neg, terms in CACR_SMALL for row in (
        Command("cacr", "small_scale_experiments/README", f"small_scale_experiments/{ds}",
                f"python main_ours.py --Ny 4 --Ns 128 --alpha 1.0 --beta 1.0 --tau_pos 1.0 --tau_neg {tau_neg} --gpus 0",
                data=("--data_folder", "{%s}" % ds),
                expect=(f"{{outputs}}/{ds}/results/ours/Ny4_Ns128/{terms}/encoder.pth",)),
        Command("cacr", "small_scale_experiments/README", f"small_scale_experiments/{ds}",
                f"python linear_eval.py --gpus 0 --encoder_checkpoint ./results/ours/Ny4_Ns128/{terms}/encoder.pth",
                data=("--data_folder", "{%s}" % ds)))],
    # large scale, label-shifted queue MoCo (spec c.2): ImageNet in imagenet/, WebVision in webvision/
    *[Command("cacr", "large_scale_shift_experiments/README", f"large_scale_shift_experiments/{folder}",
              "python main_ours.py -a resnet50 --lr 0.03 --Ny 4 --Ns 256 --gpus 0 1 2 3 4 5 6 7 --moco-k 65536 "
              "--tau_pos 1.0 --tau_neg 2.0 --alpha 1.0 --beta 1.0 --mlp --aug-plus --cos --dist-url "
              "tcp://localhost:{port} --multiprocessing-distributed --world-size 1 --rank 0 {%s}" % data,
              change=("--Ns", "4", "--image-size", "32"),
              why=f"batch 256 x 5 views {PX224}; batch 4, not 2: with 2 images BatchNorm's 1x1 last stage blows the "
                  "weights up in one step and the next row's linear head sees NaN",
              expect=(f"{{outputs}}/{folder}/results/ours/**/checkpoint_0199.pth.tar",))
      for folder, data in (("imagenet", "imagenet"), ("webvision", "webvision"))],
    Command("cacr", "large_scale_shift_experiments/README", "large_scale_shift_experiments/imagenet",
            "python main_lincls.py -a resnet50 --lr 30.0 --batch-size 256 --gpus 0 1 2 3 4 5 6 7 --pretrained {CKPT} "
            "--dist-url tcp://localhost:{port} --multiprocessing-distributed --world-size 1 --rank 0 {imagenet}",
            change=SMALL_224, why=f"batch 256 {PX224}", globs=(("CKPT", "{outputs}/imagenet/results/ours/**/checkpoint_0199.pth.tar"),)),
    # ImageNet pre-training (spec c.3), run inside imagenet_pretraining/
    Command("cacr", "imagenet_pretraining/README", "imagenet_pretraining",
            "python main_pretrain.py --moco-m-cos --crop-min=.2 --lr=.3 --wd=1.5e-6 --moco-m=0.996 --epochs=1000 "
            "--dist-url=tcp://localhost:{port} --multiprocessing-distributed --world-size=1 --rank=0 "
            "--output_dir={runs}/pretrain_r50 {imagenet}",
            change=SMALL_224, why=f"batch 4096 {PX224}",
            expect=("{runs}/pretrain_r50/checkpoint_0999.pth.tar",)),
    Command("cacr", "imagenet_pretraining/README", "imagenet_pretraining",
            "python main_pretrain.py -a vit_base --optimizer=adamw --lr=1.5e-4 --weight-decay=.1 --epochs=300 "
            "--warmup-epochs=40 --moco-m-cos --moco-t=.2 --multiprocessing-distributed --world-size=1 --rank=0 "
            "--output_dir={runs}/pretrain_vit {imagenet}",
            change=(*SMALL_224, "-a", "vit_small"),
            why=f"batch 4096 {PX224}; ViT-S/16 (the same code path) for ViT-B/16, whose 1 GB checkpoint write alone "
                "took ~20 s of the suite",
            expect=("{runs}/pretrain_vit/checkpoint_0299.pth.tar",)),
    Command("cacr", "imagenet_pretraining/README", "imagenet_pretraining",
            "python main_knn.py --arch vit_base --pretrained_weights {runs}/pretrain_vit/checkpoint_0299.pth.tar "
            "--data_path {imagenet} --dump_features {runs}/knn_vit",
            change=("--image-size", "32", "--arch", "vit_small"),
            why=f"README: python -m torch.distributed.launch --nproc_per_node=[gpus] main_knn.py ...: one process is "
                f"the python line; {PX224}; the pre-training row's ViT-S/16",
            expect=("{runs}/knn_vit/*",)),
    Command("cacr", "imagenet_pretraining/README", "imagenet_pretraining",
            "python main_lincls.py -a resnet50 --lr 0.1 --dist-url tcp://localhost:{port} --multiprocessing-distributed "
            "--world-size 1 --rank 0 --pretrained {runs}/pretrain_r50/checkpoint_0999.pth.tar "
            "--output_dir {runs}/lincls_r50 {imagenet}",
            change=SMALL_224, why=f"batch 1024 {PX224}"),
    Command("cacr", "spec b.9 (convert_to_deit.py usage)", "imagenet_pretraining",
            "python convert_to_deit.py --input {runs}/pretrain_vit/checkpoint_0299.pth.tar --output {runs}/deit/vit.pth",
            expect=("{runs}/deit/vit.pth",)),
]

# ASCL: README commands (spec c; no shell scripts, no ImageNet command: "use the official MoCo repo with this
# builder.py"). Batch 256 x 2 views of ResNet-18 is ~minutes per CPU step: batch 8 (a multiple of SplitBatchNorm's 8
# splits); pre-training ends with the 100-epoch linear evaluation, as the original.
ASCL_LINE = ("--epochs 200 --gpuid 0 --dataset cifar100 --data_path {cifar100} --K 5 --type ascl --t1 0.1 --t2 0.05 "
             "--aug weak_augment")
ASCL = [
    Command("ascl", "README", ".", f"python main.py {ASCL_LINE}", change=("--batch-size", "8"),
            why="batch 256 of ResNet-18 x 2 views is minutes per CPU step"),
    # README "the same command with main_simple.py": the original's main_simple parser read --K 5 as a queue of 5
    # and failed its assert (quirk 5); here --K is the neighbour count in both entry points, so it runs as typed.
    # Same result-affecting flags as the row above, so it finds that finished run and reports it complete;
    # ascl/tests/test_smoke.py trains main_simple.py's own script and checks K=5 in its checkpoint
    Command("ascl", "README", ".", f"python main_simple.py {ASCL_LINE}", change=("--batch-size", "8"),
            why="batch 256 of ResNet-18 x 2 views is minutes per CPU step"),
]

# MCL: every python line of the four scripts (spec c) and the README's MoCo-MCL pre-training + linear evaluation,
# run in the repository root as the scripts are; CIFAR data at ./data/ and ImageNet at ./data/ImageNet/ replaced.
MCL_CIFAR_ARCHS = ("resnet32", "resnet56", "resnet110", "wrn_16_2", "wrn_40_2", "hcgnet_A1", "ShuffleNetV2_05x",
                   "ShuffleNetV2_1x")
MCL_TERMS = "--alpha 0.1 --gamma 1.0 --beta 0.1 --lam 1.0"
MCL_SMALL = ("--batch-size", "8")
MCL_WHY = "batch 128 of N networks is seconds to minutes per CPU step: batch 8"
MCL = [
    *[Command("mcl", "scripts/train_cifar_baseline.sh", ".",
              f"python main_cifar.py --arch {arch} --number-net 2 --alpha 0 --gamma 0 --beta 0 --lam 0 --data {{cifar100}}",
              change=MCL_SMALL, why=MCL_WHY) for arch in MCL_CIFAR_ARCHS],
    *[Command("mcl", "scripts/train_cifar_mcl.sh", ".",
              f"python main_cifar.py --arch {arch} --number-net {n} {MCL_TERMS} --data {{cifar100}}",
              change=MCL_SMALL, why=MCL_WHY) for n in (2, 4) for arch in MCL_CIFAR_ARCHS],
    *[Command("mcl", "scripts/train_cifar_mcl_logit.sh", ".",
              f"python main_cifar.py --arch {arch} --number-net 4 --logit-distill {MCL_TERMS} --data {{cifar100}}",
              change=MCL_SMALL, why=MCL_WHY)
      for arch in ("wrn_16_2", "wrn_40_2", "wrn_28_4", "ShuffleNetV2_1x", "hcgnet_A2")],
    *[Command("mcl", "scripts/train_imagenet_mcl.sh", ".",
              f"python main_imagenet.py --arch {arch} --number-net {n} {MCL_TERMS} --data {{imagenet}}",
              change=SMALL_224, why=f"batch 256 {PX224}") for n in (2, 4) for arch in ("resnet18", "resnet34")],
    Command("mcl", "README", ".",
            "python main_moco_mcl.py -a resnet18 --lr 0.03 --batch-size 256 --number-net 2 --dist-url tcp://localhost:{port} "
            "--multiprocessing-distributed --world-size 1 --rank 0 --gpu-ids 0,1,2,3,4,5,6,7 --data {imagenet}",
            change=SMALL_224, why=f"batch 256 {PX224}", expect=("{outputs}/mcl/checkpoint/checkpoint_0199.pth.tar",)),
    Command("mcl", "README", ".",
            "python main_lincls.py -a resnet18 --lr 30.0 --batch-size 256 --pretrained checkpoint/checkpoint_0199.pth.tar "
            "--dist-url tcp://localhost:{port} --multiprocessing-distributed --world-size 1 --rank 0 "
            "--gpu-ids 0,1,2,3,4,5,6,7 --data {imagenet}",
            change=SMALL_224, why=f"batch 256 {PX224}"),
]

# PaCo: the python line of every LT/sh and Full-ImageNet/sh script (spec c), run from LT/ or Full-ImageNet/ with
# the scripts' random port; the lists the originals read from ./imagenet_inat/data become the fake ones
# (--list-dir), the image root --data. Eval scripts repeat the train flags plus --evaluate --reload <weights>: the
# weights are the checkpoint the matching train row wrote.
PACO_LT = ("--epochs 400 -b 128 --wd 5e-4 --warmup_epochs 10 --alpha 0.05 --beta 1.0 --gamma 1.0 --moco-k 8192 "
           "--moco-dim 128 --mlp --aug-plus --cos --randaug_m 10 --feat_dim 2048 "
           "--dist-url tcp://localhost:{port} --multiprocessing-distributed --world-size 1 --rank 0")
PACO_IMAGENET_LT = [  # script, arch, lr, moco-t, aug, randaug_n
    ("ImageNetLT_R50", "resnet50", "0.02", "0.2", "randcls_sim", "2"),
    ("ImageNetLT_X50", "resnext50_32x4d", "0.02", "0.07", "randclsstack_sim", "2"),
    ("ImageNetLT_X101", "resnext101_32x4d", "0.03", "0.2", "randclsstack_sim", "3"),
]
PACO_FULL = ("--dataset imagenet --epochs 400 -b 256 --lr 0.04 --wd 1e-4 --warmup_epochs 10 --alpha 0.05 --beta 1.0 "
             "--gamma 1.0 --moco-t 0.2 --moco-k 8192 --mlp --aug-plus --cos "
             "--dist-url tcp://localhost:{port} --multiprocessing-distributed --world-size 1 --rank 0")
PACO_FULL_NETS = [("resnet50", "randcls_sim", "2 --rand_m 10", ""), ("resnet101", "randcls_sim", "2 --rand_m 10", ""),
                  ("resnet200", "randclsstack_sim", "3 --rand_m 12", " --fp16")]
PACO_LT_DATA = {"imagenet": ("--data", "{imagenet_lt}", "--list-dir", "{lists}"),
                "inat": ("--data", "{inat}", "--list-dir", "{lists}"),
                "places": ("--data", "{places_lt}", "--list-dir", "{lists}")}
PACO = [
    *[row for script, arch, lr, t, aug, n in PACO_IMAGENET_LT for row in (
        Command("paco", f"LT/sh/{script.replace('_', '_train_')}.sh", "LT",
                f"python paco_lt.py --dataset imagenet -a {arch} --lr {lr} --moco-t {t} --aug {aug} --randaug_n {n} "
                f"--num_classes 1000 --mark {script} {PACO_LT}",
                data=PACO_LT_DATA["imagenet"], change=SMALL_224, why=f"batch 128 {PX224}",
                expect=(f"{{runs}}/paco/{script}/**/moco_ckpt.pth.tar",)),
        Command("paco", f"LT/sh/{script.replace('_', '_eval_')}.sh", "LT",
                f"python paco_lt.py --dataset imagenet -a {arch} --lr {lr} --moco-t {t} --aug {aug} --randaug_n {n} "
                f"--num_classes 1000 --mark {script} {PACO_LT} --evaluate --reload {{CKPT}}",
                data=PACO_LT_DATA["imagenet"], change=SMALL_224, why=f"batch 128 {PX224}",
                globs=(("CKPT", f"{{runs}}/paco/{script}/**/moco_ckpt.pth.tar"),)))],
    Command("paco", "LT/sh/Inat_train_R50.sh", "LT",
            f"python paco_lt.py --dataset inat -a resnet50 --lr 0.02 --wd 1e-4 --moco-t 0.2 --aug randcls_sim "
            f"--randaug_n 2 --num_classes 8142 --mark Inat_R50 {PACO_LT}".replace("--wd 5e-4 ", ""),
            data=PACO_LT_DATA["inat"], change=SMALL_224, why=f"batch 128 {PX224}"),
    Command("paco", "LT/sh/PlacesLT_train_R152.sh", "LT",
            "python paco_fp16_places.py --dataset places -a resnet152 --epochs 30 -b 128 --lr 0.02 --wd 5e-4 "
            "--warmup_epochs 5 --alpha 0.05 --beta 1.0 --gamma 1.0 --moco-t 0.2 --moco-k 8192 --moco-dim 128 --mlp "
            "--aug-plus --cos --aug sim_sim --num_classes 365 --feat_dim 2048 --mark PlacesLT_R152 --fp16 "
            "--reload_torch {resnet152} --dist-url tcp://localhost:{port} --multiprocessing-distributed "
            "--world-size 1 --rank 0",
            data=PACO_LT_DATA["places"], change=SMALL_224, why=f"batch 128 {PX224}",
            expect=("{runs}/paco/PlacesLT_R152/**/moco_ckpt.pth.tar",)),
    Command("paco", "LT/sh/PlacesLT_eval_R152.sh", "LT",
            "python paco_fp16_places.py --dataset places -a resnet152 --epochs 30 -b 128 --lr 0.02 --wd 5e-4 "
            "--warmup_epochs 5 --alpha 0.05 --beta 1.0 --gamma 1.0 --moco-t 0.2 --moco-k 8192 --moco-dim 128 --mlp "
            "--aug-plus --cos --aug sim_sim --num_classes 365 --feat_dim 2048 --mark PlacesLT_R152 "
            "--dist-url tcp://localhost:{port} --multiprocessing-distributed --world-size 1 --rank 0 "
            "--evaluate --reload {CKPT}",
            data=PACO_LT_DATA["places"], change=SMALL_224, why=f"batch 128 {PX224}",
            globs=(("CKPT", "{runs}/paco/PlacesLT_R152/**/moco_ckpt.pth.tar"),)),
    *[Command("paco", f"LT/sh/CIFAR100_train_imb{imb}.sh", "LT",
              f"python paco_cifar.py --data {{cifar100_lt}} --dataset cifar100 -a resnet32 --epochs 400 -b 128 --lr 0.05 "
              f"--wd 5e-4 --warmup_epochs 10 --alpha 0.01 --beta 1.0 --gamma 1.0 --moco-t 0.05 --moco-k 1024 "
              f"--moco-dim 32 --mlp --aug cifar100 --imb-factor {imb} --num_classes 100 --feat_dim 64 "
              f"--mark CIFAR100_imb{imb} --dist-url tcp://localhost:{{port}} --multiprocessing-distributed "
              f"--world-size 1 --rank 0", change=("-b", "8"), why="batch 128 of ResNet-32 x 2 views: batch 8")
      for imb in ("0.01", "0.02", "0.1")],
    *[row for arch, aug, rand, fp16 in PACO_FULL_NETS for row in (
        Command("paco", f"Full-ImageNet/sh/train_{arch}.sh", "Full-ImageNet",
                f"python paco_imagenet.py --data {{imagenet}} -a {arch} {PACO_FULL} --aug {aug} --rand_n {rand} "
                f"--mark full_{arch}{fp16}", change=SMALL_224, why=f"batch 256 {PX224}",
                expect=(f"{{runs}}/paco/full_{arch}/**/moco_ckpt.pth.tar",)),
        Command("paco", f"Full-ImageNet/sh/eval_{arch}.sh", "Full-ImageNet",
                f"python paco_imagenet.py --data {{imagenet}} -a {arch} {PACO_FULL} --aug {aug} --rand_n {rand} "
                f"--mark full_{arch}{fp16} --reload {{CKPT}} --evaluate", change=SMALL_224, why=f"batch 256 {PX224}",
                globs=(("CKPT", f"{{runs}}/paco/full_{arch}/**/moco_ckpt.pth.tar"),)))],
]

ROWS = [*CACR, *ASCL, *PACO, *MCL, *ATTENTIONCE]
METHODS = ("cacr", "ascl", "paco", "mcl", "attentionce")


# ------------------------------------------------------------------------------------------------- fake data

def write_data(root: Path) -> dict:
    """Every data set the table uses, tiny: one or two images per class, a few classes."""
    from common.data import fake
    d = {}
    d["cifar10"] = fake.write_cifar10(root / "cifar10", n_train=4, n_test=4)
    d["cifar100"] = fake.write_cifar100(root / "cifar100", n_train=16, n_test=4)
    d["stl10"] = fake.write_stl10(root / "stl10", n_train=4, n_test=4, n_unlabeled=4)
    d["tinyimagenet"] = fake.write_tinyimagenet(root / "tiny", n_classes=2, n_train_per_class=2, n_val_per_class=1)
    d["imagenet"] = fake.write_imagefolder(root / "imagenet", n_classes=2, n_per_class=2, size=32)
    # CIFAR-100-LT keeps a class-dependent share of each class (spec d.2): two images per class leave a long tail
    d["cifar100_lt"] = fake.write_cifar100(root / "cifar100_lt", n_train=200, n_test=4)
    lists = root / "lists"
    d["lists"] = str(lists)
    d["imagenet_lt"] = fake.write_list_dataset(root / "imagenet_lt", "imagenet_lt", n_classes=2, train_counts=[2, 1],
                                               n_eval_per_class=1, list_dir=lists / "ImageNet_LT")["root"]
    d["places_lt"] = fake.write_list_dataset(root / "places_lt", "places_lt", n_classes=2, train_counts=[2, 1],
                                             n_eval_per_class=1, list_dir=lists / "Places_LT")["root"]
    d["inat"] = fake.write_list_dataset(root / "inat", "inat2018", n_classes=2, train_counts=[2, 1],
                                        n_eval_per_class=1, list_dir=lists / "iNaturalist18")["root"]
    # --reload_torch: torchvision's ImageNet ResNet-152 weights file (here random weights in its key layout)
    import torchvision
    gen = torch.Generator().manual_seed(0)
    with torch.device("meta"):   # the key layout only: small random values, without the 60M-parameter init
        layout = torchvision.models.resnet152().state_dict()
    d["resnet152"] = str(root / "resnet152-b121ed2d.pth")
    torch.save({k: (0.01 * torch.randn(v.shape, generator=gen)).abs() if v.is_floating_point()
                else torch.zeros(v.shape, dtype=v.dtype) for k, v in layout.items()}, d["resnet152"])
    d["webvision"] = fake.write_webvision(root / "webvision", n_classes=2, n_google_per_class=1, n_flickr_per_class=1)
    return d


# ------------------------------------------------------------------------------------------------- running

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return write_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def batches(request, data, tmp_path_factory) -> dict:
    """``{method: (process, tmp, paths, jobs)}``: one ``ci/entry_batch.py`` process per method with a selected
    row, all started at once (the machine's cores share them; each runs with one thread), collected by
    :func:`method_results`."""
    from common.distributed import find_free_port
    selected = {item.callspec.params["row"].method for item in request.session.items
                if getattr(item, "callspec", None) and "row" in item.callspec.params}
    started = {}
    scratch = contextlib.ExitStack()   # each method's runs (GBs of ResNet checkpoints) are deleted at module end
    for method in (m for m in METHODS if m in selected):
        tmp = scratch.enter_context(scratch_dir(request, tmp_path_factory, f"commands_{method}"))
        paths = {**data, "runs": str(tmp / "runs"), "outputs": str(tmp / "runs" / "original_outputs"),
                 "port": str(find_free_port())}   # the scripts' $((10000 + RANDOM))
        jobs = []
        for row in (r for r in ROWS if r.method == method):
            entry, argv = row.argv(paths)
            jobs.append({"id": row.id, "cwd": str(ROOT / method / row.cwd), "entry": entry, "argv": argv,
                         "globs": {name: pattern.format(**paths) for name, pattern in row.globs}, "timeout": 300})
        (tmp / "jobs.json").write_text(json.dumps(jobs))
        env = smoke_env(tmp / "runs", {"CL_SHORT_RUN": "1"})
        log = open(tmp / "batch.log", "w")
        proc = subprocess.Popen([sys.executable, str(ROOT / "ci" / "entry_batch.py"), *(["--isolated"] * ISOLATED),
                                 str(tmp / "jobs.json"), str(tmp / "results.json")], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        started[method] = (proc, tmp, paths, jobs)
    yield started
    for proc, *_ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    scratch.close()


_results: dict = {}


def method_results(method: str, batches: dict) -> tuple[dict, dict]:
    """``({row id: result}, paths)``: every row of ``method`` in table order, in one interpreter (or isolated)."""
    if method not in _results:
        proc, tmp, paths, jobs = batches[method]
        proc.wait(timeout=900)
        assert proc.returncode == 0, (tmp / "batch.log").read_text()[-3000:]
        results = json.loads((tmp / "results.json").read_text())
        for job in jobs:
            print(f"{results[job['id']]['seconds']:6.1f} s  {job['id']}")
        _results[method] = (results, paths)
    return _results[method]


def test_table_covers_every_method():
    assert sorted({r.method for r in ROWS}) == sorted(METHODS)
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_original_command(row: Command, batches):
    results, paths = method_results(row.method, batches)
    result = results[row.id]
    output = result["stdout"] + result["stderr"]
    assert "Traceback" not in output, output[-3000:]
    if row.fails:
        assert result["returncode"] == 2, output[-3000:]
        assert row.fails in result["stderr"].strip().splitlines()[-1], output[-3000:]
        return
    assert result["returncode"] == 0, f"{row.line}\n{output[-3000:]}"
    if GPU_FLAG.search(row.line):
        assert len(NOTICE.findall(output)) == 1, output[-3000:]
    import glob
    for pattern in row.expect:
        pattern = pattern.format(**paths)
        assert glob.glob(pattern, recursive=True), f"{row.line}: nothing at {pattern}\n{output[-1500:]}"


def test_cacr_knn_readme_line_under_torch_distributed_launch(data, tmp_path):
    """CACR's k-NN README line as typed, with its launcher: ``python -m torch.distributed.launch
    --nproc_per_node=[gpus] main_knn.py --arch ... --pretrained_weights [ckpt] --data_path [imagenet]
    --dump_features [dir]`` (2 CPU processes; the table's row runs the python line alone). Same change as the
    row: ``--image-size 32``; the checkpoint is a MoCo-v3 layout of a ResNet-18 (``module.base_encoder.``)."""
    import torchvision
    ckpt = tmp_path / "checkpoint_0099.pth.tar"
    torch.manual_seed(0)
    torch.save({"epoch": 100, "arch": "resnet18", "state_dict": {
        f"module.base_encoder.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}}, ckpt)
    env = smoke_env(tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node=2", "main_knn.py",
                           "--arch", "resnet18", "--pretrained_weights", str(ckpt), "--data_path", data["imagenet"],
                           "--dump_features", str(tmp_path / "features"), "--image-size", "32"],
                          cwd=ROOT / "cacr" / "imagenet_pretraining", env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "20-NN classifier result: Top1:" in proc.stdout and "final knn top-1:" in proc.stdout, proc.stdout[-2000:]
    assert list((tmp_path / "features").iterdir()), "no features dumped"
