"""A remote MLflow tracking server as a run meets it: reachable or not, the credentials taken or
not, a permission denied. One line each, naming the server, instead of a stack of retries.
Kedro-free (the tracking hook and ``croft-pipeline`` use it)."""

from __future__ import annotations

import re

import requests

PROBE_TIMEOUT_S = 5.0
CURRENT_USER = "/api/2.0/mlflow/users/current"  # MLflow's basic-auth app: who the caller is
PERMISSIONS = {  # what an operation refused with 403 needed (MLflow's basic-auth permissions)
    "runs/create": "EDIT on the experiment (to create runs)",
    "registered-models/alias": "EDIT on the registered model (to move an alias)",
    "model-versions/create": "EDIT on the registered model (to register a version)",
    "registered-models/create": "permission to create registered models",
}


class TrackingServerError(RuntimeError):
    """The tracking server cannot serve this run; the message is one line naming it."""


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def probe(uri: str, username: str | None, password: str | None) -> None:
    """Raise :class:`TrackingServerError` unless the server at ``uri`` answers its health check
    and, when it has an authentication app, takes ``username``/``password``."""
    base = uri.rstrip("/")
    try:
        health = requests.get(f"{base}/health", timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as error:
        raise TrackingServerError(
            f"MLflow tracking server {uri} is unreachable ({_reason(error)}): start it "
            "(`make team-up` on its machine) or point server.mlflow_tracking_uri (or "
            "$CROFT_TEAM_SERVER for conf/team) at a running one"
        ) from None
    if health.status_code != 200:
        raise TrackingServerError(
            f"MLflow tracking server {uri} is not healthy (GET /health: HTTP {health.status_code})"
        )
    auth = (username, password) if username else None
    answer = requests.get(f"{base}{CURRENT_USER}", auth=auth, timeout=PROBE_TIMEOUT_S)
    if answer.status_code == 401:
        who = f"user {username!r}" if username else "no credentials"
        raise TrackingServerError(
            f"MLflow tracking server {uri} refused {who} (HTTP 401: not authenticated): put "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD under the credentials key "
            "that mlflow.yml's server.credentials names, in conf/local/credentials.yml"
        )
    # 404: a server without the basic-auth app (no users): any client may track


def denied(uri: str, error: BaseException, username: str | None = None) -> str | None:
    """One line for an MLflow client error that is the server refusing this user (HTTP 401 or
    403), naming the server and the permission the operation needs; None for any other error."""
    text = str(error)
    status = re.search(r"error code (40[13])\b", text) or re.search(r"\b(40[13])\b", text[:200])
    if status is None and "PERMISSION_DENIED" not in text:
        return None
    who = f"user {username!r}" if username else "this client"
    if status is not None and status.group(1) == "401":
        return f"MLflow tracking server {uri} did not authenticate {who} (HTTP 401)"
    needed = next((need for route, need in PERMISSIONS.items() if route in text), None)
    return (
        f"MLflow tracking server {uri} denied {who} a permission (HTTP 403): the operation needs "
        f"{needed or 'a permission this user lacks'}; ask the server's admin for it "
        "(docs/team.md)"
    )


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.ConnectionError):
        return "connection refused or host unknown"
    if isinstance(error, requests.Timeout):
        return f"no answer in {PROBE_TIMEOUT_S:.0f} s"
    return type(error).__name__
