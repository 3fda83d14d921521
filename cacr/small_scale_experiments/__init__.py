"""CACR small-scale experiments (CIFAR-10 / CIFAR-100 / STL-10, SmallAlexNet, in-batch negatives)."""
