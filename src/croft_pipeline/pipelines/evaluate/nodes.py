"""Thin Kedro nodes of the evaluate pipeline: the calibrated threshold applied to the scored
samples, the summary, plots, report, MLflow and the registry; the logic lives in ood, reporting
and publishing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from croft_pipeline import tracking
from croft_pipeline.common.features import FeatureTable
from croft_pipeline.common.files import atomic_write_json
from croft_pipeline.datasets import partition_reader, partition_value
from croft_pipeline.methods.train_summary import TrainSummary
from croft_pipeline.ood.comparisons import ComparisonConfig
from croft_pipeline.ood.evaluation import (
    EvaluationConfig,
    metrics_document,
    summarise,
    with_deploy_metrics,
)
from croft_pipeline.publishing.experiments import aliases_stay, held_reason
from croft_pipeline.publishing.gates import GateResult, check_gates, gate_lines, gates_outcome
from croft_pipeline.publishing.params import with_model_name
from croft_pipeline.publishing.publish import held_registration, publish_model
from croft_pipeline.reporting.headline import headline_metrics
from croft_pipeline.reporting.report import build_plots, build_report, gates_section
from croft_pipeline.reporting.tables import headline_rows
from croft_pipeline.tracking.provenance import Provenance

logger = logging.getLogger(__name__)

EVALUATED_IN = "croft.evaluated_in"  # on a training run: the run that logged its test metrics


def apply_threshold(
    evaluation_scores: pd.DataFrame, score_results: pd.DataFrame, calibration: dict, params: dict
) -> pd.DataFrame:
    """``score_results`` and the deploy rates: the share of each test set accepted as ID at each
    method and seed's calibrated threshold."""
    config = EvaluationConfig.from_params(params)
    return with_deploy_metrics(score_results, evaluation_scores, calibration, config)


