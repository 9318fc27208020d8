"""Assemble an evaluation's plots and report page from its tables (Kedro-free)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from croft_pipeline.methods.train_summary import TrainSummary
from croft_pipeline.publishing.gates import GateResult, gates_outcome
from croft_pipeline.reporting.classes import (
    class_accuracy,
    class_accuracy_table,
    confusion_counts,
)
from croft_pipeline.reporting.curves import HISTOGRAM_BINS, roc_table, scores_by_shift
from croft_pipeline.reporting.html import (
    Fragment,
    Plot,
    Table,
    confusion_figure,
    html_page,
    provenance_box,
)
from croft_pipeline.reporting.plots import (
    accuracy_scatter,
    domain_accuracy_plot,
    roc_curve_plot,
    score_histograms,
)
from croft_pipeline.reporting.tables import detection_table, domain_table, summary_table
from croft_pipeline.reporting.verdict import (
    VERDICT_NOTE,
    selection_records,
    selection_table,
    verdict_sentence,
    verdict_table,
)
from croft_pipeline.tracking.provenance import Provenance


def convention(calibration: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None) -> str:
    """The report's note on scores and metrics; the deployed threshold's score and TPR as the
    run calibrated them (``calibration.json``)."""
    entry = next((e for seeds in (calibration or {}).values() for e in seeds.values()), None)
    deployed = (
        f"the {entry['score']} threshold calibrated at {float(entry['tpr']):.0%} TPR"
        if entry is not None
        else "the calibrated threshold"
    )
    return (
        "Convention: every OOD score is higher for more in-distribution samples. "
        "fpr95_id_positive = share of open-set samples accepted at the threshold that keeps 95% "
        "of the ID samples (CRoFT's, NegLabel's FPR95); fpr95_ood_positive = share of ID samples "
        "rejected at the threshold that catches 95% of the open-set samples (OpenOOD's); auroc "
        "and aupr_in take ID as the positive class, aupr_out open-set; *_correct_id keep only the "
        "correctly classified ID test samples (CRoFT's evaluation). openset*: ID test vs open-set "
        "(classic); fsood*: ID test ∪ the covariate-shifted test (full-spectrum: covariate shift "
        f"counts as ID) vs open-set; fsood_id accuracy pools both. deploy_*: {deployed} on ID "
        "validation data, applied unchanged to every test set. paper_*: the official rule (5th "
        "percentile of correctly classified covariate-shift samples; AUROC correct covariate vs "
        "open-set). Cells: mean ± std over seeds (numpy std, ddof 0). docs/algorithm.md §10 "
        "gives each formula."
    )


GATES_NOTE = (
    "evaluate.gates (conf/base/parameters_evaluate.yml) judge the registered method; the "
    "registered version's description and data/08_reporting/model_registration.json say the same."
)


def gates_section(
    method: str, results: Sequence[GateResult], champion_alias: str, held: str = ""
) -> Table:
    """The report's gate box: each gate, its figure, pass or fail, and what moved (``held``: why
    this run registers nothing)."""
    table = pd.DataFrame(
        {
            "result": ["pass" if r.passed else "FAIL" for r in results],
            "figure": [r.detail for r in results],
        },
        index=[r.name for r in results],
    )
    heading = f"Quality gates of {method}: {gates_outcome(list(results), champion_alias, held)}"
    return Table("gates-table", heading, table, GATES_NOTE)


SHORT_CONVENTION = "higher score = more ID; ID is the positive class; mean ± std over seeds"


def build_plots(
    sample_scores: pd.DataFrame,
    summary: pd.DataFrame,
    domain_summary: pd.DataFrame,
    wise_curves: pd.DataFrame,
    calibration: Mapping[str, Mapping[str, Mapping[str, Any]]],
    splits: Mapping[str, str],
    score: str = "energy",
    bins: int = HISTOGRAM_BINS,
) -> dict[str, bytes]:
    """PNG bytes by name: the ID-vs-covariate accuracy scatter with WiSE-FT curves, score
    histograms per method, ROC curves, accuracy per domain."""
    by_method = scores_by_shift(sample_scores, splits, score)
    thresholds = _mean_thresholds(calibration, score)
    plots = (
        {"accuracy_scatter": accuracy_scatter(summary, wise_curves)} if not summary.empty else {}
    )
    plots.update(score_histograms(by_method, score, thresholds, bins))
    roc = roc_table(by_method)
    if not roc.empty:
        plots[f"roc_{score}"] = roc_curve_plot(roc, score)
    if not domain_summary.empty:
        plots["accuracy_per_domain"] = domain_accuracy_plot(domain_summary)
    return plots


def _mean_thresholds(calibration, score: str) -> dict[str, float]:
    return {
        method: float(np.mean([float(e["threshold"]) for e in seeds.values()]))
        for method, seeds in calibration.items()
        if seeds and all(e.get("score", "energy") == score for e in seeds.values())
    }


def build_report(
    summary: pd.DataFrame,
    domain_summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    train_summary: TrainSummary,
    plots: Mapping[str, bytes],
    title: str,
    sample_scores: pd.DataFrame | None = None,
    splits: Mapping[str, str] | None = None,
    provenance: Provenance | None = None,
    gates: Table | None = None,
    calibration: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    served: str | None = None,
) -> str:
    """The self-contained HTML page: a one-sentence verdict on the ``served`` method, a table of
    contents, the provenance box, the gate box (``gates``:
    :func:`gates_section`), the verdict (differences from zero-shot
    with intervals), the ID-vs-covariate scatter, the EDR ablation and best-baseline comparisons,
    per-class accuracy and confusion matrices on the covariate-shift test (from the per-sample
    ``sample_scores``), how each method was selected, then the full tables and the plots."""
    sections: list[Table | Plot | Fragment] = [gates] if gates is not None else []
    sections += [
        Table(
            "verdict-table",
            "Verdict: each method against zero-shot CLIP",
            verdict_table(comparisons, "vs zero-shot"),
            VERDICT_NOTE,
        ),
    ]
    if "accuracy_scatter" in plots:
        sections.append(
            Plot("accuracy-scatter", _caption("accuracy_scatter"), plots["accuracy_scatter"])
        )
    sections += [
        Table(
            "edr-table",
            "Does the energy term help? CRoFT against croft_no_edr",
            verdict_table(comparisons, "vs no EDR"),
        ),
        Table(
            "baseline-table",
            "CRoFT against the best baseline on each metric (chosen on these test results)",
            verdict_table(comparisons, "vs best baseline"),
        ),
        *_class_sections(sample_scores, splits, train_summary, served),
        Table(
            "selection-table",
            "Model selection on ID validation (the oracle column is an upper bound no user could select)",
            selection_table(selection_records(train_summary)),
        ),
        Table(
            "summary-table",
            f"Results: method × shift × metric ({SHORT_CONVENTION})",
            summary_table(summary),
        ),
        Table(
            "detection-table",
            f"Open-set detection by OOD score: classic (openset*) and full-spectrum (fsood*) ({SHORT_CONVENTION})",
            detection_table(summary),
        ),
        Table(
            "domain-table",
            "Accuracy per domain: a row per ID domain and covariate test set (mean ± std over seeds)",
            domain_table(domain_summary).T,
        ),
    ]
    rest = sorted(
        (name for name in plots if name != "accuracy_scatter"), key=lambda n: (_plot_rank(n), n)
    )
    sections += [Plot(name, _caption(name), plots[name]) for name in rest]
    sentence = verdict_sentence(comparisons, served) if served else ""
    opening = (f'<p class="verdict">{html.escape(sentence)}</p>' if sentence else "") + (
        provenance_box(provenance)
    )
    return html_page(title, [convention(calibration)], sections, opening=opening)


def _class_sections(
    sample_scores: pd.DataFrame | None,
    splits: Mapping[str, str] | None,
    train_summary: TrainSummary,
    served: str | None = None,
) -> list[Table | Fragment]:
    """Per-class accuracy (ID test → covariate, the largest drop first) and one confusion matrix
    per method on the covariate-shift test, the ``served`` method's and zero-shot's first, the
    others folded; none without per-sample scores."""
    if sample_scores is None or sample_scores.empty or not splits:
        return []
    classes = list(train_summary.id_classes)
    covariate = splits["covariate"]
    first, rest = [], []
    for method, counts in confusion_counts(sample_scores, covariate, len(classes)).items():
        accuracy = np.trace(counts) / max(counts.sum(), 1)
        caption = f"{method}: accuracy {accuracy:.3f} on {counts.sum()} samples"
        figure = confusion_figure(f"confusion-{method}", caption, classes, counts)
        (first if method in (served, "zero_shot") else rest).append((method != served, figure))
    body = "".join(figure for _, figure in sorted(first))
    if rest:
        body += (
            f"<details><summary>The other {len(rest)} methods</summary>"
            f"{''.join(figure for _, figure in rest)}</details>"
        )
    return [
        Table(
            "class-table",
            f"Accuracy per class: ID test → covariate shift ({covariate}), the largest drop first",
            class_accuracy_table(class_accuracy(sample_scores, splits["id"], covariate, classes)),
            "Cells: accuracy on the ID test → on the covariate-shift test, seeds pooled; rows "
            "sorted by the mean drop over methods.",
        ),
        Fragment(
            "confusion-matrices",
            f"Confusion matrices on the covariate-shift test ({covariate})",
            body,
            "Rows: true class, columns: predicted class (numbers as in the rows); cells: counts "
            "with seeds pooled, shaded by the share of the row.",
        ),
    ]


def _plot_rank(name: str) -> int:
    """Score histograms first (the paper's figure), then ROC curves, then the rest."""
    return 0 if "_hist_" in name else 1 if name.startswith("roc_") else 2


def _caption(name: str) -> str:
    if name == "accuracy_scatter":
        return "ID vs held-out-domain accuracy per method; lines: WiSE-FT from zero-shot (α = 0) to fine-tuned (α = 1)"
    if "_hist_" in name:
        score, method = name.split("_hist_", 1)
        return f"{score} distribution of ID, covariate-shifted and open-set test data: {method}"
    if name.startswith("roc_"):
        return f"ROC curves ({name[4:]}), ID test vs open-set"
    return name.replace("_", " ")
