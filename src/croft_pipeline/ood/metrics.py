"""Detection and classification metrics; higher score = more ID (docs/algorithm.md §10.6).

Every FPR key names its positive class: ``fpr95_id_positive`` is the share of OOD samples
accepted at the threshold that keeps 95 % of the ID samples (CRoFT's and NegLabel's FPR95);
``fpr95_ood_positive`` the share of ID samples rejected at the threshold that catches 95 % of
the OOD samples (OpenOOD's ``fpr@95``, OOD the positive class). AUROC and AUPR-In take ID as
the positive class, AUPR-Out OOD. ``*_correct_id`` (CRoFT's evaluation) keep only the correctly
classified ID samples.

AUROC and average precision are scikit-learn's (``roc_auc_score``, ``average_precision_score``);
the threshold at a TPR is the project's rule (:func:`threshold_at_tpr`: the largest threshold that
keeps at least that share of the ID samples), which scikit-learn's ``roc_curve`` has no form of.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from croft_pipeline.config.rules import SHARE

TPR = SHARE  # a target true-positive rate: in (0, 1]
# what ood_metrics returns, and what correct_id_metrics returns
DETECTION_METRICS = ("fpr95_id_positive", "fpr95_ood_positive", "auroc", "aupr_in", "aupr_out")
CORRECT_ID_METRICS = ("auroc_correct_id", "fpr95_id_positive_correct_id")


def finite_scores(values, what: str) -> np.ndarray:
    """``values`` as a flat float64 array; empty or non-finite input is a ValueError naming ``what``."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def kept_count(n: int, tpr: float) -> int:
    """How many of ``n`` ID samples must stay above the threshold to reach ``tpr``."""
    TPR.check("tpr", tpr)
    return n - math.floor(n * (1.0 - tpr) + 1e-9)


def threshold_at_tpr(id_scores, tpr: float = 0.95) -> float:
    """The largest threshold ``t`` with ``mean(id_scores >= t) >= tpr``."""
    scores = np.sort(finite_scores(id_scores, "ID scores"))
    return float(scores[scores.size - kept_count(scores.size, tpr)])


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95) -> float:
    """Share of OOD samples at or above the threshold that keeps ``tpr`` of the ID samples."""
    threshold = threshold_at_tpr(id_scores, tpr)
    return float(np.mean(finite_scores(ood_scores, "OOD scores") >= threshold))


def auroc(id_scores, ood_scores) -> float:
    """Area under the ROC curve, ID positive (ties count half)."""
    return _ranked(roc_auc_score, id_scores, ood_scores, "ID scores", "OOD scores")


def average_precision(positive_scores, negative_scores) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (ties grouped)."""
    scores = (positive_scores, negative_scores, "positive scores", "negative scores")
    return _ranked(average_precision_score, *scores)


def _ranked(metric, positive, negative, positive_name: str, negative_name: str) -> float:
    pos, neg = finite_scores(positive, positive_name), finite_scores(negative, negative_name)
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    return float(metric(labels, np.concatenate([pos, neg])))


def aupr_in(id_scores, ood_scores) -> float:
    """Area under the precision-recall curve with ID as the positive class."""
    return average_precision(id_scores, ood_scores)


def aupr_out(id_scores, ood_scores) -> float:
    """Area under the precision-recall curve with OOD as the positive class (scores negated)."""
    return average_precision(-np.asarray(ood_scores, float), -np.asarray(id_scores, float))


def fpr_ood_positive(id_scores, ood_scores, tpr: float = 0.95) -> float:
    """OpenOOD's FPR: OOD is the positive class (lower score = more OOD); the share of ID samples
    flagged as OOD at the threshold that flags ``tpr`` of the OOD samples."""
    return fpr_at_tpr(-np.asarray(ood_scores, float), -np.asarray(id_scores, float), tpr)


def ood_metrics(id_scores, ood_scores, tpr: float = 0.95) -> dict[str, float]:
    """Both FPRs at ``tpr`` TPR, AUROC, AUPR-In and AUPR-Out of one ID/OOD pair of score sets."""
    values = (
        fpr_at_tpr(id_scores, ood_scores, tpr),
        fpr_ood_positive(id_scores, ood_scores, tpr),
        auroc(id_scores, ood_scores),
        aupr_in(id_scores, ood_scores),
        aupr_out(id_scores, ood_scores),
    )
    return dict(zip(DETECTION_METRICS, values, strict=True))


def correct_id_metrics(id_scores, id_correct, ood_scores, tpr: float = 0.95) -> dict[str, float]:
    """AUROC and FPR (ID positive) with only the correctly classified ID samples (CRoFT's
    evaluation); empty when no ID sample is classified correctly."""
    correct = np.asarray(id_correct, dtype=bool).reshape(-1)
    kept = finite_scores(id_scores, "ID scores")
    if correct.size != kept.size:
        raise ValueError(f"{correct.size} correctness flags for {kept.size} ID scores")
    if not correct.any():
        return {}
    values = (auroc(kept[correct], ood_scores), fpr_at_tpr(kept[correct], ood_scores, tpr))
    return dict(zip(CORRECT_ID_METRICS, values, strict=True))


def accuracy(logits, labels) -> float:
    """Top-1 accuracy of ``argmax(logits)`` against integer ``labels``."""
    predicted = _predicted(logits)
    labels = np.asarray(labels).reshape(-1)
    if labels.size != predicted.size:
        raise ValueError(f"{predicted.size} predictions for {labels.size} labels")
    if labels.size == 0:
        raise ValueError("accuracy of an empty set")
    return float(np.mean(predicted == labels))


def _predicted(logits) -> np.ndarray:
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, K], got shape {logits.shape}")
    return logits.argmax(axis=1)
