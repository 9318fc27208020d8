"""Thin Kedro nodes of the score pipeline: every OOD score of every evaluated sample, the
threshold-free metrics and their paired intervals, the WiSE-FT curves and the DVC curve tables.
Nothing here reads the calibrated threshold, so a change to ``calibrate`` leaves it alone."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.datasets import partition_reader
from croft_pipeline.methods.feature_sets import center_features, class_text_features, eval_set
from croft_pipeline.methods.fitted import fitted_model, zero_shot_model
from croft_pipeline.methods.train_summary import TrainSummary
from croft_pipeline.methods.wise import curve, wise_name
from croft_pipeline.ood.comparisons import ComparisonConfig, compare_methods
from croft_pipeline.ood.evaluation import (
    EvaluationConfig,
    score_predictions,
    summarise,
    threshold_free_metrics,
)
from croft_pipeline.ood.neglabel import kept_columns
from croft_pipeline.ood.scores import Negatives
from croft_pipeline.publishing.publish import interval_gate_pairs
from croft_pipeline.reporting.curves import histogram_table, roc_table, scores_by_shift

WISE_CURVE_SPLITS = ("val", "test_id", "test_covariate")


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
    evaluation_scores: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per method and seed: accuracy, detection metrics and the paper protocol (no threshold:
    the deploy rates are evaluate's, from the calibrated one); accuracy per domain."""
    return threshold_free_metrics(evaluation_scores, EvaluationConfig.from_params(params))


def compare_with_intervals(
    evaluation_scores: pd.DataFrame, score_results: pd.DataFrame, params: dict
) -> pd.DataFrame:
    """Paired differences with bootstrap intervals: every method against zero-shot, CRoFT against
    its no-EDR ablation and the best baseline (by mean over seeds), and every pair an interval
    gate needs; all on threshold-free metrics."""
    return compare_methods(
        evaluation_scores,
        summarise(score_results),
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


def tabulate_curves(evaluation_scores: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, ...]:
    """The ROC points and score histograms of the plot score, as tables (dvc plots)."""
    report = params["report"]
    by_method = scores_by_shift(evaluation_scores, params["splits"], report["plot_score"])
    return roc_table(by_method), histogram_table(by_method)
