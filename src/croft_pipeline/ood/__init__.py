"""OOD scores and metrics with one convention: higher score = more in-distribution.

ID is the positive class in every metric. Two protocols (docs/algorithm.md §10): ``paper`` (threshold
from correctly classified reference samples) and ``deploy`` (threshold fixed on ID validation
data by :func:`deploy_threshold`, then applied unchanged to every test set).
"""

from croft_pipeline.ood.metrics import (
    accuracy,
    aupr_in,
    aupr_out,
    auroc,
    average_precision,
    fpr_at_tpr,
    ood_metrics,
)
from croft_pipeline.ood.protocols import (
    apply_threshold,
    deploy_threshold,
    paper_protocol,
)
from croft_pipeline.ood.scores import SCORES, ScoreInputs, compute_score, score_names

__all__ = [
    "SCORES",
    "ScoreInputs",
    "accuracy",
    "apply_threshold",
    "aupr_in",
    "aupr_out",
    "auroc",
    "average_precision",
    "compute_score",
    "deploy_threshold",
    "fpr_at_tpr",
    "ood_metrics",
    "paper_protocol",
    "score_names",
]
