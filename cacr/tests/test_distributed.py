"""Distributed: 2 gloo processes give the same parameters as 1 process with the same global batch (BN-free models,
see distributed_equivalence.py for why), and the entry points' launch flags / torchrun work on CPU."""
from __future__ import annotations

import glob
import os

import pytest
import torch

pytestmark = pytest.mark.distributed


def test_two_processes_equal_one(cacr_run, tmp_path, port):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    cacr_run(["tests/distributed_equivalence.py", 1, port, one])
    cacr_run(["tests/distributed_equivalence.py", 2, port, two])
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    assert set(a) == {"queue", "v3"} and "queue" in a["queue"] and "base_encoder.weight" in a["v3"]
    for mode in a:
        for k in a[mode]:
            torch.testing.assert_close(a[mode][k], b[mode][k], rtol=1e-10, atol=1e-12, msg=f"{mode}: {k}")


def test_large_scale_launch_flags_two_processes(cacr_run, fake_data, runs_dir, port):
    """The README launch flags with two CPU processes (mp.spawn, gloo): shuffle-BN and the queue gather run."""
    cacr_run(["large_scale_shift_experiments/imagenet/main_ours.py", "-a", "resnet18", "--Ns", "4", "--Ny", "1",
              "--moco-k", "8", "--moco-dim", "8", "--image-size", "32", "--epochs", "1", "--max-iters", "1", "-j", "0",
              "--no-progress", "--multiprocessing-distributed", "--world-size", "1", "--rank", "0",
              "--dist-url", f"tcp://127.0.0.1:{port}", "--dist-backend", "gloo", "--nproc-per-node", "2",
              "--output_folder", runs_dir / "dist", fake_data["imagenet"]])
    ckpt = glob.glob(os.path.join(runs_dir, "dist", "runs", "cacr", "ours", "*", "resnet18", "*", "checkpoint.pth.tar"))
    assert ckpt
    state = torch.load(ckpt[0], map_location="cpu", weights_only=False)["state_dict"]
    assert int(state["queue_ptr"]) == 4  # 2 processes x 2 images enqueued


def test_knn_torchrun_two_processes(cacr_run, fake_data, tmp_path):
    out = cacr_run(["torchrun", "--standalone", "--nproc_per_node=2", "imagenet_pretraining/main_knn.py",
                    "--arch", "vit_tiny", "--image-size", "32", "--nb_knn", "2", "--num_workers", "0",
                    "--batch_size_per_gpu", "4", "--data_path", fake_data["imagenet"],
                    "--dump_features", tmp_path / "knn"]).stdout
    assert "final knn top-1" in out
