"""Readers of the real on-disk dataset formats (no downloads), the embedded ``digits`` dataset, imbalanced /
long-tailed subsets and ``build_dataset``. Tiny writers of every format live in ``common.data.fake``."""
from common.data.base import ArrayImageDataset, pil_rgb_loader
from common.data.build import DATASET_NAMES, build_dataset, num_classes_of
from common.data.cifar import CIFAR10, CIFAR100
from common.data.digits import Digits, digits_mean_std, digits_split_indices
from common.data.folder import (FileListDataset, ImageFolder, ListFileDataset, TinyImageNet, WebVision, class_names_of, folder_classes,
                                 read_list_file)
from common.data.imbalance import (TargetSubset, cacr_imbalanced_counts, cacr_imbalanced_indices, class_counts,
                                   cifar_long_tailed_indices, long_tailed_counts)
from common.data.stl10 import STL10

__all__ = [
    "DATASET_NAMES", "build_dataset", "num_classes_of", "ArrayImageDataset", "pil_rgb_loader",
    "CIFAR10", "CIFAR100", "STL10", "Digits", "digits_mean_std", "digits_split_indices",
    "ImageFolder", "TinyImageNet", "FileListDataset", "class_names_of", "folder_classes", "ListFileDataset", "WebVision", "read_list_file",
    "TargetSubset", "cifar_long_tailed_indices", "long_tailed_counts", "cacr_imbalanced_indices",
    "cacr_imbalanced_counts", "class_counts",
]
