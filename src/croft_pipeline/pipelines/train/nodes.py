"""Thin nodes of the train pipeline; the logic lives in :mod:`croft_pipeline.methods`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from croft_pipeline import tracking
from croft_pipeline.common.features import FeatureTable
from croft_pipeline.common.files import tensors_digest
from croft_pipeline.datasets import partition_reader
from croft_pipeline.distributed.jobs import Runner, worker_count
from croft_pipeline.methods import METHODS, partition_id
from croft_pipeline.methods.feature_sets import (
    center_features,
    class_text_features,
    eval_set,
    seed_rows,
    train_set,
)
from croft_pipeline.methods.fitted import fitted_model
from croft_pipeline.methods.params import method_config, method_grids
from croft_pipeline.methods.selection import varied_keys
from croft_pipeline.methods.train_summary import MethodSummary, SeedFit, SeedWise, TrainSummary
from croft_pipeline.methods.tuning import FitJob, FitOutcome, fit_all
from croft_pipeline.methods.wise import wise_name
from croft_pipeline.ood.scores import check_knn_k, score_parameters

ROW_COLUMNS = ["split", "sha256", "domain", "class_name", "group", "label"]
PROBED_SPLITS = ("test_id", "test_covariate")  # recorded per grid point, never selected on


def fit_methods(
    splits: pd.DataFrame,
    image_features_center: FeatureTable,
    image_features_train_views: FeatureTable,
    text_features: FeatureTable,
    id_classes: list[str],
    params: dict[str, Any],
    seeds: list[int],
    scores: dict[str, Any] | None = None,
    knn_bank_split: str = "train",
) -> tuple[dict[str, dict[str, torch.Tensor]], TrainSummary, dict[str, dict[str, str]]]:
    """Fit every method of ``params.methods`` for every seed: the grid point with the best ID
    validation accuracy, then its WiSE-FT interpolation (α on ID validation too).

    Before any fit, ``evaluate.scores.knn.k`` is checked against the KNN bank (the seed's
    ``knn_bank_split`` rows), the first place its size is known.
    Returns the weights by partition (``<method>/seed_<s>``), ``train_summary`` (a WiSE-FT
    point is an entry with its base method and α; its model is rebuilt from the base weights),
    and ``training_runs``: ``{method: {seed: MLflow run id}}`` (evaluation logs there), kept out
    of the summary so that equal fits give an equal summary file.
    """
    if scores and "knn" in scores:
        k = score_parameters("knn", scores["knn"])["k"]
        for seed in seeds:
            bank = len(seed_rows(splits, seed, knn_bank_split))
            check_knn_k(k, bank, f"evaluate.scores.knn.k (seed {seed}, split {knn_bank_split!r})")
    text, logit_scale = class_text_features(text_features, id_classes)
    configs = {name: method_config(params, name) for name in params["methods"]}  # names checked
    grids = method_grids(params, list(configs))
    alphas = tuple((params.get("wise") or {}).get("alphas") or ())
    data = {
        seed: {
            "train": train_set(splits, seed, image_features_train_views),
            "val": eval_set(splits, seed, "val", image_features_center),
            "probes": {s: eval_set(splits, seed, s, image_features_center) for s in PROBED_SPLITS},
        }
        for seed in seeds
    }
    jobs = [
        FitJob(
            name=name,
            seed=int(seed),
            config=configs[name],
            grid=grids[name],
            text_features=text,
            logit_scale=logit_scale,
            **data[seed],
            wise_alphas=alphas if METHODS[name].trains else (),
            num_threads=params.get("num_threads"),
        )
        for seed in seeds
        for name in configs
    ]
    workers = worker_count(params.get("workers", "auto"), len(jobs))
    outcomes = fit_all(jobs, workers, Runner.from_params(params, "train"))
    methods: dict[str, MethodSummary] = {}
    weights: dict[str, dict[str, torch.Tensor]] = {}
    runs: dict[str, dict[str, str]] = {}
    for outcome in outcomes:
        for name, run_id in _log_outcome(outcome, grids[outcome.name]).items():
            runs.setdefault(name, {})[str(outcome.seed)] = run_id
        _record(outcome, grids[outcome.name], methods, weights)
    summary = TrainSummary(logit_scale=logit_scale, id_classes=list(id_classes), methods=methods)
    return weights, summary, runs


HISTORY_KEYS = ("train_accuracy", "val_accuracy", "lr")


def _record(outcome: FitOutcome, grid, methods: dict[str, MethodSummary], weights: dict) -> None:
    """The outcome's summary entries and weights (its WiSE-FT point as a method of its own)."""
    name, seed = outcome.name, outcome.seed
    entry = methods.setdefault(
        name, MethodSummary(mode=getattr(METHODS[name], "mode", None), grid=grid, seeds={})
    )
    weights[partition_id(name, seed)] = outcome.state
    oracle = max(
        (row for row in outcome.grid if "probe" in row),
        key=lambda row: row["probe"].get("test_covariate", float("-inf")),
    )
    entry.seeds[seed] = SeedFit(
        config=outcome.config,
        best_epoch=outcome.report.best_epoch,
        best_val_accuracy=outcome.report.best_val_accuracy,
        zero_shot_val_accuracy=outcome.zero_shot_val_accuracy,
        history=[  # the selected point's epochs (dvc plots: validation_accuracy_curve)
            {"epoch": epoch, **{k: record[k] for k in HISTORY_KEYS if k in record}}
            for epoch, record in enumerate(outcome.report.history)
        ],
        grid=outcome.grid_rows(),
        oracle={"point": oracle["point"], **oracle["probe"]},
        adapter=partition_id(name, seed),  # its key in adapter_weights (catalog_train.yml)
        adapter_sha256=tensors_digest(outcome.state),
    )
    if outcome.wise is None:
        return
    wise = outcome.wise
    wise_entry = methods.setdefault(
        wise_name(name),
        MethodSummary(mode=entry.mode, base=name, space=wise["space"], seeds={}),
    )
    wise_entry.seeds[seed] = SeedWise(
        config=outcome.config,
        alpha=wise["alpha"],
        best_val_accuracy=wise["val_accuracy_by_alpha"][f"{wise['alpha']:g}"],
        val_accuracy_by_alpha=wise["val_accuracy_by_alpha"],
        adapter_sha256=entry.seeds[seed].adapter_sha256,
    )


