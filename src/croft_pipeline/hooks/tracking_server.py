"""A run that tracks to a remote MLflow server (conf/team) checks it before any node: a server
down, unreachable or refusing the credentials stops the run with one line naming it, and a
permission the server denies when kedro-mlflow opens the run is one line too."""

from __future__ import annotations

import os
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from croft_pipeline.hooks.errors import RunRefused
from croft_pipeline.tracking.server import TrackingServerError, denied, is_remote, probe

USERNAME, PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


class TrackingServerHook:
    """Probes a remote tracking URI ahead of kedro-mlflow's own hooks (``tryfirst``: its
    client would otherwise retry a dead server for minutes)."""

    def __init__(self) -> None:
        self._uri: str | None = None
        self._username: str | None = None

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        server = context.config_loader["mlflow"].get("server", {})
        uri = str(server.get("mlflow_tracking_uri") or "")
        self._uri = uri if is_remote(uri) else None
        if self._uri is None:
            return
        credentials = _credentials(context, server.get("credentials"))
        self._username = credentials.get(USERNAME, os.environ.get(USERNAME))
        try:
            probe(uri, self._username, credentials.get(PASSWORD, os.environ.get(PASSWORD)))
        except TrackingServerError as error:
            raise RunRefused(str(error)) from None

    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params: dict[str, Any]):
        try:
            return (yield)  # kedro-mlflow creates the pipeline's run here
        except Exception as error:
            line = denied(self._uri, error, self._username) if self._uri else None
            if line is None:
                raise
            raise RunRefused(line) from None


def _credentials(context: Any, key: str | None) -> dict[str, str]:
    """The credentials entry kedro-mlflow exports for the server (``server.credentials``)."""
    if not key:
        return {}
    try:
        return dict(context.config_loader["credentials"].get(key) or {})
    except MissingConfigException:
        return {}
