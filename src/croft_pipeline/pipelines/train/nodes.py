"""Thin nodes of the train pipeline; the logic lives in :mod:`croft_pipeline.methods`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import save_file

from croft_pipeline import tracking
from croft_pipeline.datasets import partition_value
from croft_pipeline.features import FeatureTable
from croft_pipeline.methods import (
    METHODS,
    EvalSet,
    LogFn,
    Selected,
    TrainSet,
    fit_selected,
    partition_id,
    restore_method,
)
from croft_pipeline.methods.feature_sets import (
    center_features,
    class_text_features,
    eval_set,
    method_config,
    seed_rows,
    train_set,
)
from croft_pipeline.methods.selection import point_label
from croft_pipeline.ood.calibration import calibrate_thresholds
from croft_pipeline.ood.evaluation import EvaluationConfig
from croft_pipeline.runtime import torch_threads

PREDICTED_SPLITS = ("train", "val", "test_id", "test_covariate", "test_openset")
ROW_COLUMNS = ["split", "sha256", "domain", "class_name", "label"]


def fit_methods(
    splits: pd.DataFrame,
    image_features_center: FeatureTable,
    image_features_train_views: FeatureTable,
    text_features: FeatureTable,
    id_classes: list[str],
    params: dict[str, Any],
    seeds: list[int],
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Fit every method of ``params.methods`` for every seed (grid point chosen on ID val).

    Returns the adapter weights by partition (``<method>/seed_<s>``) and ``train_summary``.
    """
    text, logit_scale = class_text_features(text_features, id_classes)
    configs = {name: method_config(params, name) for name in params["methods"]}  # names checked
    methods = {
        name: {
            "mode": getattr(METHODS[name], "mode", None),
            "grid": dict(params.get("grids", {}).get(name) or {}),
            "seeds": {},
        }
        for name in configs
    }
    weights: dict[str, dict[str, torch.Tensor]] = {}
    with torch_threads(params.get("num_threads")):
        for seed in seeds:
            train = train_set(splits, seed, image_features_train_views)
            val = eval_set(splits, seed, "val", image_features_center)
            for name, entry in methods.items():
                selected = _fit_tracked(
                    name, configs[name], entry, seed, text, logit_scale, train, val
                )
                weights[partition_id(name, seed)] = selected.method.state_dict()
                entry["seeds"][str(seed)] = {
                    "config": selected.config,
                    "best_epoch": selected.report.best_epoch,
                    "best_val_accuracy": selected.report.best_val_accuracy,
                    "fit_seconds": round(selected.report.seconds, 3),
                    "grid": selected.grid,
                    "adapter": f"{params['adapter_dir']}/{partition_id(name, seed)}.safetensors",
                }
    summary = {"logit_scale": logit_scale, "id_classes": list(id_classes), "methods": methods}
    return weights, summary


def _fit_tracked(
    name: str,
    config: dict[str, Any],
    entry: dict[str, Any],
    seed: int,
    text: torch.Tensor,
    logit_scale: float,
    train: TrainSet,
    val: EvalSet,
) -> Selected:
    """One method and seed, in its own nested MLflow run."""
    tags = {"method": name, "seed": str(seed), "mode": str(entry["mode"])}
    with tracking.child_run(f"{name}/seed_{seed}", tags=tags):
        tracking.log_params({"method": name, "seed": seed, **config, "grid": entry["grid"]})
        several = any(len(values) > 1 for values in entry["grid"].values())
        selected = fit_selected(
            name, config, entry["grid"], text, logit_scale, seed, train, val, _grid_logger(several)
        )
        _log_selected(selected, relog_history=several)
    return selected


def _grid_logger(several: bool) -> Callable[[dict[str, Any]], LogFn]:
    """Per-epoch metrics of each grid point, prefixed by the point when there are several."""
    return lambda point: tracking.metric_logger(f"{point_label(point)}/" if several else "")


def _log_selected(selected: Selected, relog_history: bool) -> None:
    """The kept fit's resolved configuration and weights (and, after a grid search, its
    per-epoch values without prefix) in the active MLflow run."""
    if not tracking.tracking_active():
        return
    log = tracking.metric_logger("")
    for epoch, record in enumerate(selected.report.history if relog_history else []):
        log(epoch, record)
    log(
        max(selected.report.best_epoch, 0), {"best_val_accuracy": selected.report.best_val_accuracy}
    )
    tracking.log_json_artifact(selected.config, "config.json")
    tracking.log_json_artifact(selected.grid, "grid.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "adapter.safetensors"
        save_file(selected.method.state_dict(), str(path))
        tracking.log_file_artifact(path)


def predict_splits(
    splits: pd.DataFrame,
    image_features_center: FeatureTable,
    text_features: FeatureTable,
    adapter_weights: Mapping[str, Any],
    train_summary: dict[str, Any],
) -> pd.DataFrame:
    """The ``predictions`` table: logits and adapted embedding of every split row (center view).

    Each method is rebuilt from its summary entry and saved weights, as serving does.
    """
    text, logit_scale = class_text_features(text_features, train_summary["id_classes"])
    frames = []
    for name, entry in train_summary["methods"].items():
        for seed, run in entry["seeds"].items():
            stored = partition_value(adapter_weights[partition_id(name, int(seed))])
            method = restore_method(name, run["config"], text, logit_scale, int(seed), stored)
            rows = seed_rows(splits, int(seed))
            rows = rows[rows["split"].isin(PREDICTED_SPLITS)]
            features = center_features(rows, image_features_center)
            frame = rows[ROW_COLUMNS].reset_index(drop=True)
            frame.insert(0, "seed", int(seed))
            frame.insert(0, "method", name)
            frame["logits"] = list(method.logits(features).numpy())
            frame["embedding"] = list(method.embed(features).numpy())
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def calibrate(
    predictions: pd.DataFrame,
    train_summary: dict[str, Any],
    calibration: dict[str, Any],
    evaluate: dict[str, Any],
) -> dict[str, dict[str, dict[str, Any]]]:
    """The open-set threshold per method and seed, at the set TPR on ID validation only, on the
    calibrated score with its ``evaluate.scores`` parameters."""
    config = EvaluationConfig.from_params(evaluate)
    return calibrate_thresholds(
        predictions,
        float(train_summary["logit_scale"]),
        calibration["score"],
        float(calibration["tpr"]),
        config.scores,
        config.knn_bank_split,
    )