def _log_outcome(outcome: FitOutcome, grid: dict[str, list[Any]]) -> dict[str, str]:
    """One nested MLflow run per method and seed (named by its kept grid point), one below it per
    grid point tried, and one for its WiSE-FT point; returns their ids by method name. The
    weights are artifacts of the pipeline's run (``adapter_weights``, catalog_train.yml)."""
    if not tracking.tracking_active():
        return {}
    name, seed = outcome.name, outcome.seed
    tags = {"method": name, "seed": str(seed), "mode": str(getattr(METHODS[name], "mode", None))}
    kept = {key: outcome.config[key] for key in varied_keys(grid) if key in outcome.config}
    title = tracking.run_name("fit", name, seed, kept)
    with tracking.child_run(title, tags={**tags, tracking.ROLE: "method"}) as run_id:
        tracking.log_params({"method": name, "seed": seed, **outcome.config, "grid": grid})
        tracking.log_history(outcome.report.history)
        values = {
            "best_val_accuracy": outcome.report.best_val_accuracy,
            "best_epoch": outcome.report.best_epoch,
            "zero_shot_val_accuracy": outcome.zero_shot_val_accuracy,
            "fit_seconds": outcome.seconds,  # every grid point (kept out of train_summary.json)
        }
        if outcome.wise is not None:
            values["wise_alpha"] = outcome.wise["alpha"]
        tracking.metric_logger()(0, values)
        for row in outcome.grid if len(outcome.grid) > 1 else []:
            shown = {k: v for k, v in row["point"].items() if k in varied_keys(grid)}
            point = tracking.run_name("grid", name, seed, shown)
            with tracking.child_run(point, tags={**tags, tracking.ROLE: "grid point"}):
                tracking.log_params(row["point"])
                tracking.log_history(row.get("history", []))
                final = {
                    f"best_{k}" if k == "val_accuracy" else k: row[k]
                    for k in ("val_accuracy", "best_epoch", "seconds")
                    if k in row
                }
                final.update({f"oracle_{k}": v for k, v in row.get("probe", {}).items()})
                tracking.metric_logger()(0, final)
        tracking.log_json_artifact(outcome.config, "config.json")
        tracking.log_json_artifact(outcome.grid_rows(), "grid.json")
    run_ids = {name: run_id}
    if outcome.wise is not None:
        run_ids[wise_name(name)] = _log_wise(outcome, tags)
    return run_ids


