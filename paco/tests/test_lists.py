"""The long-tailed split lists shipped where the original ships them (paco/LT/imagenet_inat/data, spec §a):
their sizes, the Places-LT many / medium / few split computed from them, and that the entry points and scripts
find them by default."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from common.eval import class_counts, shot_groups
from paco.main_paco import SHIPPED_LIST_DIR, build_datasets, parse_args
from paco.tests.helpers import PACO_DIR

LISTS = PACO_DIR / "LT" / "imagenet_inat" / "data"

# (lines, classes, per-class counts (min, max)) as the lists' README and spec §a / §d.1 give them
EXPECTED = {
    "ImageNet_LT/ImageNet_LT_test.txt": (50_000, 1_000, (50, 50)),
    "ImageNet_LT/ImageNet_LT_val.txt": (20_000, 1_000, (20, 20)),
    "Places_LT/Places_LT_train.txt": (62_500, 365, (5, 4_980)),
    "Places_LT/Places_LT_val.txt": (7_300, 365, (20, 20)),
    "iNaturalist18/iNaturalist18_val.txt": (24_426, 8_142, None),
}


def _labels(path: Path) -> torch.Tensor:
    with open(path) as f:
        return torch.tensor([int(line.rsplit(None, 1)[1]) for line in f if line.strip()])


def test_shipped_folder_is_the_entry_points_default():
    assert Path(SHIPPED_LIST_DIR) == LISTS
    assert parse_args("lt", []).list_dir == str(LISTS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_list_sizes(name):
    lines, classes, per_class = EXPECTED[name]
    path = LISTS / name
    with open(path, "rb") as f:
        raw = f.read()
    assert raw.count(b"\n") == lines
    labels = _labels(path)
    assert labels.numel() == lines
    counts = class_counts(labels)
    assert counts.numel() == classes and int(labels.min()) == 0 and bool((counts > 0).all())
    if per_class is not None:
        assert (int(counts.min()), int(counts.max())) == per_class


def test_places_lt_shot_split():
    counts = class_counts(_labels(LISTS / "Places_LT" / "Places_LT_train.txt"), 365)
    groups = shot_groups(counts)
    assert {k: int(v.sum()) for k, v in groups.items()} == {"many": 131, "medium": 163, "few": 71}


def test_lists_are_tracked_by_git():
    """.gitignore must not drop them (they are data the scripts need, not run output)."""
    names = [str(LISTS.relative_to(PACO_DIR.parent) / n) for n in EXPECTED]
    ignored = subprocess.run(["git", "check-ignore", *names], cwd=PACO_DIR.parent, capture_output=True, text=True)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.stdout == ""


def test_places_entry_point_reads_the_places_lists_by_default(tmp_path):
    """paco_fp16_places.py with its default --dataset (imagenet) reads the shipped Places-LT lists, as the original
    did; image files are opened lazily, so the lists alone build the datasets."""
    args = parse_args("places", ["--data", str(tmp_path)])
    assert args.dataset == "imagenet"
    train, test, cls_num_list = build_datasets(args)
    assert (len(train), len(test)) == (62_500, 7_300)
    assert len(cls_num_list) == 365 and (min(cls_num_list), max(cls_num_list)) == (5, 4_980)
    assert train.base.samples[0][0] == str(tmp_path / "data_256/a/airfield/00004851.jpg")


def test_missing_train_list_names_the_fix(tmp_path):
    from common.utils import UserError
    args = parse_args("lt", ["--data", str(tmp_path)])
    with pytest.raises(UserError, match="ImageNet_LT_train.txt.*--list-dir"):
        build_datasets(args)
