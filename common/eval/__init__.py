"""Evaluation: weighted kNN, linear probe on frozen features, top-k and many / medium / few-shot accuracy."""
from common.eval.features import eval_mode, extract_features, recalibrated_copy
from common.eval.knn import knn_accuracy, knn_evaluate, weighted_knn_predict
from common.eval.linear import evaluate_linear, feature_probe, train_linear_probe
from common.eval.metrics import accuracy, class_counts, shot_accuracy, shot_groups

__all__ = [
    "recalibrated_copy",
    "accuracy", "class_counts", "eval_mode", "evaluate_linear", "extract_features", "feature_probe", "knn_accuracy",
    "knn_evaluate", "shot_accuracy", "shot_groups", "train_linear_probe", "weighted_knn_predict",
]
