"""MLflow helpers for nodes: log into the run kedro-mlflow opened, or a nested child run.

The core modules never import MLflow; nodes pass them :func:`metric_logger` callbacks.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow


def tracking_active() -> bool:
    return mlflow.active_run() is not None


@contextmanager
def child_run(name: str, tags: dict[str, str] | None = None) -> Iterator[None]:
    """A nested MLflow run under the active one; a no-op when no run is active."""
    if not tracking_active():
        yield
        return
    with mlflow.start_run(run_name=name, nested=True, tags=tags or {}):
        yield


def metric_key(name: str) -> str:
    """An MLflow-safe metric name: characters MLflow refuses (``+`` of ``croft_clean+wise``)
    become ``-``."""
    return re.sub(r"[^\w\-. :/]", "-", name)


def metric_logger(prefix: str = "") -> Callable[[int, dict[str, float]], None]:
    """A ``log(step, {name: value})`` callback that writes finite values to the active run."""

    def log(step: int, values: dict[str, float]) -> None:
        if not tracking_active():
            return
        finite = {
            metric_key(f"{prefix}{k}"): float(v)
            for k, v in values.items()
            if math.isfinite(float(v))
        }
        if finite:
            mlflow.log_metrics(finite, step=step)

    return log


def log_history(history: list[dict[str, float]], prefix: str = "") -> None:
    """Per-epoch values (``history[epoch] = {name: value}``) with step = epoch, in batches."""
    if not tracking_active() or not history:
        return
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(metric_key(f"{prefix}{key}"), float(value), now, step)
        for step, record in enumerate(history)
        for key, value in record.items()
        if math.isfinite(float(value))
    ]
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def log_params(params: dict[str, Any], prefix: str = "") -> None:
    if not tracking_active():
        return
    flat = {f"{prefix}{k}": str(v)[:6000] for k, v in _flatten(params).items()}
    for start in range(0, len(flat), 100):
        chunk = dict(list(flat.items())[start : start + 100])
        mlflow.log_params(chunk)


def log_json_artifact(data: Any, name: str, artifact_path: str | None = None) -> None:
    if not tracking_active():
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_file_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    if tracking_active():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def _flatten(params: dict[str, Any], parent: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{parent}.{key}" if parent else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat
