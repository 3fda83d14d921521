"""Tiny datasets in the real on-disk formats (``common.data.fake``), shared by the MCL tests."""
import pytest


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory):
    from common.data.fake import write_cifar100
    root = tmp_path_factory.mktemp("cifar100")
    write_cifar100(root, n_train=200, n_test=40, seed=0)
    return root


@pytest.fixture(scope="session")
def imagenet_root(tmp_path_factory):
    from common.data.fake import write_imagefolder
    root = tmp_path_factory.mktemp("imagenet")
    write_imagefolder(root, n_classes=3, n_per_class=4, splits=("train", "val"), size=40)
    return root
