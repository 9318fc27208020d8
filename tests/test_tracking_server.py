"""The one-line errors of a remote tracking server (croft_pipeline.tracking.server), on hand-made
client errors and a closed port (the live server: tests/test_team_server.py)."""

from __future__ import annotations

import socket

import pytest
from mlflow.exceptions import MlflowException

from croft_pipeline.tracking.server import TrackingServerError, denied, is_remote, probe

URI = "http://127.0.0.1:5055"


def _client_error(endpoint: str, code: int, body: str) -> MlflowException:
    """What MLflow's REST client raises when the server answers ``code``."""
    return MlflowException(
        f"API request to endpoint {endpoint} failed with error code {code} != 200. "
        f"Response body: '{body}'"
    )


@pytest.mark.parametrize(
    ("endpoint", "needed"),
    [
        ("/api/2.0/mlflow/runs/create", "EDIT on the experiment (to create runs)"),
        (
            "/api/2.0/mlflow/registered-models/alias",
            "EDIT on the registered model (to move an alias)",
        ),
        ("/api/2.0/mlflow/experiments/delete", "a permission this user lacks"),
    ],
)
def test_a_denied_operation_names_the_server_the_user_and_what_it_needs(endpoint, needed):
    line = denied(URI, _client_error(endpoint, 403, "Permission denied"), "reader")
    assert line == (
        f"MLflow tracking server {URI} denied user 'reader' a permission (HTTP 403): the "
        f"operation needs {needed}; ask the server's admin for it (docs/team.md)"
    )


def test_unauthenticated_and_other_errors():
    line = denied(URI, _client_error("/api/2.0/mlflow/runs/create", 401, "no"), None)
    assert line == f"MLflow tracking server {URI} did not authenticate this client (HTTP 401)"
    assert (
        denied(URI, _client_error("/api/2.0/mlflow/runs/get", 404, "RESOURCE_DOES_NOT_EXIST"))
        is None
    )
    assert denied(URI, ValueError("a bug of ours")) is None


def test_only_http_uris_are_remote():
    assert is_remote(URI) and is_remote("https://mlflow.example.org")
    assert not is_remote("sqlite:///mlflow.db") and not is_remote("file:///tmp/mlruns")


def test_a_closed_port_is_one_line_at_once():
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(TrackingServerError) as raised:
        probe(uri, "croft", "secret")
    message = str(raised.value)
    assert message.startswith(f"MLflow tracking server {uri} is unreachable (connection refused")
    assert "\n" not in message and "secret" not in message
