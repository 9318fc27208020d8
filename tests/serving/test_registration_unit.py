"""The registration unit's marks and how the next start settles what a failure left behind
(in-process, on the tiny served model; SIGKILLs: tests/pipelines/test_run_safety.py)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from croft_pipeline.publishing.interrupted import (
    ALIAS_BEFORE,
    COMPLETE,
    INCOMPLETE,
    REGISTRATION,
    settle_interrupted,
)
from croft_pipeline.publishing.registry import alias_version, log_and_register, registration

MODEL = "croft-clip-unit"


@pytest.fixture
def artifacts(tiny_model, tmp_path):
    return tiny_model.write_bundle(tmp_path / "bundle")


def _tags(version: str) -> dict[str, str]:
    return MlflowClient().get_model_version(MODEL, version).tags


def test_a_version_is_marked_incomplete_until_its_unit_ends(artifacts, mlflow_store):
    with registration(artifacts, MODEL, ["candidate"], {"method": "clip_adapter"}) as registered:
        assert _tags(registered["version"])[REGISTRATION] == INCOMPLETE
        assert alias_version(MODEL, "candidate") == registered["version"]
    assert _tags(registered["version"]) == {
        "method": "clip_adapter",
        REGISTRATION: COMPLETE,
        ALIAS_BEFORE + "candidate": "",
    }
    second = log_and_register(artifacts, MODEL, ["candidate"])
    assert _tags(second["version"])[ALIAS_BEFORE + "candidate"] == registered["version"]


def test_a_failed_last_tag_leaves_the_committed_version_for_the_next_start(
    artifacts, mlflow_store, monkeypatch
):
    """After the record (the commit point) the version stays, even if its last tag fails."""
    original = MlflowClient.set_model_version_tag

    def refuse(self, name, version, key, value):
        if value == COMPLETE:
            raise mlflow.exceptions.MlflowException("injected: database is locked")
        return original(self, name, version, key, value)

    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "set_model_version_tag", refuse)
        registered = log_and_register(artifacts, MODEL, ["candidate"])
    assert _tags(registered["version"])[REGISTRATION] == INCOMPLETE
    assert alias_version(MODEL, "candidate") == registered["version"]
    settled = settle_interrupted(MODEL, lambda found: found.version == int(registered["version"]))
    assert settled == {"completed": [registered["version"]], "deleted": []}
    assert _tags(registered["version"])[REGISTRATION] == COMPLETE


def test_settling_deletes_an_uncommitted_version_and_puts_its_aliases_back(
    artifacts, mlflow_store, monkeypatch
):
    first = log_and_register(artifacts, MODEL, ["candidate", "champion"])
    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "set_model_version_tag", lambda *args: None)
        orphan = log_and_register(artifacts, MODEL, ["candidate", "champion"])  # not completed
    MlflowClient().delete_run(orphan["run_id"])  # its run deleted too: not RUNNING
    assert settle_interrupted(MODEL, lambda found: False) == {
        "completed": [],
        "deleted": [orphan["version"]],
    }
    assert alias_version(MODEL, "candidate") == alias_version(MODEL, "champion") == first["version"]
    assert settle_interrupted(MODEL, lambda found: False) == {"completed": [], "deleted": []}
    assert settle_interrupted("no-such-model", lambda found: False) == {
        "completed": [],
        "deleted": [],
    }


def test_a_version_whose_run_still_runs_is_left_alone(artifacts, mlflow_store):
    with mlflow.start_run():  # a pipeline's run; the unit's own run is nested in it
        with registration(artifacts, MODEL, ["candidate"]) as live:  # e.g. another process's
            assert settle_interrupted(MODEL, lambda found: False) == {
                "completed": [],
                "deleted": [],
            }
            assert _tags(live["version"])[REGISTRATION] == INCOMPLETE
            run = MlflowClient().get_run(live["run_id"])
            assert run.info.status == "RUNNING" and run.info.run_name == "register"
        assert run.data.tags["mlflow.parentRunId"] == mlflow.active_run().info.run_id
    assert _tags(live["version"])[REGISTRATION] == COMPLETE
