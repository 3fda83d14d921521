"""Shared by the PaCo tests: run an entry point / sh script as a subprocess (through ``ci.smoke``) on tiny
generated data, with runs written under the test's temporary directory."""
from __future__ import annotations

from pathlib import Path

import torch

from ci.smoke import run_python, run_script

PACO_DIR = Path(__file__).resolve().parents[1]

# tiny sizes every smoke run appends (they override the scripts' flags, which come first)
TINY = ["--image-size", "32", "-b", "4", "--moco-k", "16", "--moco-dim", "16", "--epochs", "1", "-j", "0",
        "--seed", "0", "--no-multiprocessing-distributed"]


def run(cmd, tmp_path, env=None, timeout=240, expect_failure=False):
    """``cmd`` = ``['bash', 'sh/x.sh', *flags]`` or ``['LT/paco_cifar.py', *flags]``, run in ``paco/``."""
    env = {"PYTHONUNBUFFERED": "1", **(env or {})}
    if cmd[0] == "bash":
        return run_script("paco", cmd[1], *cmd[2:], env=env, runs_dir=tmp_path, timeout=timeout,
                          expect_failure=expect_failure)
    return run_python("paco", cmd[0], *cmd[1:], env=env, runs_dir=tmp_path, timeout=timeout,
                      expect_failure=expect_failure)


def run_dir(tmp_path, mark, full=False):
    """The run folder of ``--mark mark`` (CL_RUNS_DIR/paco/<mark>; Full-ImageNet's /checkpoint below it, as the
    original's run dir)."""
    d = Path(tmp_path) / "paco" / mark
    return d / "checkpoint" if full else d


# spec §g: the original's checkpoint = {epoch, arch, acc, state_dict, optimizer} (CIFAR: no acc); this code adds its
# own keys beside them (the best top-1 of quirk 19, the AMP scaler, the flags, and common.engine's bookkeeping)
ORIGINAL_KEYS = {"epoch", "arch", "acc", "state_dict", "optimizer"}
OUR_KEYS = {"best_acc", "scaler", "args", "run_flags", "global_step", "rng_state", "code_version"}


class DDPKeys(torch.nn.Module):
    """What the original saved and loaded: its model was always DistributedDataParallel-wrapped, so its state dict
    and ``model.parameters()`` are those of a module held as ``.module`` (keys ``module.<name>``)."""

    def __init__(self, model):
        super().__init__()
        self.module = model


def original_model_for(state):
    """The PaCo model of the flags a checkpoint recorded, wrapped as the original held it."""
    import argparse

    from paco.main_paco import build_model
    return DDPKeys(build_model(argparse.Namespace(**state["args"])))


def assert_original_layout(path, epochs_done):
    """``path`` (a moco_ckpt*.pth.tar written by an entry point) has the original's top-level keys plus ours, the
    original's ``module.`` state-dict keys (queue, queue_l, queue_ptr, encoder_k, LT's linear_k included: spec §g), and
    loads in the original's resume code: ``model.load_state_dict(ckpt['state_dict'])`` on the DDP model (strict)
    and ``optimizer.load_state_dict(ckpt['optimizer'])`` with ``optimizer = SGD(model.parameters(), ...)``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(state) == ORIGINAL_KEYS | OUR_KEYS, sorted(set(state) ^ (ORIGINAL_KEYS | OUR_KEYS))
    assert state["epoch"] == epochs_done   # the next epoch to run (0-based) = epochs done
    model = original_model_for(state)
    expected = {"module." + k for k in model.module.state_dict()}
    assert set(state["state_dict"]) == expected
    for key in ("module.queue", "module.queue_l", "module.queue_ptr"):
        assert key in expected
    assert any(k.startswith("module.encoder_k.") for k in expected)
    # the momentum classifier linear_k is in the LT wrapper only (the Full-ImageNet one has none: archs.json sizes)
    assert any(k.startswith("module.linear_k.") for k in expected) == (state["args"]["variant"] != "imagenet")
    model.load_state_dict(state["state_dict"])
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    optimizer.load_state_dict(state["optimizer"])
    # the original's --reload: every tensor of the DDP model's state dict whose key and shape match
    own = model.state_dict()
    matched = [k for k in own if k in state["state_dict"] and state["state_dict"][k].shape == own[k].shape]
    assert len(matched) == len(own)
    return state
