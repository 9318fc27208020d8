"""A copied or moved project's MLflow store: the run refuses to write into the old folder, and
``croft-pipeline relocate-store`` points the store at its own ``mlruns/`` (``tracking.store``)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from croft_pipeline.hooks.errors import RunRefused
from croft_pipeline.serving.pyfunc import load_in_process
from croft_pipeline.tools.console import main
from croft_pipeline.tracking.store import (
    PATH_COLUMNS,
    StoreError,
    local_path,
    misplaced_artifacts,
    relocate,
    sqlite_database,
)
from tests.kedro_harness import copy_with_store, run_pipeline

MODEL = "croft-clip"


def test_local_artifact_locations_and_sqlite_stores_are_told_apart(tmp_path, monkeypatch):
    assert local_path("/a/mlruns/1") == Path("/a/mlruns/1")
    assert local_path("file:///a%20b/mlruns/1") == Path("/a b/mlruns/1")
    assert local_path("mlflow-artifacts:/1") is None and local_path("s3://bucket/1") is None
    monkeypatch.chdir(tmp_path)
    assert sqlite_database("sqlite:///mlflow.db") == tmp_path.resolve() / "mlflow.db"
    assert sqlite_database("http://127.0.0.1:5055") is None
    assert misplaced_artifacts("sqlite:///mlflow.db") is None  # no store yet: nothing to check


def _uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


def _client(project: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=_uri(project), registry_uri=_uri(project))


def _paths(database: Path) -> list[str]:
    """Every value of the store's path columns."""
    with sqlite3.connect(database) as db:
        return [
            value
            for table, column, _ in PATH_COLUMNS
            for (value,) in db.execute(f"SELECT {column} FROM {table}")
            if value
        ]


def test_a_moved_project_stops_until_its_store_is_relocated_then_serves_and_runs(
    tiny_project, tmp_path, capsys
):
    old = copy_with_store(tiny_project, tmp_path / "old")  # a project with a registered model
    moved = Path(shutil.copytree(old, tmp_path / "moved"))
    shutil.rmtree(old)  # moved: the old folder is gone
    experiment = _client(moved).get_experiment_by_name("croft-pipeline")
    expected = (
        f"the MLflow store {moved / 'mlflow.db'} keeps the artifacts of experiment "
        f"'croft-pipeline' in {old / 'mlruns' / experiment.experiment_id}, outside {moved}: the "
        "project was copied or moved, and its runs would write into the old folder; run "
        f"`croft-pipeline relocate-store` in {moved} (it points mlflow.db's artifact paths at "
        f"{moved / 'mlruns'})"
    )
    assert misplaced_artifacts(_uri(moved)) == expected
    versions = len(_client(moved).search_model_versions(f"name = '{MODEL}'"))
    with pytest.raises(RunRefused) as refused:
        run_pipeline(moved, "evaluate", from_nodes=["log_to_mlflow"])
    assert str(refused.value) == expected and not old.exists()  # nothing written there

    assert main(["relocate-store", "--db", str(moved / "mlflow.db")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]  # after Kedro's log lines
    assert line.startswith(
        f"{moved / 'mlflow.db'}: artifact paths under {old / 'mlruns'} now under "
        f"{moved / 'mlruns'} (2 experiments, "
    )
    assert misplaced_artifacts(_uri(moved)) is None
    paths = _paths(moved / "mlflow.db")
    assert paths and not [p for p in paths if str(old) in p]
    assert main(["relocate-store", "--db", str(moved / "mlflow.db")]) == 0  # again: no change
    assert "nothing to do" in capsys.readouterr().out

    # the registered model loads from the moved store, its bundled CLIP checkpoint too
    image = next((moved / "data/01_raw").rglob("*.png")).read_bytes()
    mlflow.set_tracking_uri(_uri(moved))
    mlflow.set_registry_uri(_uri(moved))
    try:
        model = load_in_process(f"models:/{MODEL}@candidate")
        predicted = model.predict(pd.DataFrame({"image": [image]}))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert list(predicted.columns[:2]) == ["label", "class_name"] and len(predicted) == 1

    run_pipeline(moved, "evaluate", from_nodes=["log_to_mlflow"])  # a run of the moved project
    client = _client(moved)
    registered = client.search_model_versions(f"name = '{MODEL}'")
    assert len(registered) == versions + 1 and not old.exists()
    newest = max(registered, key=lambda v: int(v.version))
    location = client.get_model_version_download_uri(MODEL, newest.version)
    assert local_path(location).is_relative_to(moved / "mlruns"), location


def test_a_store_copied_without_its_artifacts_is_not_relocated(tiny_project, tmp_path):
    shutil.copy2(tiny_project / "mlflow.db", tmp_path / "mlflow.db")
    before = _paths(tmp_path / "mlflow.db")
    with pytest.raises(StoreError, match=r"mlruns does not exist: copy the mlruns/ folder"):
        relocate(tmp_path / "mlflow.db")
    assert _paths(tmp_path / "mlflow.db") == before
