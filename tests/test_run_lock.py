"""The project run lock, DVC's locks a run holds with it, and the rule that ends the MLflow runs
of dead runs, without Kedro."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import mlflow
import pytest

from croft_pipeline.hooks import dvc_lock
from croft_pipeline.hooks.dvc_lock import DvcRunning
from croft_pipeline.hooks.run_lock import RunLock, RunLockHeld
from croft_pipeline.tracking import PARENT, ownership


def test_the_lock_is_exclusive_names_its_holder_and_is_free_again_after_release(tmp_path):
    path = tmp_path / "data" / ".run.lock"
    first, second = RunLock(path), RunLock(path)
    first.acquire("train")
    with pytest.raises(RunLockHeld, match=rf"\(pid {os.getpid()} on .*, pipeline train, since "):
        second.acquire("evaluate")
    assert not second.held
    first.release()
    second.acquire("evaluate")  # no longer held
    assert second.held
    second.release()
    assert path.read_text() == ""  # the record goes with the lock


def test_a_lock_whose_holder_has_not_written_its_record_yet_still_fails_clearly(tmp_path):
    path = tmp_path / ".run.lock"
    holder = RunLock(path)
    holder.acquire("ingest")
    path.write_text("")  # as between the holder's flock and its write
    with pytest.raises(RunLockHeld, match="holder not recorded yet"):
        RunLock(path).acquire("evaluate")
    holder.release()


@pytest.fixture
def dvc_project(tmp_path) -> Path:
    from dvc.repo import Repo

    Repo.init(tmp_path, no_scm=True).close()
    return tmp_path


def test_dvc_locks_stop_the_next_holder_naming_the_first_and_free_on_close(dvc_project):
    data = dvc_project / "data"
    with (
        dvc_lock.hold(dvc_project, data, "the first run's message"),
        pytest.raises(DvcRunning, match=r"(?s)DVC is running in .*\(PID \d+\): the first run's"),
    ):
        dvc_lock.hold(dvc_project, data, "a second run")
    dvc_lock.hold(dvc_project, data, "a second run").close()


def test_a_run_dvc_launched_takes_no_dvc_lock_and_names_its_stage(dvc_project, monkeypatch):
    data = dvc_project / "data"
    with dvc_lock.hold(dvc_project, data, "the locks its DVC holds"):
        monkeypatch.setenv(dvc_lock.STAGE_VARIABLE, "ingest")
        dvc_lock.hold(dvc_project, data, "the stage's run").close()  # no DvcRunning
        holder = RunLock(data / ".run.lock")
        holder.acquire("ingest")
        with pytest.raises(RunLockHeld, match=r"since .*, run by DVC as its stage ingest\)"):
            RunLock(data / ".run.lock").acquire("evaluate")
        holder.release()


def test_stale_runs_are_the_running_runs_other_processes_owned_under_this_lock(
    tmp_path, mlflow_store
):
    lock = tmp_path / "data" / ".run.lock"
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("tests").experiment_id
    dead = {**ownership.owner_tags(lock), ownership.OWNER_PID: "999999999"}

    def run(tags: dict[str, str]) -> str:
        return client.create_run(experiment, tags=tags).info.run_id

    killed_root = run(dead)
    killed_child = run({PARENT: killed_root})
    killed_grandchild = run({PARENT: killed_child})
    ours = run(ownership.owner_tags(lock))  # this process: alive
    other_lock = run({**dead, ownership.OWNER_LOCK: str(tmp_path / "other" / ".run.lock")})
    other_host = run({**dead, ownership.OWNER_HOST: socket.gethostname() + "-elsewhere"})
    untagged = run({})
    finished = run(dead)
    client.set_terminated(finished, "FINISHED")

    ended = ownership.end_stale_runs(lock, client)

    assert ended == sorted([killed_root, killed_child, killed_grandchild])
    status = {r: client.get_run(r).info.status for r in [*ended, ours, other_lock, other_host]}
    assert status == {
        **dict.fromkeys(ended, "KILLED"),
        **dict.fromkeys([ours, other_lock, other_host], "RUNNING"),
    }
    assert client.get_run(untagged).info.status == "RUNNING"
    assert client.get_run(finished).info.status == "FINISHED"
