"""Evaluate a predictions table (docs/architecture.md) into long metric tables, Kedro-free.

``score_predictions`` turns logits/embeddings into one OOD score column per registered score;
``threshold_free_metrics`` computes, per (method, seed), accuracy, threshold-free detection
metrics and the ``paper`` protocol; ``with_deploy_metrics`` adds the ``deploy`` rates at the
calibrated threshold (``evaluate_scores``: both); ``summarise`` takes
mean ± std (numpy ``std``, ddof = 0) over seeds.

Shifts (``shift_frames``): ``id`` (ID test), ``covariate`` (the held-out domain, all of it: every
covariate set pooled), ``covariate_novel`` (its images whose concept no training image shows),
``openset`` (every open-set class) and ``openset_near`` / ``openset_far`` (classes that share a
CLDR group with an ID class, or not; ``openset_kinds``). Classic detection metrics compare the
ID test set with each open-set part; full-spectrum ones (``fsood``, ``fsood_near``,
``fsood_far``; Yang et al. 2022, OpenOOD v1.5's ``fsood``) compare ``fsood_id`` = ID test ∪
covariate (covariate-shifted ID counts as ID) with them (``DETECTION_REFERENCE``).

A score parameter given as a list is a grid, chosen per method and seed on validation data only:
the AUROC of the ID validation split against the OOD validation split (open-set classes disjoint
from the test ones; OpenOOD's ``hyperparam_search``), never on a test split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from croft_pipeline.data.splits import novel_groups
from croft_pipeline.ood.calibration import calibrated_entry
from croft_pipeline.ood.metrics import (
    CORRECT_ID_METRICS,
    DETECTION_METRICS,
    auroc,
    correct_id_metrics,
    finite_scores,
    ood_metrics,
)
from croft_pipeline.ood.params import score_grid
from croft_pipeline.ood.protocols import apply_threshold, paper_protocol
from croft_pipeline.ood.scores import (
    NEGATIVE_SCORES,
    Negatives,
    ScoreInputs,
    compute_score,
    prediction_inputs,
    score_parameters,
)

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
    validation: dict[str, str] = field(
        default_factory=lambda: {"id": "val", "openset": "val_openset"}
    )
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
            validation=dict(params.get("validation", cls().validation)),
            paper_score=paper.get("score", "energy"),
            paper_reference=paper.get("reference", "covariate"),
        )


def score_column(name: str) -> str:
    return f"score_{name}"


NegativesSource = Callable[[str, int, pd.DataFrame, float], Negatives]
"""(method, seed, rows, largest share) -> that model's logits of the negative labels for rows."""


class ScoredSamples(NamedTuple):
    samples: pd.DataFrame  # one row per evaluated sample, a column per score
    choices: list[dict[str, Any]]  # the grid point chosen per method, seed and score


def score_predictions(
    predictions: pd.DataFrame,
    logit_scale: float,
    config: EvaluationConfig,
    negatives: NegativesSource | None = None,
) -> ScoredSamples:
    """One row per evaluated sample with ``predicted``, ``correct`` and a column per score, and
    the parameters chosen for each score with a grid (per method and seed)."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions table lacks columns {missing} (docs/architecture.md)")
    parts, choices = [], []
    for _, group in predictions.groupby(["method", "seed"], sort=True):
        part, chosen = _score_group(group, logit_scale, config, negatives)
        parts.append(part)
        choices += chosen
    return ScoredSamples(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), choices)


def _score_group(
    group: pd.DataFrame,
    logit_scale: float,
    config: EvaluationConfig,
    negatives: NegativesSource | None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    method, seed = group["method"].iloc[0], group["seed"].iloc[0]
    where = f"predictions of {method}, seed {seed}"
    evaluated = group["split"].isin(set(config.splits.values()))
    if not evaluated.any():
        raise ValueError(
            f"{where}: no rows of the evaluated splits {sorted(config.splits.values())}"
        )
    validation = group["split"].isin(set(config.validation.values()))
    rows = group[evaluated | validation]
    bank = group[group["split"] == config.knn_bank_split]
    inputs = prediction_inputs(rows, bank, logit_scale, where)

    def inputs_for(name: str, subset: np.ndarray | None, points: list[dict]) -> ScoreInputs:
        """The inputs of ``subset`` (all rows: None); a NegLabel score's carry the negative
        labels' logits up to the largest share of ``points``."""
        part = inputs if subset is None else inputs.subset(subset)
        if name not in NEGATIVE_SCORES:
            return part
        if negatives is None:
            raise ValueError("no negative labels given (embed's negative_labels)")
        share = max(score_parameters(name, point)["share"] for point in points)
        picked = rows if subset is None else rows.iloc[subset]
        return replace(part, negatives=negatives(method, int(seed), picked, share))

    logits = inputs.logits
    keep = rows["split"].isin(set(config.splits.values())).to_numpy()
    out = rows[SAMPLE_COLUMNS].copy()
    out["predicted"] = logits.argmax(axis=1)
    out["correct"] = out["predicted"].to_numpy() == out["label"].to_numpy()
    choices = []
    for name, params in config.scores.items():
        try:
            chosen, record = _choose(name, params, inputs_for, rows, config)
            values = compute_score(name, inputs_for(name, None, [chosen]), **chosen)
            out[score_column(name)] = values
        except (KeyError, ValueError) as error:
            raise ValueError(f"score {name!r} on {where}: {error}") from error
        if record is not None:
            choices.append({"method": method, "seed": int(seed), "score": name, **record})
    out = out[keep]
    try:
        novel = novel_groups(group, config.splits["covariate"])
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    out["novel"] = (out["split"] == config.splits["covariate"]) & out["group"].isin(novel)
    out["openset_kind"] = out["class_name"].map(config.openset_kinds).fillna("")
    return out, choices


