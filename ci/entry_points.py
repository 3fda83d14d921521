"""The main training entry point of each method, with the flags of a tiny CPU run on the CIFAR-100 files of
``common.data.fake`` at 16 px: what the reliability tests (``tests/reliability/test_faults.py``,
``test_run_state.py``) launch. ``{data}`` in the flags is the data root."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

EPOCHS = 3


@dataclass
class Method:
    folder: str
    entry: str
    flags: list
    name_flag: str
    steps_per_epoch: int
    checkpoint: str                      # the resume checkpoint, relative to the run directory
    run_dir_template: str                # the run directory below CL_RUNS_DIR, {name} = the run name flag
    params: tuple = ("state_dict", "optimizer")
    resumed_line: str = r"resumed at epoch {epoch}\b"
    completed_epochs: callable = field(default=lambda state: state["epoch"])
    lr_flag: str = "--lr"                # a result flag: another value must never continue this run
    lr_values: tuple = ("0.05", "0.02")

    def run_dir(self, runs: Path, name: str) -> Path:
        return runs / self.run_dir_template.format(name=name)


# the flags of each method's tests/test_resume.py, on the tiny CIFAR-100 files below at 16 px ({data})
METHODS = {
    "cacr": Method(
        "cacr", "small_scale_experiments/main_ours.py",
        ["--dataset", "cifar100", "--data_folder", "{data}", "--image-size", "16", "--arch", "resnet20_option_a",
         "--Ns", "16", "--Ny", "1", "--max-iters", "2", "--num_workers", "0", "--monitor", "none", "--no-progress",
         "--lr_decay_epochs", "2", "--seed", "3"],
        "--name", 2, "checkpoint.pth.tar", "cacr/{name}"),
    "ascl": Method(
        "ascl", "main.py",
        ["--dataset", "cifar100", "--data_path", "{data}", "--image_size", "16", "--arch", "resnet20_option_a",
         "--warm_up", "1", "--eval_epochs", "0", "--iters_per_epoch", "2", "--batch-size", "16", "--mem_size", "32",
         "--workers", "0", "--save_freq", "1", "--no_progress", "--knn_k", "20", "--eval_batch_size", "512"],
        "--run_id", 2, "ckpts.pth", f"ascl/{{name}}/cifar100_moco_ascl_{EPOCHS}_weak_augment_1_0.1_0.05"),
    "paco": Method(   # no step limit in PaCo: 200 images, batch 64 = 3 steps per epoch
        "paco", "LT/paco_cifar.py",
        ["--dataset", "cifar100", "--data", "{data}", "--image-size", "16", "--imb-factor", "1", "--feat_dim", "64",
         "-b", "64", "--moco-k", "128", "--moco-dim", "16", "--alpha", "0.01", "--moco-t", "0.05",
         "--warmup_epochs", "1", "-j", "0", "--seed", "0", "--no-multiprocessing-distributed"],
        "--mark", 3, "moco_ckpt.pth.tar", "paco/{name}"),
    "mcl": Method(
        "mcl", "main_cifar.py",
        ["--dataset", "cifar100", "--data", "{data}", "--image-size", "16", "--max-iters", "2", "--batch-size", "8",
         "--num-workers", "0", "--no-progress", "--lr-type", "multistep", "--milestones", "2", "--alpha", "0.1",
         "--gamma", "1", "--beta", "0.1", "--lam", "1", "--feat-dim", "16", "--arch", "ShuffleNetV2_05x"],
        "--name", 2, "ShuffleNetV2_05x.pth.tar", "mcl/{name}", params=("net", "criterion", "optimizer"),
        # MCL counts epochs from 0 and stores the index of the last completed one
        resumed_line=r"resumed from .* at epoch {epoch}\b", completed_epochs=lambda state: state["epoch"] + 1,
        lr_flag="--init-lr"),
    "attentionce": Method(
        "attentionce", "image/main.py",
        ["--dataset_name", "cifar100", "--root", "{data}", "--crop_size", "16", "--arch", "resnet20_option_a",
         "--batch_size", "8", "--steps_per_epoch", "2", "--d_neg", "0.5", "--feature_dim", "16", "--workers", "0",
         "--seed", "0", "--device", "cpu"],
        "--name", 2, "checkpoint.pth", "attentionce/{name}", resumed_line=r"resumed from .* at epoch {epoch}\b",
        lr_values=("0.001", "0.002")),
}
