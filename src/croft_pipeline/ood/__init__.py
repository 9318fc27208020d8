"""OOD scores and metrics with one convention: higher score = more in-distribution.

ID is the positive class in every metric. Two protocols (DESIGN.md §5): ``paper`` (threshold
from correctly classified reference samples) and ``deploy`` (threshold fixed on ID validation
data by :func:`deploy_threshold`, then applied unchanged to every test set).
"""

from croft_pipeline.ood.metrics import (
    accuracy,
    accuracy_by_domain,
    aupr_in,
    aupr_out,
    auroc,
    average_precision,
    fpr_at_tpr,
    ood_metrics,
)
from croft_pipeline.ood.protocols import (
    apply_threshold,
    deploy_protocol,
    deploy_threshold,
    paper_protocol,
)
from croft_pipeline.ood.scores import SCORES, ScoreInputs, compute_score, score_names

__all__ = [
    "SCORES",
    "ScoreInputs",
    "accuracy",
    "accuracy_by_domain",
    "apply_threshold",
    "aupr_in",
    "aupr_out",
    "auroc",
    "average_precision",
    "compute_score",
    "deploy_protocol",
    "deploy_threshold",
    "fpr_at_tpr",
    "ood_metrics",
    "paper_protocol",
    "score_names",
]