def _choose(
    name: str,
    params: Mapping[str, Any],
    inputs_for: Callable[[str, np.ndarray | None, list[dict]], ScoreInputs],
    rows: pd.DataFrame,
    config: EvaluationConfig,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The parameters of score ``name``: its only point, or the grid point with the best AUROC of
    ID validation against OOD validation (the first on ties); a record of the choice for a
    grid. Without OOD validation rows, the score's defaults (recorded as such)."""
    grid = score_grid(params)
    if len(grid) == 1:
        return grid[0], None
    split = rows["split"].to_numpy()
    id_rows = np.flatnonzero(split == config.validation["id"])
    ood_rows = np.flatnonzero(split == config.validation["openset"])
    if not len(id_rows) or not len(ood_rows):
        chosen = _fallback(name, params)
        return chosen, {"params": chosen, "chosen_on": "fallback: no OOD validation rows"}
    both = np.concatenate([id_rows, ood_rows])
    validation = inputs_for(name, both, grid)
    aurocs = []
    for point in grid:
        values = compute_score(name, validation, **point)
        aurocs.append(auroc(values[: len(id_rows)], values[len(id_rows) :]))
    best = int(np.argmax(aurocs))
    return grid[best], {
        "params": grid[best],
        "chosen_on": f"AUROC {config.validation['id']} vs {config.validation['openset']}",
        "grid": [{"params": p, "auroc": a} for p, a in zip(grid, aurocs, strict=True)],
    }


def _fallback(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A grid's point without validation data: on each axis the score's default (the paper's
    value) where the axis holds it, else the axis's first value."""
    defaults = score_parameters(name)
    return {
        key: (defaults[key] if defaults[key] in value else value[0])
        if isinstance(value, list)
        else value
        for key, value in params.items()
    }


def evaluate_scores(
    sample_scores: pd.DataFrame,
    calibration: Mapping[str, Mapping[str, Mapping[str, Any]]],
    config: EvaluationConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables ``results`` (RESULT_COLUMNS) and ``domain_results`` (DOMAIN_COLUMNS): the
    threshold-free metrics (:func:`threshold_free_metrics`) and the deploy ones."""
    results, domains = threshold_free_metrics(sample_scores, config)
    return with_deploy_metrics(results, sample_scores, calibration, config), domains


def threshold_free_metrics(
    sample_scores: pd.DataFrame, config: EvaluationConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results`` and ``domain_results`` of everything but the calibrated threshold: accuracy,
    detection metrics and the paper protocol per (method, seed, shift); accuracy per domain."""
    rows: list[dict[str, Any]] = []
    domain_rows: list[dict[str, Any]] = []
    for (method, seed), by_shift in _units(sample_scores, config):
        rows += _rows(method, seed, _group_metrics(by_shift, config))
        for shift in ("id", "covariate"):
            if shift in by_shift:
                domain_rows += _domain_rows(by_shift[shift], method, seed, shift)
    return (
        pd.DataFrame(rows, columns=RESULT_COLUMNS),
        pd.DataFrame(domain_rows, columns=DOMAIN_COLUMNS),
    )


def with_deploy_metrics(
    results: pd.DataFrame,
    sample_scores: pd.DataFrame,
    calibration: Mapping[str, Mapping[str, Mapping[str, Any]]],
    config: EvaluationConfig,
) -> pd.DataFrame:
    """``results`` (threshold-free) and the deploy rows of every calibrated (method, seed): the
    share of each test set accepted as ID at its threshold."""
    rows: list[dict[str, Any]] = []
    for (method, seed), by_shift in _units(sample_scores, config):
        threshold = calibrated_entry(calibration, method, seed)
        if threshold is not None and "openset" in by_shift:
            rows += _rows(method, seed, _deploy_metrics(by_shift, threshold, config))
    deploy = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return pd.concat([results, deploy], ignore_index=True) if rows else results.copy()


def _units(sample_scores: pd.DataFrame, config: EvaluationConfig):
    """``((method, seed), frames by shift)`` of every (method, seed), sorted."""
    for (method, seed), group in sample_scores.groupby(["method", "seed"], sort=True):
        yield (method, int(seed)), shift_frames(group, config)


def _rows(method: str, seed: int, metrics) -> list[dict[str, Any]]:
    return [
        {"method": method, "seed": seed, "shift": shift, "metric": k, "value": v}
        for shift, values in metrics
        for k, v in values.items()
    ]


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
    if "id" in by_split and "covariate" in by_split:
        frames["fsood_id"] = pd.concat([by_split["id"], by_split["covariate"]])
    for shift in OPENSET_SHIFTS:
        if shift in frames:
            frames[FULL_SPECTRUM[shift]] = frames[shift]
    return {shift: frame for shift, frame in frames.items() if len(frame)}


ACCURACY_SHIFTS = ("id", "covariate", "covariate_novel", "fsood_id")
OPENSET_SHIFTS = ("openset", "openset_near", "openset_far")
FULL_SPECTRUM = {shift: shift.replace("openset", "fsood") for shift in OPENSET_SHIFTS}
# a detection shift -> the shift whose samples are its ID (positive) side
DETECTION_REFERENCE = {
    **dict.fromkeys(OPENSET_SHIFTS, "id"),
    **dict.fromkeys(FULL_SPECTRUM.values(), "fsood_id"),
}
DETECTION_SHIFTS = tuple(DETECTION_REFERENCE)
DEPLOY_METRICS = {
    "id": ("deploy_tpr",),
    "covariate": ("deploy_tpr",),
    "openset": ("deploy_fpr", "deploy_threshold"),
}
PAPER_METRICS = ("paper_fpr95_id_positive", "paper_auroc")  # on the openset shift


def evaluated_metrics(score_names) -> set[tuple[str, str]]:
    """Every ``(shift, metric)`` :func:`evaluate_scores` can report with these scores."""
    pairs = {(shift, "accuracy") for shift in ACCURACY_SHIFTS}
    pairs |= {
        (shift, f"{name}_{metric}")
        for shift in DETECTION_SHIFTS
        for name in score_names
        for metric in DETECTION_METRICS
    }
    pairs |= {
        (shift, f"{name}_{metric}")
        for shift in OPENSET_SHIFTS
        for name in score_names
        for metric in CORRECT_ID_METRICS
    }
    pairs |= {(shift, metric) for shift, names in DEPLOY_METRICS.items() for metric in names}
    return pairs | {("openset", metric) for metric in PAPER_METRICS}


def _group_metrics(by_shift: dict[str, pd.DataFrame], config):
    """``(shift, {metric: value})`` pairs for one method and seed, threshold-free."""
    for shift in ACCURACY_SHIFTS:
        if shift in by_shift:
            yield shift, {"accuracy": float(by_shift[shift]["correct"].mean())}
    openset = by_shift.get("openset")
    if openset is None:
        return
    for shift, reference in DETECTION_REFERENCE.items():
        if reference in by_shift and shift in by_shift:
            ident, ood = by_shift[reference], by_shift[shift]
            for name in config.scores:
                column = score_column(name)
                metrics = ood_metrics(ident[column], ood[column], config.tpr)
                if reference == "id":
                    metrics |= correct_id_metrics(
                        ident[column], ident["correct"], ood[column], config.tpr
                    )
                yield shift, {f"{name}_{metric}": value for metric, value in metrics.items()}
    reference = by_shift.get(config.paper_reference)
    if reference is not None and reference["correct"].any():
        column = score_column(config.paper_score)
        paper = paper_protocol(reference[column], reference["correct"], openset[column])
        yield "openset", {"paper_fpr95_id_positive": paper["fpr"], "paper_auroc": paper["auroc"]}


def _deploy_metrics(by_shift: dict[str, pd.DataFrame], threshold: dict, config):
    """The share accepted as ID at the calibrated threshold, applied unchanged to every test set.

    The threshold was fixed on a score with given parameters; comparing it with the same score
    under other parameters (``evaluate.scores``) would measure nothing, so that is an error.
    """
    name, value = threshold["score"], float(threshold["threshold"])
    column, openset = score_column(name), by_shift["openset"]
    if column not in openset.columns:
        raise ValueError(f"calibrated score {name!r} is not among evaluate.scores")
    if score_parameters(name, threshold.get("params")) != score_parameters(
        name, config.scores[name]
    ):
        raise ValueError(
            f"the threshold was calibrated on {name} with parameters {threshold.get('params')}, "
            f"but evaluate.scores.{name} is {config.scores[name]}: re-run the calibrate pipeline"
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
    """Every summary metric as a flat-ish JSON document of finite numbers (metrics.json):
    ``{method: {shift/metric: mean, shift/metric_std: std, domain/<d>/accuracy: mean}}``."""
    document: dict[str, dict[str, float]] = {}
    for row in summary.itertuples():
        entry = document.setdefault(row.method, {})
        put_finite(entry, f"{row.shift}/{row.metric}", row.mean)
        put_finite(entry, f"{row.shift}/{row.metric}_std", row.std)
    for row in domain_summary.itertuples():
        put_finite(document.setdefault(row.method, {}), f"domain/{row.domain}/accuracy", row.mean)
    return document


def put_finite(entry: dict[str, float], key: str, value: float) -> None:
    """``entry[key] = value`` rounded to 6 digits, when finite (JSON holds no NaN)."""
    if math.isfinite(float(value)):
        entry[key] = round(float(value), 6)
