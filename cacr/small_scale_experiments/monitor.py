"""The ``initial / final linear top-1`` monitor of the small-scale pre-training.

A fast version of the paper's linear evaluation: frozen encoder in eval mode, features of block
``--monitor-layer`` (fc7 for SmallAlexNet) of the un-augmented train / test images, a linear classifier trained
with Adam on the cached features (``common.eval.train_linear_probe``), top-1 (%) on the test split.
``linear_eval.py`` is the full protocol (augmented features each epoch, 100 epochs).
"""
from __future__ import annotations


import numpy as np
import torch

from common.data import build_dataset
from common.eval.features import eval_mode, extract_features, recalibrated_copy
from common.eval.linear import feature_probe

from cacr.small_scale_experiments import util


def _limited(dataset, n, seed=0):
    if len(dataset) <= n:
        return dataset
    idx = np.random.RandomState(seed).permutation(len(dataset))[:n]
    return torch.utils.data.Subset(dataset, idx.tolist())


def recalibrated_encoder(encoder, dataset, device, batch_size=256):
    """``encoder`` with BatchNorm statistics re-estimated on ``dataset`` (see ``common.eval.recalibrated_copy``)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    return recalibrated_copy(encoder, loader, device)


def encoder_features(encoder, dataset, device, layer_index=-2, batch_size=256):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    with eval_mode(encoder):
        return extract_features(lambda x: encoder(x, layer_index=layer_index), loader, device)


def monitor_features(encoder, args):
    """``--monitor-layer`` features and labels of the un-augmented train and test splits (at most
    ``--monitor-max-images`` each; BN re-estimated on train first with ``--monitor-bn-recalibrate``):
    ``(train_x, train_y, test_x, test_y)``."""
    transform = util.val_transform(args.dataset, args.image_size)
    train_all = build_dataset(args.dataset, args.data_folder, "train", transform)
    train = _limited(train_all, args.monitor_max_images)
    test = _limited(build_dataset(args.dataset, args.data_folder, "test", transform, classes=train_all),
                    args.monitor_max_images)
    if args.monitor_bn_recalibrate:
        encoder = recalibrated_encoder(encoder, train, args.device)
    return (*encoder_features(encoder, train, args.device, args.monitor_layer),
            *encoder_features(encoder, test, args.device, args.monitor_layer))


def monitor_accuracy(encoder, args):
    """(metric name, value in %) of the monitor selected by ``--monitor``: a linear classifier trained with Adam on
    the standardised features, or a weighted kNN (k ``--monitor-knn-k``, T 0.1) on the L2-normalised ones."""
    rng_state = torch.get_rng_state()  # the monitor must not change the training run's random stream
    result = feature_probe(args.monitor, *monitor_features(encoder, args), k=args.monitor_knn_k,
                           epochs=args.monitor_epochs, lr=1e-3, batch_size=256, optimizer="adam", schedule="none",
                           seed=args.seed)
    torch.set_rng_state(rng_state)
    return result
