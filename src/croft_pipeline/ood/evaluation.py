"""Evaluate a predictions table (docs/architecture.md) into long metric tables, Kedro-free.

``score_predictions`` turns logits/embeddings into one OOD score column per registered score;
``evaluate_scores`` computes, per (method, seed), accuracy, threshold-free detection metrics,
the ``deploy`` rates at the calibrated threshold and the ``paper`` protocol; ``summarise`` takes
mean ± std (numpy ``std``, ddof = 0) over seeds.

Shifts (``shift_frames``): ``id`` (ID test), ``covariate`` (the held-out domain, all of it),
``covariate_novel`` (its images whose concept no training image shows), ``openset`` (every
open-set class) and ``openset_near`` / ``openset_far`` (classes that share a CLDR group with an
ID class, or not; ``openset_kinds``). Detection metrics compare the ID test set with each
open-set part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from croft_pipeline.data.splits import novel_groups
from croft_pipeline.ood.calibration import calibrated_entry
from croft_pipeline.ood.metrics import DETECTION_METRICS, finite_scores, ood_metrics
from croft_pipeline.ood.protocols import apply_threshold, paper_protocol
from croft_pipeline.ood.scores import compute_score, prediction_inputs, score_parameters

RESULT_COLUMNS = ["method", "seed", "shift", "metric", "value"]
DOMAIN_COLUMNS = ["method", "seed", "shift", "domain", "n", "accuracy"]
PREDICTION_COLUMNS = (
    "method",
    "seed",
    "split",
    "sha256",
    "domain",
    "class_name",
    "group",
    "label",
    "logits",
    "embedding",
)
SAMPLE_COLUMNS = ["method", "seed", "split", "sha256", "domain", "class_name", "group", "label"]
OPENSET_KINDS = ("near", "far")


@dataclass(frozen=True)
class EvaluationConfig:
    """What to compute; built from ``params:evaluate`` by :meth:`from_params`."""

    scores: dict[str, dict[str, Any]] = field(default_factory=lambda: {"energy": {}})
    tpr: float = 0.95
    splits: dict[str, str] = field(
        default_factory=lambda: {
            "id": "test_id",
            "covariate": "test_covariate",
            "openset": "test_openset",
        }
    )
    knn_bank_split: str = "train"
    paper_score: str = "energy"
    paper_reference: str = "covariate"
    openset_kinds: dict[str, str] = field(default_factory=dict)  # open-set class -> near | far

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], openset_kinds: Mapping[str, str] | None = None
    ) -> EvaluationConfig:
        paper = params.get("paper", {})
        unknown = sorted(set((openset_kinds or {}).values()) - set(OPENSET_KINDS))
        if unknown:
            raise ValueError(f"openset kinds must be one of {OPENSET_KINDS}, got {unknown}")
        return cls(
            openset_kinds=dict(openset_kinds or {}),
            scores={
                name: dict(p or {}) for name, p in params.get("scores", {"energy": {}}).items()
            },
            tpr=float(params.get("tpr", 0.95)),
            splits=dict(params.get("splits", cls().splits)),
            knn_bank_split=params.get("knn_bank_split", "train"),
            paper_score=paper.get("score", "energy"),
            paper_reference=paper.get("reference", "covariate"),
        )


def score_column(name: str) -> str:
    return f"score_{name}"


def score_predictions(
    predictions: pd.DataFrame, logit_scale: float, config: EvaluationConfig
) -> pd.DataFrame:
    """One row per evaluated sample with ``predicted``, ``correct`` and a column per score."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions table lacks columns {missing} (docs/architecture.md)")
    parts = [
        _score_group(group, logit_scale, config)
        for _, group in predictions.groupby(["method", "seed"], sort=True)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _score_group(group: pd.DataFrame, logit_scale: float, config: EvaluationConfig) -> pd.DataFrame:
    method, seed = group["method"].iloc[0], group["seed"].iloc[0]
    where = f"predictions of {method}, seed {seed}"
    rows = group[group["split"].isin(set(config.splits.values()))]
    if rows.empty:
        raise ValueError(
            f"{where}: no rows of the evaluated splits {sorted(config.splits.values())}"
        )
    bank = group[group["split"] == config.knn_bank_split]
    inputs = prediction_inputs(rows, bank, logit_scale, where)
    logits = inputs.logits
    out = rows[SAMPLE_COLUMNS].copy()
    out["predicted"] = logits.argmax(axis=1)
    out["correct"] = out["predicted"].to_numpy() == out["label"].to_numpy()
    for name, params in config.scores.items():
        try:
            out[score_column(name)] = compute_score(name, inputs, **params)
        except (KeyError, ValueError) as error:
            raise ValueError(f"score {name!r} on {where}: {error}") from error
    try:
        novel = novel_groups(group, config.splits["covariate"])
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    out["novel"] = (out["split"] == config.splits["covariate"]) & out["group"].isin(novel)
    out["openset_kind"] = out["class_name"].map(config.openset_kinds).fillna("")
    return out


def evaluate_scores(
    sample_scores: pd.DataFrame,
    calibration: Mapping[str, Mapping[str, Mapping[str, Any]]],
    config: EvaluationConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables ``results`` (RESULT_COLUMNS) and ``domain_results`` (DOMAIN_COLUMNS)."""
    rows: list[dict[str, Any]] = []
    domain_rows: list[dict[str, Any]] = []
    for (method, seed), group in sample_scores.groupby(["method", "seed"], sort=True):
        by_shift = shift_frames(group, config)
        threshold = calibrated_entry(calibration, method, seed)
        for shift, values in _group_metrics(by_shift, threshold, config):
            rows += [
                {"method": method, "seed": int(seed), "shift": shift, "metric": k, "value": v}
                for k, v in values.items()
            ]
        for shift in ("id", "covariate"):
            if shift in by_shift:
                domain_rows += _domain_rows(by_shift[shift], method, int(seed), shift)
    return (
        pd.DataFrame(rows, columns=RESULT_COLUMNS),
        pd.DataFrame(domain_rows, columns=DOMAIN_COLUMNS),
    )


def shift_frames(samples: pd.DataFrame, config: EvaluationConfig) -> dict[str, pd.DataFrame]:
    """One method and seed's scored samples by shift (module docstring); empty parts left out."""
    by_split = {shift: samples[samples["split"] == split] for shift, split in config.splits.items()}
    frames = dict(by_split)
    if "covariate" in by_split:
        frames["covariate_novel"] = by_split["covariate"][by_split["covariate"]["novel"]]
    if "openset" in by_split:
        for kind in OPENSET_KINDS:
            openset = by_split["openset"]
            frames[f"openset_{kind}"] = openset[openset["openset_kind"] == kind]
    return {shift: frame for shift, frame in frames.items() if len(frame)}


ACCURACY_SHIFTS = ("id", "covariate", "covariate_novel")
OPENSET_SHIFTS = ("openset", "openset_near", "openset_far")
DEPLOY_METRICS = {
    "id": ("deploy_tpr",),
    "covariate": ("deploy_tpr",),
    "openset": ("deploy_fpr", "deploy_threshold"),
}
PAPER_METRICS = ("paper_fpr95", "paper_auroc")  # on the openset shift


def evaluated_metrics(score_names) -> set[tuple[str, str]]:
    """Every ``(shift, metric)`` :func:`evaluate_scores` can report with these scores."""
    pairs = {(shift, "accuracy") for shift in ACCURACY_SHIFTS}
    pairs |= {
        (shift, f"{name}_{metric}")
        for shift in OPENSET_SHIFTS
        for name in score_names
        for metric in DETECTION_METRICS
    }
    pairs |= {(shift, metric) for shift, names in DEPLOY_METRICS.items() for metric in names}
    return pairs | {("openset", metric) for metric in PAPER_METRICS}


def _group_metrics(by_shift: dict[str, pd.DataFrame], threshold: dict | None, config):
    """``(shift, {metric: value})`` pairs for one method and seed."""
    for shift in ACCURACY_SHIFTS:
        if shift in by_shift:
            yield shift, {"accuracy": float(by_shift[shift]["correct"].mean())}
    openset = by_shift.get("openset")
    if openset is None:
        return
    for shift in OPENSET_SHIFTS:
        if "id" in by_shift and shift in by_shift:
            for name in config.scores:
                column = score_column(name)
                metrics = ood_metrics(by_shift["id"][column], by_shift[shift][column], config.tpr)
                yield shift, {f"{name}_{metric}": value for metric, value in metrics.items()}
    if threshold is not None:
        yield from _deploy_metrics(by_shift, openset, threshold, config)
    reference = by_shift.get(config.paper_reference)
    if reference is not None and reference["correct"].any():
        column = score_column(config.paper_score)
        paper = paper_protocol(reference[column], reference["correct"], openset[column])
        yield "openset", {"paper_fpr95": paper["fpr"], "paper_auroc": paper["auroc"]}


def _deploy_metrics(
    by_shift: dict[str, pd.DataFrame], openset: pd.DataFrame, threshold: dict, config
):
    """The share accepted as ID at the calibrated threshold, applied unchanged to every test set.

    The threshold was fixed on a score with given parameters; comparing it with the same score
    under other parameters (``evaluate.scores``) would measure nothing, so that is an error.
    """
    name, value = threshold["score"], float(threshold["threshold"])
    column = score_column(name)
    if column not in openset.columns:
        raise ValueError(f"calibrated score {name!r} is not among evaluate.scores")
    if score_parameters(name, threshold.get("params")) != score_parameters(
        name, config.scores[name]
    ):
        raise ValueError(
            f"the threshold was calibrated on {name} with parameters {threshold.get('params')}, "
            f"but evaluate.scores.{name} is {config.scores[name]}: re-run the train pipeline"
        )
    for shift in ("id", "covariate"):
        if shift in by_shift:
            yield shift, {"deploy_tpr": accepted_share(by_shift[shift][column], value)}
    yield (
        "openset",
        {"deploy_fpr": accepted_share(openset[column], value), "deploy_threshold": value},
    )


def accepted_share(scores, threshold: float) -> float:
    return float(apply_threshold(finite_scores(scores, "scores"), threshold).mean())


def _domain_rows(frame: pd.DataFrame, method: str, seed: int, shift: str) -> list[dict[str, Any]]:
    per_domain = frame.groupby("domain", sort=True)["correct"].agg(["size", "mean"])
    return [
        {
            "method": method,
            "seed": seed,
            "shift": shift,
            "domain": str(domain),
            "n": int(row["size"]),
            "accuracy": float(row["mean"]),
        }
        for domain, row in per_domain.iterrows()
    ]


def summarise(
    results: pd.DataFrame, keys: tuple[str, ...] = ("method", "shift", "metric")
) -> pd.DataFrame:
    """Mean and std (ddof = 0) over seeds of a long table's ``value`` column."""
    grouped = results.groupby(list(keys), sort=True)["value"]
    summary = grouped.agg(mean="mean", std=lambda v: float(np.std(v)), n_seeds="count")
    return summary.reset_index()


def non_finite_metrics(summary: pd.DataFrame) -> list[str]:
    """``method/shift/metric`` of every summary row whose mean or std is not finite."""
    bad = ~np.isfinite(summary["mean"].astype(float)) | ~np.isfinite(summary["std"].astype(float))
    return [f"{r.method}/{r.shift}/{r.metric}" for r in summary[bad].itertuples()]


def metrics_document(summary: pd.DataFrame, domain_summary: pd.DataFrame) -> dict[str, Any]:
    """A flat-ish JSON document of finite numbers for DVC: ``{method: {shift/metric: mean}}``."""
    document: dict[str, dict[str, float]] = {}
    for row in summary.itertuples():
        entry = document.setdefault(row.method, {})
        _put_finite(entry, f"{row.shift}/{row.metric}", row.mean)
        _put_finite(entry, f"{row.shift}/{row.metric}_std", row.std)
    for row in domain_summary.itertuples():
        _put_finite(document.setdefault(row.method, {}), f"domain/{row.domain}/accuracy", row.mean)
    return document


def _put_finite(entry: dict[str, float], key: str, value: float) -> None:
    if math.isfinite(float(value)):
        entry[key] = round(float(value), 6)
