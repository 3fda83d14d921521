"""Readers on files from the fake writers, digits, imbalance constructions against the golden fixtures."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import common.data as D
from common.data import fake
from common.golden import golden_file
from common.utils import UserError



@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("data")
    fake.write_cifar10(r, n_train=50, n_test=20)
    fake.write_cifar100(r, n_train=200, n_test=100)
    fake.write_stl10(r, n_train=20, n_test=10, n_unlabeled=7)
    fake.write_tinyimagenet(r / "tiny_official", n_classes=4, n_train_per_class=3, n_val_per_class=2)
    fake.write_tinyimagenet(r / "tiny_rearranged", n_classes=4, n_train_per_class=3, n_val_per_class=2,
                            layout="rearranged")
    fake.write_imagefolder(r / "folder", n_classes=3, n_per_class=2)
    return r


# ------------------------------------------------------------------------------------------------------------ digits
def test_digits_split_sizes_stratified_deterministic():
    train = D.build_dataset("digits", None, "train")
    test = D.build_dataset("digits", None, "test")
    assert len(train) == 1347 and len(test) == 450
    assert train.data.shape == (1347, 32, 32, 3) and train.data.dtype == np.uint8
    assert set(D.digits_split_indices("train")).isdisjoint(D.digits_split_indices("test"))
    # stratified: every class's share of the test split is within one image of 450/1797 of its total
    from sklearn.datasets import load_digits
    y = load_digits().target
    for c in range(10):
        assert abs(np.sum(np.asarray(test.targets) == c) - np.sum(y == c) * 450 / 1797) <= 1
    # three identical channels, full 0..255 range, deterministic across constructions
    assert (train.data[..., 0] == train.data[..., 2]).all() and train.data.max() == 255
    again = D.Digits(split="train")
    assert np.array_equal(again.data, train.data) and again.targets == train.targets
    img, target = train[3]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
    assert target == train.targets[3] and train.classes == [str(i) for i in range(10)]


def test_digits_upsampling_is_bilinear_of_the_8x8_image():
    from sklearn.datasets import load_digits
    train_idx = D.digits_split_indices("train")
    data = D.Digits(split="train").data
    for k in (0, 100):
        src = (load_digits().images[train_idx[k]] * 255 / 16).astype(np.float32)
        # PIL's bilinear upscaling uses the same pixel-centre convention as interpolate(align_corners=False)
        ref = np.asarray(Image.fromarray(src, mode="F").resize((32, 32), Image.BILINEAR))
        assert np.abs(ref - data[k, :, :, 0].astype(float)).max() <= 0.5 + 1e-4
    assert len(np.unique(data[0])) > 17                      # not nearest-neighbour blocks of the 17 levels


def test_digits_mean_std_match_normalize_constant():
    from common.augment import NORMALIZE
    mean, std = D.digits_mean_std("train")
    assert np.allclose(mean, NORMALIZE["digits"].mean, atol=1e-12)
    assert np.allclose(std, NORMALIZE["digits"].std, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------- CIFAR
def test_cifar10_reader(root):
    tr = D.build_dataset("cifar10", root, "train")
    te = D.build_dataset("cifar10", root / "cifar-10-batches-py", "test")   # the directory itself also works
    assert len(tr) == 50 and len(te) == 20
    assert tr.data.shape == (50, 32, 32, 3) and tr.data.dtype == np.uint8
    assert tr.classes[0] == "airplane" and len(tr.classes) == 10
    assert sorted(set(tr.targets)) == list(range(10)) and all(isinstance(t, int) for t in tr.targets)
    assert tr.cls_num_list == [5] * 10
    # pixel layout: row of the pickle = R plane, then G, then B (torchvision's reshape/transpose)
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        b1 = pickle.load(f, encoding="latin1")
    assert np.array_equal(tr.data[0, :, :, 1].ravel(), b1["data"][0, 1024:2048])
    assert tr.targets[: len(b1["labels"])] == b1["labels"]
    img, t = tr[0]
    assert np.array_equal(np.asarray(img), tr.data[0]) and t == tr.targets[0]


def test_cifar100_reader_fine_labels(root):
    tr = D.build_dataset("cifar100", root, "train")
    assert len(tr) == 200 and len(tr.classes) == 100 and max(tr.targets) == 99
    with open(root / "cifar-100-python" / "train", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert tr.targets == raw["fine_labels"]


def test_cifar_errors(root, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        D.build_dataset("cifar10", tmp_path / "nope", "train")
    with pytest.raises(UserError, match="cifar-100-python"):
        D.build_dataset("cifar100", tmp_path, "train")          # exists, wrong content
    with pytest.raises(UserError, match="unknown split"):
        D.build_dataset("cifar10", root, "val")
    bad = tmp_path / "cifar-10-batches-py"
    bad.mkdir()
    (bad / "batches.meta").write_bytes(b"this is not a pickle")
    (bad / "test_batch").write_text("garbage")
    with pytest.raises(UserError, match="not a CIFAR python pickle"):
        D.build_dataset("cifar10", tmp_path, "test")
    with pytest.raises(UserError, match="missing file"):
        D.build_dataset("cifar10", tmp_path, "train")
    # a CIFAR-10 batch given as CIFAR-100 → names the label key problem
    c100 = tmp_path / "x" / "cifar-100-python"
    c100.mkdir(parents=True)
    with open(c100 / "test", "wb") as f:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}, f)
    with pytest.raises(UserError, match="fine_labels"):
        D.build_dataset("cifar100", tmp_path / "x", "test")


def test_error_messages_are_one_line(tmp_path):
    # run_main prints "error: <message>" as the last line: a message must not span lines
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(b"PK\x03\x04 zip")          # the unpickler's own message has a newline
    with pytest.raises(UserError) as info:
        D.build_dataset("cifar10", tmp_path, "test")
    assert "\n" not in str(info.value) and "test_batch" in str(info.value)


def test_unknown_dataset_name():
    with pytest.raises(UserError, match="unknown dataset"):
        D.build_dataset("mnist", None, "train")
    assert set(D.DATASET_NAMES) == {"digits", "cifar10", "cifar100", "stl10", "tinyimagenet", "imagefolder"}


# ------------------------------------------------------------------------------------------------------------ STL-10
def test_stl10_splits_and_layout(root):
    tr = D.build_dataset("stl10", root, "train")
    te = D.build_dataset("stl10", root, "test")
    un = D.build_dataset("stl10", root, "unlabeled")
    both = D.build_dataset("stl10", root / "stl10_binary", "train+unlabeled")
    assert (len(tr), len(te), len(un), len(both)) == (20, 10, 7, 27)
    assert tr.data.shape == (20, 96, 96, 3) and un.targets == [-1] * 7
    assert min(tr.targets) == 0 and max(tr.targets) == 9
    raw_y = np.fromfile(root / "stl10_binary" / "train_y.bin", dtype=np.uint8)
    assert tr.targets == (raw_y.astype(int) - 1).tolist()
    # column-major: torchvision reads reshape(-1,3,96,96) then swaps the last two axes (C, H, W)
    raw = np.fromfile(root / "stl10_binary" / "train_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    tv = np.transpose(raw, (0, 1, 3, 2))
    assert np.array_equal(tr.data[1], tv[1].transpose(1, 2, 0))
    assert both.targets == tr.targets + [-1] * 7
    img, t = both[22]
    assert np.array_equal(np.asarray(img), un.data[2]) and t == -1
    assert tr.classes[2] == "car"


def test_stl10_errors(root, tmp_path):
    with pytest.raises(UserError, match="stl10_binary"):
        D.build_dataset("stl10", tmp_path, "train")
    with pytest.raises(UserError, match="unknown split"):
        D.build_dataset("stl10", root, "unlabelled")
    d = tmp_path / "stl10_binary"
    d.mkdir()
    (d / "train_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(UserError, match="not a multiple"):
        D.build_dataset("stl10", tmp_path, "train")


# ---------------------------------------------------------------------------------------------------- Tiny-ImageNet
@pytest.mark.parametrize("layout", ["tiny_official", "tiny_rearranged"])
def test_tinyimagenet_both_val_layouts(root, layout):
    tr = D.build_dataset("tinyimagenet", root / layout, "train")
    va = D.build_dataset("tinyimagenet", root / layout / "tiny-imagenet-200", "val")
    assert len(tr) == 12 and len(va) == 8 and len(tr.classes) == 4
    assert tr.classes == sorted(tr.classes)                  # sorted wnids (= ImageFolder order)
    for path, t in tr.samples:                                # label from the folder = label from the file name
        assert os.path.basename(path).split("_")[0] == tr.classes[t]
    img, t = va[0]
    assert img.size == (64, 64) and img.mode == "RGB"
    assert sorted(np.bincount(va.targets).tolist()) == [2, 2, 2, 2]


def test_tiny_official_and_rearranged_agree(root):
    a = D.build_dataset("tinyimagenet", root / "tiny_official", "val")
    b = D.build_dataset("tinyimagenet", root / "tiny_rearranged", "val")
    key = lambda ds: sorted((os.path.basename(p), t) for p, t in ds.samples)  # noqa: E731
    assert key(a) == key(b)
    # the rearranged train folder read through ImageFolder gives the same labels (AttentioNCE's reader)
    f = D.build_dataset("imagefolder", root / "tiny_official" / "tiny-imagenet-200", "train")
    t = D.build_dataset("tinyimagenet", root / "tiny_official", "train")
    assert f.targets == t.targets and f.classes == t.classes


def test_tinyimagenet_errors(root, tmp_path):
    with pytest.raises(UserError, match="wnids.txt"):
        D.build_dataset("tinyimagenet", tmp_path, "train")
    with pytest.raises(UserError, match="unknown split"):
        D.build_dataset("tinyimagenet", root / "tiny_official", "test")


# ------------------------------------------------------------------------------------------------------ ImageFolder
def test_imagefolder(root, tmp_path):
    tr = D.build_dataset("imagefolder", root / "folder", "train")
    assert len(tr) == 6 and tr.targets == [0, 0, 1, 1, 2, 2] and len(tr.classes) == 3
    assert tr[0][0].mode == "RGB"
    with pytest.raises(UserError, match="does not exist"):
        D.build_dataset("imagefolder", root / "folder", "test")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="class-per-folder"):
        D.build_dataset("imagefolder", tmp_path / "empty", "train")
    fake.write_imagefolder(tmp_path / "f2", n_classes=2, n_per_class=1, splits=("train",))
    (tmp_path / "f2" / "train" / "zz_empty_class").mkdir()
    with pytest.raises(UserError, match="zz_empty_class"):
        D.build_dataset("imagefolder", tmp_path / "f2", "train")


# ------------------------------------------------------------------------------------------------------- list files
@pytest.mark.parametrize("style,prefix", [("imagenet_lt", "ImageNet_LT"), ("places_lt", "Places_LT"),
                                          ("inat2018", "iNaturalist18")])
def test_list_file_dataset(tmp_path, style, prefix):
    out = fake.write_list_dataset(tmp_path, style=style, n_classes=3, train_counts=[4, 2, 1], n_eval_per_class=1)
    assert os.path.basename(out["train"]) == f"{prefix}_train.txt"
    tr = D.ListFileDataset(out["root"], out["train"])
    assert len(tr) == 7 and tr.cls_num_list == [4, 2, 1] and len(tr.classes) == 3
    img, t = tr[6]
    assert img.mode == "RGB" and t == 2
    ev = D.ListFileDataset(out["root"], out["val"], num_classes=3)
    assert ev.targets == [0, 1, 2]
    tr.verify_files()


def test_list_file_errors(tmp_path):
    out = fake.write_list_dataset(tmp_path, n_classes=2, train_counts=[1, 1])
    with pytest.raises(UserError, match="does not exist"):
        D.ListFileDataset(tmp_path, tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg 0\nno_label_here\n")
    with pytest.raises(UserError, match="line 2"):
        D.ListFileDataset(tmp_path, bad)
    ghost = tmp_path / "ghost.txt"
    ghost.write_text("train/none/ghost.JPEG 0\n")
    ds = D.ListFileDataset(tmp_path, ghost)                 # lazy: construction succeeds
    with pytest.raises(UserError, match="ghost.JPEG"):
        ds[0]
    with pytest.raises(UserError, match="ghost.JPEG"):
        ds.verify_files()
    # in a DataLoader worker the error reaches the main process as the same one-line UserError
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1)
    with pytest.raises(UserError) as info:
        next(iter(loader))
    assert str(info.value).startswith("image file") and "ghost.JPEG" in str(info.value)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    notimg = tmp_path / "notimg.txt"
    (tmp_path / "x.jpg").write_text("not an image")
    notimg.write_text("x.jpg 0\n")
    with pytest.raises(UserError, match="not a valid image"):
        D.ListFileDataset(tmp_path, notimg)[0]
    assert D.ListFileDataset(out["root"], out["train"]).targets == [0, 1]


def test_webvision(tmp_path):
    root = fake.write_webvision(tmp_path, n_classes=3, n_google_per_class=2, n_flickr_per_class=1)
    ds = D.WebVision(root)
    assert len(ds) == 9 and ds.targets == [0, 0, 1, 1, 2, 2, 0, 1, 2]       # google first, then flickr
    assert "google" in ds.samples[0][0] and "flickr" in ds.samples[-1][0] and len(ds.classes) == 1000
    ds2 = D.WebVision(root, num_classes=2)
    assert ds2.targets == [0, 0, 1, 1, 0, 1] and ds2[0][0].mode == "RGB"
    assert D.WebVision(root, split="val", num_classes=3).targets == [0, 1, 2]
    with pytest.raises(UserError, match="train_filelist_google"):
        D.WebVision(tmp_path / "info")


# ------------------------------------------------------------------------------------------------------ imbalance
def test_cifar100_lt_counts_match_golden():
    with open(golden_file("paco", "cifar100_lt_counts.json")) as f:
        golden = json.load(f)
    targets = np.repeat(np.arange(100), 500)
    np.random.RandomState(1).shuffle(targets)
    for key, g in golden.items():
        if key.startswith("_"):
            continue
        assert D.long_tailed_counts(500, 100, g["imb_factor"], g["imb_type"]) == g["counts"], key
        idx = D.cifar_long_tailed_indices(targets, g["imb_factor"], g["imb_type"], seed=0)
        assert len(idx) == g["total"] == len(set(idx.tolist()))
        counts = np.bincount(targets[idx], minlength=100)
        assert counts.tolist() == g["counts"]
        assert (np.sum(counts > 100), np.sum((counts <= 100) & (counts >= 20)), np.sum(counts < 20)) == \
            (g["many"], g["medium"], g["few"])


def test_cifar_lt_selection_is_paco_global_rng_order():
    targets = np.repeat(np.arange(10), 50)
    np.random.RandomState(3).shuffle(targets)
    idx = D.cifar_long_tailed_indices(targets, 0.1, seed=0)
    # reference: the original code with np.random.seed(0) and np.random.shuffle per class
    state = np.random.get_state()
    try:
        np.random.seed(0)
        expected = []
        counts = [int(50 * 0.1 ** (c / 9.0)) for c in range(10)]
        for c, n in zip(np.unique(targets), counts):
            i = np.where(targets == c)[0]
            np.random.shuffle(i)
            expected.append(i[:n])
    finally:
        np.random.set_state(state)
    assert np.array_equal(idx, np.concatenate(expected))
    assert np.all(np.diff(targets[idx]) >= 0)                  # concatenated class by class


@pytest.mark.parametrize("name,total", [("cifar10", 27500), ("cifar100", 7870)])
def test_cacr_imbalanced_indices_match_golden(name, total):
    t = torch.load(golden_file("cacr", f"imbalance_{name}_seed0.pt"), weights_only=True)["tensors"]
    idx = D.cacr_imbalanced_indices(t["targets"].numpy(), name)
    assert len(idx) == total
    assert np.array_equal(idx, t["selected_indices"].numpy())
    assert np.array_equal(t["targets"].numpy()[idx], t["selected_targets"].numpy())
    assert D.class_counts(t["selected_targets"].numpy(), len(t["class_counts"])) == t["class_counts"].tolist()


def test_target_subset_keeps_targets(root):
    base = D.build_dataset("cifar10", root, "train")
    idx = D.cifar_long_tailed_indices(base.targets, 0.2, seed=0)
    sub = D.TargetSubset(base, idx)
    assert len(sub) == len(idx) and sub.targets == [base.targets[i] for i in idx]
    assert sub.classes == base.classes and sub.data.shape == (len(idx), 32, 32, 3)
    assert sub.cls_num_list == np.bincount(sub.targets, minlength=10).tolist()
    img, t = sub[1]
    assert t == sub.targets[1] and np.array_equal(np.asarray(img), base.data[idx[1]])


def test_fake_writers_are_deterministic(tmp_path):
    a = D.build_dataset("cifar10", fake.write_cifar10(tmp_path / "a", seed=3), "train")
    b = D.build_dataset("cifar10", fake.write_cifar10(tmp_path / "b", seed=3), "train")
    c = D.build_dataset("cifar10", fake.write_cifar10(tmp_path / "c", seed=4), "train")
    assert np.array_equal(a.data, b.data) and a.targets == b.targets
    assert not np.array_equal(a.data, c.data)


def test_readers_agree_with_torchvision_on_fake_files(root, monkeypatch):
    """torchvision's own CIFAR / STL-10 readers (checksums disabled) read the fake files to the same arrays."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tv_cifar
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.STL10, "_check_integrity", lambda self: True)
    for ours_name, tv_cls in (("cifar10", tvd.CIFAR10), ("cifar100", tvd.CIFAR100)):
        for train in (True, False):
            tv = tv_cls(str(root), train=train, download=False)
            ours = D.build_dataset(ours_name, root, "train" if train else "test")
            assert np.array_equal(tv.data, ours.data) and tv.targets == ours.targets and tv.classes == ours.classes
    for split in ("train", "test", "unlabeled", "train+unlabeled"):
        tv = tvd.STL10(str(root), split=split, download=False)
        ours = D.build_dataset("stl10", root, split)
        assert np.array_equal(tv.data.transpose(0, 2, 3, 1), ours.data) and tv.labels.tolist() == ours.targets
        assert np.array_equal(np.asarray(tv[len(tv) - 1][0]), np.asarray(ours[len(ours) - 1][0]))
