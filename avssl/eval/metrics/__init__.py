"""Evaluation metrics for learnt audio / visual representations: pure functions, no I/O.

NumPy arrays in, plain Python floats / ints / dicts out. Every function is deterministic: the only
randomness is the explicit ``seed`` of the logistic probe, and every tie has a stated rule.
``classification``: accuracy, confusion matrix, weighted k-NN; ``probes``: the ESC-50 linear-SVM
protocol (solver in ``svm``) and the logistic probe; ``ranking``: R@k, nDCG@k, mAP and relevance
from labels; ``localization``: cIoU, AUC and the pointing game. docs/evaluation.md: the protocols.
"""

from avssl.eval.metrics.classification import (
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    knn_predict,
)
from avssl.eval.metrics.localization import (
    boxes_to_mask,
    ciou,
    heatmap_peak,
    localization_summary,
    pointing_game,
)
from avssl.eval.metrics.probes import (
    DEFAULT_C_GRID,
    linear_svm_folds,
    logistic_probe,
    make_classifier,
)
from avssl.eval.metrics.ranking import label_relevance, multilabel_relevance, retrieval_metrics

__all__ = [
    "DEFAULT_C_GRID",
    "accuracy",
    "balanced_accuracy",
    "boxes_to_mask",
    "ciou",
    "heatmap_peak",
    "confusion_matrix",
    "knn_predict",
    "label_relevance",
    "linear_svm_folds",
    "localization_summary",
    "logistic_probe",
    "make_classifier",
    "multilabel_relevance",
    "pointing_game",
    "retrieval_metrics",
]