def summarise_metrics(
    results: pd.DataFrame, domain_results: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Mean ± std over seeds, and the DVC metrics document."""
    summary = summarise(results)
    domain_summary = summarise(
        domain_results.rename(columns={"accuracy": "value"}), ("method", "shift", "domain")
    )
    return summary, domain_summary, metrics_document(summary, domain_summary)


def summarise_headline(
    summary: pd.DataFrame, comparisons: pd.DataFrame, params: dict
) -> dict[str, Any]:
    """The served method's and its gate baselines' headline metrics and the gates' figures
    (headline.json: the metrics DVC compares across experiments)."""
    score = ComparisonConfig.from_params(params.get("comparisons")).score
    return headline_metrics(
        summary, comparisons, params["gates"], params["register"]["method"], score
    )


def render_plots(
    evaluation_scores: pd.DataFrame,
    summary: pd.DataFrame,
    domain_summary: pd.DataFrame,
    wise_curves: pd.DataFrame,
    calibration: dict,
    params: dict,
) -> dict[str, bytes]:
    report = params["report"]
    return build_plots(
        evaluation_scores,
        summary,
        domain_summary,
        wise_curves,
        calibration,
        params["splits"],
        score=report["plot_score"],
    )


def render_report(
    summary: pd.DataFrame,
    domain_summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    train_summary: TrainSummary,
    plots: dict[str, Any],
    evaluation_scores: pd.DataFrame,
    calibration: dict,
    provenance: Provenance,
    params: dict,
) -> str:
    """The self-contained HTML report (plots as embedded PNGs), opening with its provenance, the
    quality gates of the method ``register_model`` will register, and the verdict."""
    pngs = {name: partition_value(value) for name, value in plots.items()}
    register = params["register"]
    gates = (
        gates_section(
            register["method"],
            check_gates(summary, comparisons, params["gates"], register["method"]),
            register["champion_alias"],
            held_reason(register, provenance),
        )
        if register.get("enabled", True)
        else None
    )
    return build_report(
        summary,
        domain_summary,
        comparisons,
        train_summary,
        pngs,
        params["report"]["title"],
        sample_scores=evaluation_scores,
        splits=params["splits"],
        provenance=provenance,
        gates=gates,
        calibration=calibration,
        served=register["method"] if gates is not None else None,
    )


def log_to_mlflow(
    results: pd.DataFrame, summary: pd.DataFrame, report: str, training_runs: dict
) -> dict[str, Any]:
    """Summary metrics in the pipeline's run, per-seed metrics in nested runs; and each method's
    headline metrics per seed on its training run (``training_runs``), so that MLflow's
    compare-runs view is the method table. The report, tables, plots and ``metrics.json`` are
    artifacts of their catalog entries (``MlflowArtifactDataset``, catalog_evaluate.yml).

    Returns what it logged (registration waits for it, and it for the report: a model is
    registered last)."""
    del report  # an input only so that this node, and so registration, runs after the report
    if not tracking.tracking_active():
        return {"logged": False}
    evaluated = _log_on_training_runs(results, training_runs)
    log = tracking.metric_logger()
    log(0, {f"{r.method}/{r.shift}/{r.metric}": r.mean for r in summary.itertuples()})
    log(0, {f"{r.method}/{r.shift}/{r.metric}_std": r.std for r in summary.itertuples()})
    for (method, seed), group in results.groupby(["method", "seed"], sort=True):
        tags = {"method": method, "seed": str(seed), tracking.ROLE: "evaluation"}
        with tracking.child_run(tracking.run_name("evaluate", method, seed), tags):
            log(0, {f"{r.shift}/{r.metric}": r.value for r in group.itertuples()})
    return {"logged": True, "metrics": len(summary), "runs": len(evaluated)}


def _log_on_training_runs(results: pd.DataFrame, training_runs: dict) -> list[str]:
    """The results table's rows (accuracy, headline detection, deploy, paper) of each method and
    seed as ``<shift>/<metric>`` on the method's training run, tagged with this run's id."""
    headline = headline_rows(results)
    values = {
        run_id: {
            f"{r.shift}/{r.metric}": r.value
            for r in headline[
                (headline["method"] == method) & (headline["seed"] == int(seed))
            ].itertuples()
        }
        for method, seeds in training_runs.items()
        for seed, run_id in seeds.items()
    }
    return tracking.log_to_recorded_runs(values, {EVALUATED_IN: tracking.active_run_id()})


def register_model(
    train_summary: TrainSummary,
    calibration: dict,
    text_features: FeatureTable,
    clip_model_spec: dict,
    adapter_weights: dict[str, Any],
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    logged: dict,
    predictions: pd.DataFrame,
    evaluation_scores: pd.DataFrame,
    image_features_center: FeatureTable,
    project_dir: str,
    provenance: Provenance,
    clip: dict,
    params: dict,
    ingest: dict,
) -> dict[str, Any]:
    """Log the served model as a pyfunc, register it as `candidate`; `champion` if gates pass.

    Runs after the report and the MLflow logging (``logged``), so a run that fails earlier never
    registers a version. It writes ``register.registration_file`` itself, last: if that or the
    registration artifact fails, the aliases move back and the version is deleted. The served
    CLIP encodes at ``clip.precision``, as embed did; when ``evaluate.scores`` has ``knn``, the
    model serves it with the bank evaluation used (from ``predictions``). The registered model is
    named after the dataset (``ingest``) unless ``register.model_name`` names it. An experiment
    (``provenance``) registers nothing unless asked: it records its gates and why
    (``publishing.experiments``).
    """
    del logged  # an input only so that Kedro runs this node last
    register = with_model_name(params["register"], ingest)
    evaluation = EvaluationConfig.from_params(params)
    path = Path(project_dir) / register["registration_file"]
    if not register.get("enabled", True):
        document = {"registered": False, "reason": "evaluate.register.enabled is false"}
        atomic_write_json(path, document)
        return document

    def record(document: dict[str, Any]) -> None:
        tracking.log_json_artifact(document, "model_registration.json", "evaluation")
        atomic_write_json(path, document)

    if held := held_reason(register, provenance):
        document = held_registration(
            train_summary, summary, comparisons, register, params["gates"], held
        )
        record(document)
        log_registration(document, register["champion_alias"])
        return document

    registration = publish_model(
        train_summary,
        calibration,
        text_features,
        clip_model_spec,
        summary,
        comparisons,
        evaluation_scores,
        image_features_center,
        project_dir,
        clip.get("precision", "fp32"),
        partition_reader(adapter_weights),
        register,
        params["gates"],
        lambda registration: record({"registered": True, **registration}),
        predictions,
        evaluation.scores.get("knn"),
        evaluation.knn_bank_split,
        provenance,
    )
    document = {"registered": True, **registration}
    log_registration(document, register["champion_alias"])
    return document


def log_registration(registration: dict[str, Any], champion_alias: str) -> None:
    """The gates' lines, what they did, and the registered version with its aliases (or, for a
    run that registers nothing, why and where the aliases stay): the last lines of
    ``evaluate``'s log."""
    results = [GateResult(**gate) for gate in registration["gates"]]
    for line in gate_lines(results):
        logger.info("gate %s", line)
    held = "" if registration["registered"] else registration["reason"]
    logger.info("gates: %s", gates_outcome(results, champion_alias, held))
    if held:
        logger.info("registered nothing: %s", aliases_stay(registration))
        return
    logger.info(
        "registered %s as %s",
        registration["model_uri"],
        ", ".join(f"@{alias}" for alias in registration["aliases"]),
    )