def _log_wise(outcome: FitOutcome, tags: dict[str, str]) -> str | None:
    """The WiSE-FT point as a run of its own, beside its base method's (a method of the report)."""
    wise, name = outcome.wise, wise_name(outcome.name)
    title = tracking.run_name("fit", name, outcome.seed, {"alpha": wise["alpha"]})
    with tracking.child_run(
        title, tags={**tags, "method": name, tracking.ROLE: "method"}
    ) as run_id:
        tracking.log_params(
            {
                "method": name,
                "base": outcome.name,
                "seed": outcome.seed,
                "alpha": wise["alpha"],
                "space": wise["space"],
            }
        )
        accuracy = wise["val_accuracy_by_alpha"][f"{wise['alpha']:g}"]
        tracking.metric_logger()(0, {"best_val_accuracy": accuracy, "wise_alpha": wise["alpha"]})
    return run_id


def predict_splits(
    splits: pd.DataFrame,
    image_features_center: FeatureTable,
    text_features: FeatureTable,
    adapter_weights: Mapping[str, Any],
    train_summary: TrainSummary,
) -> pd.DataFrame:
    """The ``predictions`` table: logits and adapted embedding of every split row (center view).

    Each model is rebuilt from its summary entry and saved weights, as serving does.
    """
    text, logit_scale = class_text_features(text_features, train_summary.id_classes)
    weights, frames = partition_reader(adapter_weights), []
    for name, entry in train_summary.methods.items():
        for seed in entry.seeds:
            model = fitted_model(name, entry, seed, weights, text, logit_scale)
            rows = seed_rows(splits, seed)  # every split, val_openset too
            features = center_features(rows, image_features_center)
            frame = rows[ROW_COLUMNS].reset_index(drop=True)
            frame.insert(0, "seed", seed)
            frame.insert(0, "method", name)
            frame["logits"] = list(model.logits(features).numpy())
            frame["embedding"] = list(model.embed(features).numpy())
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def validation_curve(train_summary: TrainSummary) -> pd.DataFrame:
    """ID-validation accuracy per epoch of each method's selected fit, mean over seeds, for
    ``dvc plots``: method, epoch, val_accuracy, n_seeds (zero-shot has no epochs)."""
    rows = [
        {"method": method, "seed": seed, "epoch": record["epoch"], "val": record["val_accuracy"]}
        for method, entry in train_summary.methods.items()
        if not entry.is_wise
        for seed, fit in entry.seeds.items()
        for record in fit.history
    ]
    columns = ["method", "epoch", "val_accuracy", "n_seeds"]
    if not rows:
        return pd.DataFrame(columns=columns)
    grouped = pd.DataFrame(rows).groupby(["method", "epoch"], sort=True)
    return grouped.agg(val_accuracy=("val", "mean"), n_seeds=("seed", "nunique")).reset_index()
