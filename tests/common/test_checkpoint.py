import errno
import os
import random
import time

import numpy as np
import pytest
import torch

import common.checkpoint as ckpt
from common.checkpoint import (capture_rng_state, code_version, find_latest_checkpoint, load_checkpoint,
                               restore_rng_state, save_checkpoint)
from common.utils import UserError


def _state(epoch):
    return {"epoch": epoch, "state_dict": {"w": torch.full((3,), float(epoch))}}


def test_save_and_load_round_trip_and_best(tmp_path):
    import argparse
    path = tmp_path / "sub" / "checkpoint.pth.tar"
    state = _state(3)
    state["args"] = argparse.Namespace(lr=0.1, arch="resnet18")
    save_checkpoint(state, str(path), is_best=True)
    loaded = load_checkpoint(str(path))
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.full((3,), 3.0))
    assert loaded["args"] == {"lr": 0.1, "arch": "resnet18"}
    assert load_checkpoint(str(tmp_path / "sub" / "model_best.pth.tar"))["epoch"] == 3
    assert sorted(os.listdir(path.parent)) == ["checkpoint.pth.tar", "model_best.pth.tar"]


def test_link_or_copy_links_and_falls_back_to_a_copy(tmp_path, monkeypatch):
    """An original's output path gets the run folder's file as a hard link (no second ~800 MB file for a ResNet-200
    checkpoint); the next save of the source replaces it without touching the link; where links fail, a copy."""
    path, dest = tmp_path / "checkpoint.pth.tar", tmp_path / "out" / "checkpoint.pth.tar"
    save_checkpoint(_state(1), str(path))
    ckpt.link_or_copy(str(path), str(dest))
    assert os.stat(path).st_ino == os.stat(dest).st_ino
    save_checkpoint(_state(2), str(path))
    assert load_checkpoint(str(path))["epoch"] == 2 and load_checkpoint(str(dest))["epoch"] == 1

    def no_links(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    monkeypatch.setattr(os, "link", no_links)
    ckpt.link_or_copy(str(path), str(dest))
    assert os.stat(path).st_ino != os.stat(dest).st_ino and load_checkpoint(str(dest))["epoch"] == 2
    assert os.listdir(dest.parent) == ["checkpoint.pth.tar"]


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth.tar"
    save_checkpoint(_state(1), str(path))
    real_save = torch.save

    def crashing_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial bytes of a zip")   # half a file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(2), str(path))
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert load_checkpoint(str(path))["epoch"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pth.tar"]   # no temp file left behind


def test_corrupt_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.pth"))
    good = tmp_path / "checkpoint_0001.pth.tar"
    save_checkpoint(_state(1), str(good))
    data = good.read_bytes()
    truncated = tmp_path / "checkpoint_0002.pth.tar"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(str(truncated))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(str(garbage))
    tensor_file = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), str(tensor_file))
    with pytest.raises(UserError, match="not a checkpoint dict"):
        load_checkpoint(str(tensor_file))
    # the newest (epoch 2) is truncated: the latest loadable one is epoch 1
    assert find_latest_checkpoint(str(tmp_path)) == str(good)


def test_find_latest_checkpoint_order(tmp_path):
    assert find_latest_checkpoint(str(tmp_path)) is None
    assert find_latest_checkpoint(str(tmp_path / "missing")) is None
    for e in (1, 10, 2):
        save_checkpoint(_state(e), str(tmp_path / f"checkpoint_{e:04d}.pth.tar"))
        time.sleep(0.01)
    assert find_latest_checkpoint(str(tmp_path)).endswith("checkpoint_0010.pth.tar")
    (tmp_path / ".checkpoint.pth.tar.abc.tmp").write_bytes(b"junk")  # leftover of a killed save
    assert find_latest_checkpoint(str(tmp_path)).endswith("checkpoint_0010.pth.tar")


def test_rng_state_round_trip(tmp_path):
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(2))
    path = tmp_path / "rng.pth"
    save_checkpoint({"rng": state}, str(path))
    restore_rng_state(load_checkpoint(str(path))["rng"])
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_code_version():
    v = code_version()
    assert isinstance(v, str) and v
