"""Tables, plots and the self-contained HTML report of an evaluation (Kedro-free)."""

from croft_pipeline.reporting.html import html_page
from croft_pipeline.reporting.plots import domain_accuracy_plot, roc_curve_plot, score_histograms
from croft_pipeline.reporting.tables import (
    detection_table,
    domain_table,
    format_mean_std,
    summary_table,
)

__all__ = [
    "detection_table",
    "domain_accuracy_plot",
    "domain_table",
    "format_mean_std",
    "html_page",
    "roc_curve_plot",
    "score_histograms",
    "summary_table",
]
