"""Registrations a killed process left unfinished, and how the next run settles them.

A version is created tagged :data:`REGISTRATION` = :data:`INCOMPLETE`, with the version each
of its aliases pointed at before (:data:`ALIAS_BEFORE`); the unit's last step tags it
:data:`COMPLETE` (``publishing.registry.registration``). MLflow only: a run start imports it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

REGISTRATION = "croft.registration"  # version tag: INCOMPLETE until the unit ends, then COMPLETE
INCOMPLETE, COMPLETE = "incomplete", "complete"
ALIAS_BEFORE = "croft.alias_before."  # + alias: the version it pointed at before ("": none)


def settle_interrupted(
    model_name: str, committed: Callable[[ModelVersion], bool], client: MlflowClient | None = None
) -> dict[str, list[str]]:
    """Settle the versions of ``model_name`` a killed registration left :data:`INCOMPLETE`.

    A version whose registering run still RUNs is left alone (end the runs of dead processes
    first: ``tracking.ownership.end_stale_runs``). A version the caller's record names
    (``committed(model_version)``) finished its unit but its last tag: it is marked complete.
    Any other is deleted, and each alias on it points back where it pointed before the unit.
    Returns ``{"completed": [...], "deleted": [...]}``.
    """
    client = client or MlflowClient()
    settled: dict[str, list[str]] = {"completed": [], "deleted": []}
    query = f"name = '{model_name}' and tags.`{REGISTRATION}` = '{INCOMPLETE}'"
    try:
        versions = client.search_model_versions(query)
    except mlflow.exceptions.MlflowException:
        return settled  # no such model: nothing registered yet
    for found in sorted(versions, key=lambda v: int(v.version)):
        version = str(found.version)
        if _running(client, found.run_id):
            continue
        if committed(found):
            client.set_model_version_tag(model_name, version, REGISTRATION, COMPLETE)
            settled["completed"].append(version)
            continue
        aliases = client.get_registered_model(model_name).aliases
        for alias in [alias for alias, target in aliases.items() if str(target) == version]:
            previous = found.tags.get(ALIAS_BEFORE + alias, "")
            restore_aliases(model_name, {alias: previous or None}, client)
        client.delete_model_version(model_name, version)
        settled["deleted"].append(version)
        logger.warning(
            "deleted version %s of %s: the run registering it was killed before it finished",
            version,
            model_name,
        )
    return settled


def _running(client: MlflowClient, run_id: str | None) -> bool:
    """Whether the run that registered a version is still RUNNING (a deleted run is not)."""
    try:
        return bool(run_id) and client.get_run(run_id).info.status == "RUNNING"
    except mlflow.exceptions.MlflowException:
        return False


def settle_project(
    register: Mapping[str, Any], project_dir: str | Path, client: MlflowClient | None = None
) -> dict[str, list[str]]:
    """:func:`settle_interrupted` for the project's model (``evaluate.register``): a version is
    committed when ``register.registration_file`` records it (same version and run)."""
    path = Path(project_dir) / register["registration_file"]

    def committed(found: ModelVersion) -> bool:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return (
            document.get("registered") is True
            and document.get("model_name") == found.name
            and str(document.get("version")) == str(found.version)
            and document.get("run_id") == found.run_id
        )

    return settle_interrupted(register["model_name"], committed, client)


def restore_aliases(
    model_name: str, versions: Mapping[str, str | None], client: MlflowClient | None = None
) -> None:
    """Point each alias back at its version, or remove it where that is ``None`` (or gone)."""
    client = client or MlflowClient()
    for alias, model_version in versions.items():
        try:
            if model_version is not None:
                client.set_registered_model_alias(model_name, alias, model_version)
                continue
        except mlflow.exceptions.MlflowException:
            pass  # the version it pointed at was deleted since: remove the alias
        with suppress(mlflow.exceptions.MlflowException):  # it was never set
            client.delete_registered_model_alias(model_name, alias)
