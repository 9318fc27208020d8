"""Thin Kedro nodes of the evaluate pipeline; the logic lives in ood, reporting and serving."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from croft_pipeline import tracking
from croft_pipeline.datasets import partition_value
from croft_pipeline.features import FeatureTable
from croft_pipeline.methods import partition_id
from croft_pipeline.ood.evaluation import (
    EvaluationConfig,
    evaluate_scores,
    metrics_document,
    score_predictions,
    summarise,
)
from croft_pipeline.reporting.report import build_plots, build_report
from croft_pipeline.serving.publish import choose_seed, publish_model, trained_runs


def score_samples(predictions: pd.DataFrame, train_summary: dict, params: dict) -> pd.DataFrame:
    """Every OOD score of every evaluated sample (higher = more in-distribution)."""
    config = EvaluationConfig.from_params(params)
    return score_predictions(predictions, float(train_summary["logit_scale"]), config)


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


def render_plots(
    evaluation_scores: pd.DataFrame, domain_summary: pd.DataFrame, calibration: dict, params: dict
) -> dict[str, bytes]:
    report = params["report"]
    return build_plots(
        evaluation_scores,
        domain_summary,
        calibration,
        params["splits"],
        score=report["plot_score"],
        bins=int(report["histogram_bins"]),
    )


def render_report(
    summary: pd.DataFrame, domain_summary: pd.DataFrame, plots: dict[str, Any], params: dict
) -> str:
    """The self-contained HTML report (plots as embedded PNGs)."""
    pngs = {name: partition_value(value) for name, value in plots.items()}
    return build_report(summary, domain_summary, pngs, params["report"]["title"])


def log_to_mlflow(
    results: pd.DataFrame,
    summary: pd.DataFrame,
    metrics: dict[str, Any],
    plots: dict[str, Any],
    report: str,
) -> None:
    """Summary metrics in the pipeline's run, per-seed metrics in nested runs, files as artifacts."""
    if not tracking.tracking_active():
        return
    log = tracking.metric_logger()
    log(0, {f"{r.method}/{r.shift}/{r.metric}": r.mean for r in summary.itertuples()})
    log(0, {f"{r.method}/{r.shift}/{r.metric}_std": r.std for r in summary.itertuples()})
    for (method, seed), group in results.groupby(["method", "seed"], sort=True):
        with tracking.child_run(
            f"evaluate/{method}/seed_{seed}", {"method": method, "seed": str(seed)}
        ):
            log(0, {f"{r.shift}/{r.metric}": r.value for r in group.itertuples()})
    tracking.log_json_artifact(metrics, "metrics.json", "evaluation")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "report.html").write_text(report, encoding="utf-8")
        summary.to_csv(folder / "summary.csv", index=False)
        tracking.log_file_artifact(folder / "report.html", "evaluation")
        tracking.log_file_artifact(folder / "summary.csv", "evaluation")
        for name, value in plots.items():
            (folder / f"{name}.png").write_bytes(partition_value(value))
            tracking.log_file_artifact(folder / f"{name}.png", "evaluation/plots")


def register_model(
    train_summary: dict,
    calibration: dict,
    text_features: FeatureTable,
    clip_model_spec: dict,
    adapter_weights: dict[str, Any],
    summary: pd.DataFrame,
    project_dir: str,
    clip: dict,
    params: dict,
) -> dict[str, Any]:
    """Log the served model as a pyfunc, register it as `candidate`; `champion` if gates pass.

    The served CLIP encodes at ``clip.precision``, as the embed pipeline did.
    """
    register = params["register"]
    if not register.get("enabled", True):
        return {"registered": False, "reason": "evaluate.register.enabled is false"}
    runs = trained_runs(train_summary, register["method"])
    seed = choose_seed(runs, register.get("seed"))
    stored = adapter_weights[partition_id(register["method"], int(seed))]
    registration = publish_model(
        train_summary,
        calibration,
        text_features,
        clip_model_spec,
        summary,
        project_dir,
        clip.get("precision", "fp32"),
        seed,
        partition_value(stored),
        register,
        params["gates"],
    )
    tracking.log_json_artifact(registration, "model_registration.json", "evaluation")
    return {"registered": True, **registration}
