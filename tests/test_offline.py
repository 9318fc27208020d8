"""The project runs with every non-loopback connection made to fail."""

import socket

import pytest

from tests.network_guard import NetworkBlocked, loopback_only


def test_guard_blocks_outside_connections_and_allows_loopback():
    with loopback_only() as attempts:
        with pytest.raises(NetworkBlocked):
            socket.create_connection(("192.0.2.1", 443), timeout=1)
        with pytest.raises(OSError):
            socket.getaddrinfo("example.org", 443)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname(), timeout=1)
        client.close()
        server.close()
    assert len(attempts) == 2


def test_default_pipeline_runs_offline(tiny_run):
    """The whole default pipeline completed under the guard and never tried to reach out."""
    assert tiny_run.network_attempts == ()
    assert (tiny_run.project / "mlflow.db").is_file()


def test_offline_defaults_are_applied_but_user_values_win(monkeypatch):
    from croft_pipeline.common.offline import OFFLINE_DEFAULTS, apply_offline_defaults

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "user-choice")
    apply_offline_defaults()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == OFFLINE_DEFAULTS["HF_HUB_OFFLINE"]
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "user-choice"
