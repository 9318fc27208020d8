"""Thin Kedro nodes of the evaluate pipeline; the logic lives in ood, reporting and serving."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from croft_pipeline import tracking
from croft_pipeline.common.features import FeatureTable
from croft_pipeline.common.files import atomic_write_json
from croft_pipeline.datasets import partition_reader, partition_value
from croft_pipeline.methods.feature_sets import center_features, class_text_features, eval_set
from croft_pipeline.methods.fitted import fitted_model, zero_shot_model
from croft_pipeline.methods.train_summary import TrainSummary
from croft_pipeline.methods.wise import curve, wise_name
from croft_pipeline.ood.comparisons import ComparisonConfig, compare_methods
from croft_pipeline.ood.evaluation import (
    EvaluationConfig,
    evaluate_scores,
    metrics_document,
    score_predictions,
    summarise,
)
from croft_pipeline.ood.neglabel import kept_columns
from croft_pipeline.ood.scores import Negatives
from croft_pipeline.publishing.experiments import aliases_stay, held_reason
from croft_pipeline.publishing.gates import GateResult, check_gates, gate_lines, gates_outcome
from croft_pipeline.publishing.params import with_model_name
from croft_pipeline.publishing.publish import (
    held_registration,
    interval_gate_pairs,
    publish_model,
)
from croft_pipeline.reporting.curves import histogram_table, roc_table, scores_by_shift
from croft_pipeline.reporting.report import build_plots, build_report, gates_section
from croft_pipeline.reporting.tables import headline_rows
from croft_pipeline.tracking.provenance import Provenance

logger = logging.getLogger(__name__)

WISE_CURVE_SPLITS = ("val", "test_id", "test_covariate")
EVALUATED_IN = "croft.evaluated_in"  # on a training run: the run that logged its test metrics


def score_samples(
    predictions: pd.DataFrame,
    train_summary: TrainSummary,
    openset_kinds: dict,
    negative_labels: FeatureTable,
    image_features_center: FeatureTable,
    text_features: FeatureTable,
    adapter_weights: dict[str, Any],
    params: dict,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every OOD score of every evaluated sample (higher = more in-distribution), and the
    parameters chosen on validation data for each score given a grid."""
    config = EvaluationConfig.from_params(params, openset_kinds)
    text, logit_scale = class_text_features(text_features, train_summary.id_classes)
    if negative_labels.meta.get("id_classes") != list(train_summary.id_classes):
        raise ValueError(
            "negative_labels were mined against other ID classes than train_summary.json's: "
            "rerun `kedro run --pipeline=embed`"
        )
    weights = partition_reader(adapter_weights)
    shares = np.asarray(negative_labels.meta["shares"], dtype=np.float64)
    candidates = negative_labels.features[:, 0]

    @functools.cache
    def model(method: str, seed: int):
        return fitted_model(method, train_summary.methods[method], seed, weights, text, logit_scale)

    def negatives(method: str, seed: int, rows: pd.DataFrame, largest: float) -> Negatives:
        kept = kept_columns(shares, largest)
        features = center_features(rows, image_features_center)
        logits = model(method, seed).negative_logits(features, candidates[kept])
        return Negatives(logits.numpy(), shares[kept])

    return tuple(score_predictions(predictions, logit_scale, config, negatives))


def compute_metrics(
    evaluation_scores: pd.DataFrame, calibration: dict, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per method and seed: accuracy, detection metrics, deploy and paper protocols; per domain."""
    return evaluate_scores(evaluation_scores, calibration, EvaluationConfig.from_params(params))


def summarise_metrics(
    results: pd.DataFrame, domain_results: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Mean ± std over seeds, and the DVC metrics document."""
    summary = summarise(results)
    domain_summary = summarise(
        domain_results.rename(columns={"accuracy": "value"}), ("method", "shift", "domain")
    )
    return summary, domain_summary, metrics_document(summary, domain_summary)


def compare_with_intervals(
    evaluation_scores: pd.DataFrame, summary: pd.DataFrame, params: dict
) -> pd.DataFrame:
    """Paired differences with bootstrap intervals: every method against zero-shot, CRoFT against
    its no-EDR ablation and the best baseline, and every pair an interval gate needs."""
    return compare_methods(
        evaluation_scores,
        summary,
        EvaluationConfig.from_params(params),
        ComparisonConfig.from_params(params.get("comparisons")),
        interval_gate_pairs(params["register"], params["gates"]),
    )


def trace_wise_curves(
    splits: pd.DataFrame,
    image_features_center: FeatureTable,
    text_features: FeatureTable,
    adapter_weights: dict[str, Any],
    train_summary: TrainSummary,
    wise: dict,
) -> pd.DataFrame:
    """Accuracy on val, ID test and the held-out domain at every WiSE-FT α of every method."""
    text, logit_scale = class_text_features(text_features, train_summary.id_classes)
    weights, rows = partition_reader(adapter_weights), []
    for name, entry in train_summary.methods.items():
        if wise_name(name) not in train_summary.methods:
            continue
        for seed, run in entry.seeds.items():
            model = fitted_model(name, entry, seed, weights, text, logit_scale)
            zero_shot = zero_shot_model(text, logit_scale, run.config["device"])
            sets = {
                split: _tensors(eval_set(splits, seed, split, image_features_center))
                for split in WISE_CURVE_SPLITS
            }
            for row in curve(model, zero_shot, wise["alphas"], sets):
                rows.append({"method": name, "seed": seed, **row})
    return pd.DataFrame(rows, columns=["method", "seed", "alpha", "split", "accuracy"])


def _tensors(data):
    return data.features, data.labels


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


def tabulate_curves(evaluation_scores: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, ...]:
    """The ROC points and score histograms of the plot score, as tables (dvc plots)."""
    report = params["report"]
    by_method = scores_by_shift(evaluation_scores, params["splits"], report["plot_score"])
    return roc_table(by_method), histogram_table(by_method)


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
