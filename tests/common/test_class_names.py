"""Evaluation splits are labelled by class NAME with the training split's indices (issue 16 C)."""
import shutil

import pytest

from common.data import ImageFolder, TinyImageNet, build_dataset, fake, folder_classes
from common.utils import UserError


@pytest.fixture()
def folder(tmp_path):
    fake.write_imagefolder(tmp_path / "folder", n_classes=4, n_per_class=2)
    return tmp_path / "folder"


def test_val_lacking_a_class_keeps_the_training_indices(folder):
    train = build_dataset("imagefolder", folder, "train")
    second = train.classes[1]
    shutil.rmtree(folder / "val" / second)
    plain = build_dataset("imagefolder", folder, "val")                 # the old behaviour: labels shift
    val = build_dataset("imagefolder", folder, "val", classes=train)
    assert len(plain.classes) == 3 and plain.targets[-1] == 2           # class 3 relabelled 2: the bug
    assert val.classes == train.classes and val.class_to_idx == train.class_to_idx
    assert sorted(set(val.targets)) == [0, 2, 3]
    for path, target in val.samples:                                    # every label is its folder's train index
        assert train.classes[target] in path
    # the other accepted forms of `classes` give the same labels
    assert ImageFolder(folder / "val", classes=train.class_to_idx).targets == val.targets
    assert ImageFolder(folder / "val", classes=folder_classes(str(folder / "train"))).targets == val.targets


def test_val_class_unknown_to_training_is_one_error(folder):
    train = build_dataset("imagefolder", folder, "train")
    shutil.copytree(folder / "val" / train.classes[0], folder / "val" / "n_extra")
    with pytest.raises(UserError, match="'n_extra'.*not classes of the training split"):
        build_dataset("imagefolder", folder, "val", classes=train)


def test_tiny_rearranged_val_lacking_a_class(tmp_path):
    fake.write_tinyimagenet(tmp_path, n_classes=4, n_train_per_class=2, n_val_per_class=2, layout="rearranged")
    train = TinyImageNet(tmp_path, "train")
    val_dir = tmp_path / "tiny-imagenet-200" / "val"
    shutil.rmtree(val_dir / train.classes[0])
    val = build_dataset("tinyimagenet", tmp_path, "val", classes=train)
    assert sorted(set(val.targets)) == [1, 2, 3] and val.classes == train.classes
    for path, target in val.samples:
        assert f"/{train.classes[target]}/" in path
    shutil.copytree(val_dir / train.classes[1], val_dir / "n99999999")
    with pytest.raises(UserError, match="n99999999"):
        build_dataset("tinyimagenet", tmp_path, "val", classes=train)


def test_tiny_official_val_annotation_of_unknown_class(tmp_path):
    fake.write_tinyimagenet(tmp_path, n_classes=3, n_train_per_class=2, n_val_per_class=2)
    train = TinyImageNet(tmp_path, "train")
    with pytest.raises(UserError, match="not classes of the training split"):
        TinyImageNet(tmp_path, "val", classes=train.classes[1:])


def test_fixed_class_datasets_check_the_class_list():
    train = build_dataset("digits", None, "train")
    assert build_dataset("digits", None, "test", classes=train).classes == train.classes
    with pytest.raises(UserError, match="not the training split's"):
        build_dataset("digits", None, "test", classes=["a", "b"])
