"""The originals' documented command lines, run as typed (issue 16): one row per command line of each original's
README and shell scripts (spec ``/work/shared/reference/<method>.md`` §c; the project mirrors the scripts in
``<method>/sh/``), run from the folder the original ran it in (``cd image && python main.py ...``), on CPU, on
tiny fake data in the real on-disk format (``common.data.fake``).

What a row may change, and nothing else:

* **data placeholders** (``[data]``, ``<imagenet>``, ``data/CIFAR100``) become the fake data; where the original
  read its data from a fixed default location (``../data``, ``./data``, ``./imagenet_inat/data``), the row appends
  the project's data flag (``--root`` / ``--data_folder`` / ``--data``) pointing at the fake data instead of writing
  into the source tree (``data=``);
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
in table order (a chained row follows its predecessor). ``CL_ORIGINAL_COMMANDS_ISOLATED=1`` runs every row in its
own ``python`` process instead (same assertions). ``-s`` prints each row's time.

    python -m pytest tests/test_original_commands.py -q --durations=5
"""
from __future__ import annotations

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

from ci.smoke import ROOT, smoke_env

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
    why. ``expect``: files (globs, formatted like ``line``) the command must leave for the next one."""
    method: str
    source: str
    cwd: str
    line: str
    data: tuple = ()
    change: tuple = ()
    why: str = ""
    expect: tuple = ()

    @property
    def id(self) -> str:
        return f"{self.method}:{self.source}:{self.line.split()[1]}:{' '.join(self.line.split()[2:])[:60]}"

    def argv(self, paths: dict) -> tuple[str, list[str]]:
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

ROWS = [*ATTENTIONCE]
METHODS = ("cacr", "ascl", "paco", "mcl", "attentionce")


# ------------------------------------------------------------------------------------------------- fake data

def write_data(root: Path) -> dict:
    """Every data set the table uses, tiny: one or two images per class, a few classes."""
    from common.data import fake
    d = {}
    d["cifar10"] = fake.write_cifar10(root / "cifar10", n_train=4, n_test=4)
    d["cifar100"] = fake.write_cifar100(root / "cifar100", n_train=4, n_test=4)
    d["stl10"] = fake.write_stl10(root / "stl10", n_train=4, n_test=4, n_unlabeled=4)
    d["tinyimagenet"] = fake.write_tinyimagenet(root / "tiny", n_classes=2, n_train_per_class=2, n_val_per_class=1)
    return d


# ------------------------------------------------------------------------------------------------- running

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return write_data(tmp_path_factory.mktemp("data"))


_results: dict = {}


def method_results(method: str, data: dict, tmp_path_factory) -> tuple[dict, dict]:
    """``({row id: result}, paths)``: every row of ``method`` in table order, in one interpreter (or isolated)."""
    if method not in _results:
        tmp = tmp_path_factory.mktemp(f"commands_{method}")
        paths = {**data, "runs": str(tmp / "runs"), "outputs": str(tmp / "runs" / "original_outputs")}
        jobs = []
        for row in (r for r in ROWS if r.method == method):
            entry, argv = row.argv(paths)
            jobs.append({"id": row.id, "cwd": str(ROOT / method / row.cwd), "entry": entry, "argv": argv,
                         "timeout": 300})
        (tmp / "jobs.json").write_text(json.dumps(jobs))
        env = smoke_env(tmp / "runs", {"CL_SHORT_RUN": "1"})
        proc = subprocess.run([sys.executable, str(ROOT / "ci" / "entry_batch.py"), *(["--isolated"] * ISOLATED),
                               str(tmp / "jobs.json"), str(tmp / "results.json")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
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
def test_original_command(row: Command, data, tmp_path_factory):
    results, paths = method_results(row.method, data, tmp_path_factory)
    result = results[row.id]
    output = result["stdout"] + result["stderr"]
    assert result["returncode"] == 0, f"{row.line}\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    if GPU_FLAG.search(row.line):
        assert len(NOTICE.findall(output)) == 1, output[-3000:]
    import glob
    for pattern in row.expect:
        pattern = pattern.format(**paths)
        assert glob.glob(pattern, recursive=True), f"{row.line}: nothing at {pattern}\n{output[-1500:]}"
