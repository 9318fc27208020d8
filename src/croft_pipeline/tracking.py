"""MLflow helpers for nodes: log into the run kedro-mlflow opened, or a nested child run; and
the run ownership that lets a new run end the runs a killed one left RUNNING. Files a node
returns are logged by their catalog entries (``MlflowArtifactDataset``), not here.

The core modules never import MLflow; nodes pass them :func:`metric_logger` callbacks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from croft_pipeline.provenance import MlflowRun

logger = logging.getLogger(__name__)

OWNER_LOCK, OWNER_HOST, OWNER_PID = "croft.run_lock", "croft.host", "croft.pid"
PARENT = "mlflow.parentRunId"


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


def run_name(*parts: str) -> str:
    """``croft_clean / seed 1 / lambda2=100``: what a run is, as the MLflow UI lists it."""
    return " / ".join(part for part in parts if part)


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
            for run in _search_all(client, [root.experiment_id], f"tags.{PARENT} = '{run_id}'")
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


def owner_tags(lock_path: str | os.PathLike) -> dict[str, str]:
    """Tags naming the process that holds the project lock ``lock_path`` for this run."""
    return {
        OWNER_LOCK: str(Path(lock_path).resolve()),
        OWNER_HOST: socket.gethostname(),
        OWNER_PID: str(os.getpid()),
    }


def tag_active_run(tags: dict[str, str]) -> None:
    if tracking_active():
        mlflow.set_tags(tags)


def end_stale_runs(lock_path: str | os.PathLike, client: mlflow.MlflowClient | None = None):
    """End as KILLED every RUNNING run that another process owned under ``lock_path`` (same lock,
    same host; :func:`owner_tags`), with its RUNNING child runs; return their ids.

    Call it only while holding that lock: every run that owned it before is then dead.
    """
    client = client or mlflow.MlflowClient()
    ours = owner_tags(lock_path)
    running = _running_runs(client)
    stale = {
        run.info.run_id
        for run in running
        if all(run.data.tags.get(k) == ours[k] for k in (OWNER_LOCK, OWNER_HOST))
        and run.data.tags.get(OWNER_PID) != ours[OWNER_PID]
    }
    stale |= _descendants(running, stale)
    for run_id in sorted(stale):
        client.set_terminated(run_id, "KILLED")
        logger.warning("MLflow run %s ended as KILLED: the run that owned it died", run_id)
    return sorted(stale)


def _running_runs(client: mlflow.MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return _search_all(client, experiments, "attributes.status = 'RUNNING'") if experiments else []


def _search_all(client: mlflow.MlflowClient, experiments: list[str], query: str) -> list:
    """Every run of ``experiments`` matching ``query``, page by page."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiments, query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _descendants(runs: list, roots: set[str]) -> set[str]:
    """Ids of the runs among ``runs`` whose chain of parents reaches one of ``roots``."""
    parent = {run.info.run_id: run.data.tags.get(PARENT) for run in runs}
    found: set[str] = set()
    for run_id in parent:
        ancestor = parent[run_id]
        while ancestor is not None and ancestor not in roots and ancestor not in found:
            ancestor = parent.get(ancestor)
        if ancestor is not None and run_id not in roots:
            found.add(run_id)
    return found
