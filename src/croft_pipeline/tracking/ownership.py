"""Which MLflow runs belong to which project run: the tags that name a run's owner (the process
holding the run lock) and the clean-up of runs a killed process left RUNNING (§10 of
docs/architecture.md)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import mlflow

from croft_pipeline.tracking import PARENT, search_runs

logger = logging.getLogger(__name__)

OWNER_LOCK, OWNER_HOST, OWNER_PID = "croft.run_lock", "croft.host", "croft.pid"


def owner_tags(lock_path: str | os.PathLike) -> dict[str, str]:
    """Tags naming the process that holds the project lock ``lock_path`` for this run."""
    return {
        OWNER_LOCK: str(Path(lock_path).resolve()),
        OWNER_HOST: socket.gethostname(),
        OWNER_PID: str(os.getpid()),
    }


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
    return search_runs(client, experiments, "attributes.status = 'RUNNING'") if experiments else []


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
