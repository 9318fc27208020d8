"""The team tool's pieces that need no server (the live servers: tests/test_team_server.py)."""

from __future__ import annotations

import stat

import pytest
import yaml

from croft_pipeline.tools import team


def test_the_writer_lands_in_conf_local_credentials_beside_what_is_there(tmp_path):
    path = tmp_path / "conf" / "local" / "credentials.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"s3": {"key": "kept"}, team.CREDENTIALS_KEY: {"old": 1}}))
    team.write_credentials(path, "croft", "pw")
    assert yaml.safe_load(path.read_text()) == {
        "s3": {"key": "kept"},
        team.CREDENTIALS_KEY: {
            "MLFLOW_TRACKING_USERNAME": "croft",
            "MLFLOW_TRACKING_PASSWORD": "pw",
        },
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_passwords_are_made_once_and_kept_private(tmp_path):
    state = team.State(tmp_path)
    first = team.load_secrets(state)
    assert set(first) >= {"db", team.ADMIN, team.WRITER, team.READER}
    assert len(set(first.values())) == len(first)  # one each
    assert team.load_secrets(state) == first
    assert stat.S_IMODE(state.secrets.stat().st_mode) == 0o600


def test_a_missing_postgresql_names_the_package(monkeypatch):
    monkeypatch.setattr(team.shutil, "which", lambda program: None)
    monkeypatch.setattr(team, "glob", lambda pattern: [])
    with pytest.raises(
        team.TeamError, match=r"initdb is not installed: `apt-get install postgresql`"
    ):
        team.pg_bin("initdb")


def test_down_with_nothing_up_stops_nothing(tmp_path, capsys):
    assert team.main(["down", "--state", str(tmp_path / "state")]) == 0
    assert capsys.readouterr().out.strip() == "nothing to stop"
