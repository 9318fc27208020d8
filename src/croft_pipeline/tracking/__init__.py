"""MLflow helpers for nodes: log into the run kedro-mlflow opened, or a nested child run. Files a
node returns are logged by their catalog entries (``MlflowArtifactDataset``), not here. Run
ownership (:mod:`ownership`) and provenance (:mod:`provenance`) are the package's other parts.

The core modules never import MLflow; nodes pass them :func:`metric_logger` callbacks.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from croft_pipeline.tracking.provenance import MlflowRun

logger = logging.getLogger(__name__)

PARENT = "mlflow.parentRunId"
ROLE = "croft.role"  # what a run is: pipeline, method, grid point, evaluation, registration


def tracking_active() -> bool:
    return mlflow.active_run() is not None


@contextmanager
def child_run(name: str, tags: dict[str, str] | None = None) -> Iterator[str | None]:
    """A nested MLflow run under the active one (yields its id); a no-op yielding ``None`` when
    no run is active."""
    if not tracking_active():
        yield None
        return
    with mlflow.start_run(run_name=name, nested=True, tags=tags or {}) as run:
        yield run.info.run_id


def run_name(
    stage: str, method: str, seed: int | str, point: Mapping[str, Any] | None = None
) -> str:
    """``fit/croft_clean/seed_2/lambda2=10,lr=0.05``: the name of every nested run, its stage
    (``fit``, ``grid``, ``evaluate``, ``register``), method, seed and, for a fit or a grid point,
    the grid keys that vary (a WiSE-FT point: its ``alpha``)."""
    parts = [stage, method, f"seed_{seed}"]
    if point:
        parts.append(",".join(f"{key}={_shown(value)}" for key, value in point.items()))
    return "/".join(parts)


def _shown(value: Any) -> str:
    return (
        f"{value:g}"
        if isinstance(value, float | int) and not isinstance(value, bool)
        else str(value)
    )


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return None if run is None else run.info.run_id


def active_run_ref(ui_address: str) -> MlflowRun | None:
    """The active run (for a link from `mlflow ui` at ``ui_address``), or ``None``."""
    run = mlflow.active_run()
    if run is None:
        return None
    return MlflowRun(run.info.run_id, run.info.experiment_id, ui_address)


def tag_run_tree(tags: dict[str, str]) -> int:
    """Set ``tags`` on the active run and every run nested below it; return how many runs."""
    if not tracking_active() or not tags:
        return 0
    from mlflow.entities import RunTag

    client, root = mlflow.MlflowClient(), mlflow.active_run().info
    batch = [RunTag(key, str(value)[:5000]) for key, value in tags.items()]
    pending, tagged = [root.run_id], 0
    while pending:
        run_id = pending.pop()
        client.log_batch(run_id, tags=batch)
        tagged += 1
        pending += [
            run.info.run_id
            for run in search_runs(client, [root.experiment_id], f"tags.{PARENT} = '{run_id}'")
        ]
    return tagged


def log_to_recorded_runs(
    values: dict[str, dict[str, float]], tags: dict[str, str] | None = None
) -> list[str]:
    """Log ``values[run_id]`` (finite values, step 0) and ``tags`` on runs that may have ended
    (e.g. a training run recorded in ``train_summary``); a run this store does not hold is
    skipped with a warning. Returns the ids logged to."""
    if not tracking_active():
        return []
    from mlflow.entities import Metric, RunTag

    client, now, logged = mlflow.MlflowClient(), int(time.time() * 1000), []
    for run_id, metrics in values.items():
        batch = [
            Metric(metric_key(k), float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)
        ]
        try:
            client.log_batch(
                run_id, metrics=batch, tags=[RunTag(k, v) for k, v in (tags or {}).items()]
            )
        except mlflow.exceptions.MlflowException as error:
            logger.warning("MLflow run %s not logged to (%s)", run_id, error)
            continue
        logged.append(run_id)
    return logged


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
    """``data`` as a JSON artifact of the active run, for what no catalog entry can log: a
    nested run's records, the registration document inside its transaction."""
    if not tracking_active():
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
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


def tag_active_run(tags: dict[str, str], remove: tuple[str, ...] = ()) -> None:
    """Set ``tags`` on the active run and delete the tags named in ``remove`` it has."""
    if not tracking_active():
        return
    mlflow.set_tags(tags)
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    present = client.get_run(run_id).data.tags if remove else {}
    for key in (key for key in remove if key in present):
        client.delete_tag(run_id, key)


def search_runs(client: mlflow.MlflowClient, experiments: list[str], query: str) -> list:
    """Every run of ``experiments`` matching ``query``, page by page."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiments, query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs
