"""Runs that fail, are killed or overlap leave the registry, the aliases, model_registration.json
and MLflow as they were: real Kedro sessions on copies of the shared tiny project."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from croft_pipeline.hooks.run_lock import LOCK_FILE, RunLock, RunLockHeld
from croft_pipeline.publishing.params import with_model_name
from croft_pipeline.tracking import PARENT, ownership
from tests.kedro_harness import REPO_ROOT, copy_with_store, run_pipeline

MODEL = "croft-clip"  # the test env's registered model (EmojiShift: registered_model_name)
REGISTRATION = "data/08_reporting/model_registration.json"
# champion moves with every version; a run with --params registers only when asked
GATES_PASS = {"evaluate": {"gates": {"comparisons": []}, "register": {"experiments": True}}}
# A run that dies by SIGKILL inside a child MLflow run of the evaluate pipeline.
KILLED_RUN = """
import os, signal, sys
from pathlib import Path
import mlflow
import croft_pipeline.pipelines.evaluate.nodes as nodes
from tests.kedro_harness import run_pipeline

def die(*args, **kwargs):
    mlflow.start_run(run_name="child-of-killed", nested=True)
    os.kill(os.getpid(), signal.SIGKILL)

nodes.build_report = die
run_pipeline(Path(sys.argv[1]), "evaluate", from_nodes=["render_report"])
"""


@pytest.fixture
def project(tiny_project, tmp_path) -> Path:
    """A copy of the tiny project whose one registered version is `candidate` and `champion`."""
    copy = copy_with_store(tiny_project, tmp_path / "project")
    client = _client(copy)
    version = client.get_model_version_by_alias(MODEL, "candidate").version
    client.set_registered_model_alias(MODEL, "champion", version)
    return copy


def _client(project: Path) -> mlflow.MlflowClient:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _registry(project: Path) -> dict:
    client = _client(project)
    return {
        "versions": sorted(
            (str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")), key=int
        ),
        "aliases": dict(client.get_registered_model(MODEL).aliases),
    }


def _runs(project: Path) -> dict[str, str]:
    """Status by run id of every run in the project's tracking store."""
    client = _client(project)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {r.info.run_id: r.info.status for r in client.search_runs(experiments)}


def _data_files(project: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(project)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in (project / "data").rglob("*")
        if p.is_file() and p.name != Path(LOCK_FILE).name
    }


def _lock_is_free(project: Path) -> bool:
    probe = RunLock(project / LOCK_FILE)
    try:
        probe.acquire("probe")
    except RunLockHeld:
        return False
    probe.release()
    return True


def test_a_second_run_fails_fast_naming_the_holder_and_writes_nothing(project):
    holder = RunLock(project / LOCK_FILE)
    holder.acquire("ingest")
    since = json.loads((project / LOCK_FILE).read_text())["since"]
    files, runs, registry = _data_files(project), _runs(project), _registry(project)
    try:
        with pytest.raises(RunLockHeld) as raised:
            run_pipeline(project, "evaluate", from_nodes=["log_to_mlflow"])
    finally:
        holder.release()
    assert str(raised.value) == (
        f"another run holds {project / LOCK_FILE} (pid {os.getpid()} on {socket.gethostname()}, "
        f"pipeline ingest, since {since}); wait for it or stop it"
    )
    assert _data_files(project) == files
    assert _runs(project) == runs  # kedro-mlflow opened no run: the lock came first
    assert _registry(project) == registry


def test_a_killed_run_releases_the_lock_and_the_next_run_ends_its_mlflow_runs_as_killed(
    project,
):
    before = _runs(project)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(project)], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    left_running = {r for r, status in _runs(project).items() if r not in before}
    assert len(left_running) == 2 and {_runs(project)[r] for r in left_running} == {"RUNNING"}

    run_pipeline(project, "evaluate", from_nodes=["log_to_mlflow"], extra_params=GATES_PASS)

    after = _runs(project)
    assert {after[r] for r in left_running} == {"KILLED"}  # the pipeline's run and its child
    assert {after[r] for r in before} == set(before.values())  # earlier runs untouched
    new = [r for r in after if r not in before and r not in left_running]
    assert new and {after[r] for r in new} == {"FINISHED"}
    tags = _client(project).get_run(_pipeline_run(project, new)).data.tags
    assert tags[ownership.OWNER_PID] == str(os.getpid())  # tagged after kedro-mlflow opened it
    _assert_registration_agrees(project)


def _pipeline_run(project: Path, run_ids: list[str]) -> str:
    client = _client(project)
    (run_id,) = [r for r in run_ids if PARENT not in client.get_run(r).data.tags]
    return run_id


def _assert_registration_agrees(project: Path) -> None:
    recorded = json.loads((project / REGISTRATION).read_text())
    client = _client(project)
    assert recorded["aliases"] == ["candidate", "champion"]
    for alias in recorded["aliases"]:
        assert str(client.get_model_version_by_alias(MODEL, alias).version) == recorded["version"]
    assert recorded["champion_version"] == recorded["version"]
    assert recorded["version"] == _registry(project)["versions"][-1]


@pytest.mark.parametrize(
    "target",
    [
        "croft_pipeline.tracking.log_json_artifact",
        "croft_pipeline.pipelines.evaluate.nodes.atomic_write_json",
    ],
    ids=["registration artifact", "registration file"],
)
def test_a_failure_inside_registration_moves_no_alias_and_keeps_the_file(
    project, monkeypatch, target
):
    registry, recorded = _registry(project), (project / REGISTRATION).read_bytes()
    original, seen = _resolve(target), {}

    def fail_on_registration(*args, **kwargs):
        if not any(str(arg).endswith("model_registration.json") for arg in args):
            return original(*args, **kwargs)
        seen["lock free while running"] = _lock_is_free(project)
        raise OSError("injected: disk full")

    monkeypatch.setattr(target, fail_on_registration)
    with pytest.raises(OSError, match="injected"):
        run_pipeline(project, "evaluate", from_nodes=["log_to_mlflow"], extra_params=GATES_PASS)

    assert _registry(project) == registry  # aliases back, the new version deleted
    assert (project / REGISTRATION).read_bytes() == recorded
    assert seen == {"lock free while running": False}
    assert _lock_is_free(project)


def _resolve(target: str):
    module, name = target.rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


def test_an_artifact_that_fails_to_log_fails_the_run_before_registration(project, monkeypatch):
    """The report's catalog entry logs it as it saves it (MlflowArtifactDataset): an artifact
    store that refuses it fails the run there, before registration."""
    registry, recorded, runs = (
        _registry(project),
        (project / REGISTRATION).read_bytes(),
        _runs(project),
    )
    original = mlflow.log_artifact

    def refuse_the_report(local_path, *args, **kwargs):
        if str(local_path).endswith("report.html"):
            raise OSError("injected: artifact store full")
        return original(local_path, *args, **kwargs)

    monkeypatch.setattr(mlflow, "log_artifact", refuse_the_report)
    with pytest.raises(Exception, match="injected"):
        run_pipeline(project, "evaluate", from_nodes=["render_plots"], extra_params=GATES_PASS)
    assert _registry(project) == registry
    assert (project / REGISTRATION).read_bytes() == recorded
    new = {r: s for r, s in _runs(project).items() if r not in runs}
    assert new and set(new.values()) == {"FAILED"}
    plots = _client(project).list_artifacts(_pipeline_run(project, list(new)), "evaluation/plots")
    assert plots  # what it saved before the report is on its own (failed) run
    assert _lock_is_free(project)


def test_a_run_failing_before_registration_moves_no_alias_and_registers_nothing(project):
    """The filed case: `kedro run --pipeline=evaluate --params evaluate.report.plot_score=energyy`
    (here from the plots on; whichever check rejects the score, nothing may be registered)."""
    registry, recorded, runs = (
        _registry(project),
        (project / REGISTRATION).read_bytes(),
        _runs(project),
    )
    with pytest.raises(Exception, match="energyy"):  # a KeyError, or a start-of-run check
        run_pipeline(
            project,
            "evaluate",
            from_nodes=["render_plots"],
            extra_params={
                "evaluate": {"gates": {"comparisons": []}, "report": {"plot_score": "energyy"}}
            },
        )
    assert _registry(project) == registry
    assert (project / REGISTRATION).read_bytes() == recorded
    assert {s for r, s in _runs(project).items() if r not in runs} <= {"FAILED"}
    assert _lock_is_free(project)


# A run SIGKILLed just after a call of the registration unit returns: argv[2] names the
# function ("module:attribute", attribute may be "Class.method"), argv[3] which call kills.
KILLED_IN_REGISTRATION = """
import importlib, os, signal, sys
from pathlib import Path
from tests.kedro_harness import run_pipeline
from tests.pipelines.test_run_safety import GATES_PASS

module, attribute = sys.argv[2].split(":")
owner = importlib.import_module(module)
*path, name = attribute.split(".")
for part in path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), []

def kill_after(*args, **kwargs):
    result = original(*args, **kwargs)
    calls.append(1)
    if len(calls) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(owner, name, kill_after)
run_pipeline(Path(sys.argv[1]), "evaluate", from_nodes=["log_to_mlflow"], extra_params=GATES_PASS)
"""
KILL_POINTS = {  # (function, call) -> whether the unit committed (model_registration.json written)
    "version created": ("mlflow:register_model", 1, False),
    "description set": ("mlflow:MlflowClient.update_model_version", 1, False),
    "candidate moved": ("mlflow:MlflowClient.set_registered_model_alias", 1, False),
    "champion moved": ("mlflow:MlflowClient.set_registered_model_alias", 2, False),
    "file recorded": ("croft_pipeline.pipelines.evaluate.nodes:atomic_write_json", 1, True),
    "unit complete": ("mlflow:MlflowClient.set_model_version_tag", 1, True),
}


def _kill_in_registration(project: Path, function: str, call: int) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    script = [sys.executable, "-c", KILLED_IN_REGISTRATION, str(project), function, str(call)]
    killed = subprocess.run(script, env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]


def _version_tags(project: Path) -> dict[str, dict[str, str]]:
    client = _client(project)
    return {str(v.version): v.tags for v in client.search_model_versions(f"name = '{MODEL}'")}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_registration_killed_at_any_point_is_settled_by_the_next_start(project, point):
    """The filed case: SIGKILL just after "Created version '2'" left v2 READY with 3 of its 14
    tags and no description. Now the next start deletes it (aliases back where they were)
    unless the unit had committed (model_registration.json names it): then it completes it."""
    from croft_pipeline.publishing.interrupted import (
        COMPLETE,
        INCOMPLETE,
        settle_project,
    )
    from croft_pipeline.publishing.interrupted import REGISTRATION as UNIT
    from tests.kedro_harness import load_params

    function, call, committed = KILL_POINTS[point]
    registry, recorded = _registry(project), (project / REGISTRATION).read_bytes()
    _kill_in_registration(project, function, call)
    (new,) = set(_version_tags(project)) - set(registry["versions"])
    assert _version_tags(project)[new][UNIT] == (
        COMPLETE if point == "unit complete" else INCOMPLETE
    )

    client = _client(project)
    ownership.end_stale_runs(project / LOCK_FILE, client)  # as the next start does, first
    params = load_params("test")
    settle_project(
        with_model_name(params["evaluate"]["register"], params["ingest"]), project, client
    )

    if committed:
        assert _registry(project) == {
            "versions": [*registry["versions"], new],
            "aliases": {"candidate": int(new), "champion": int(new)},
        }
        assert _version_tags(project)[new][UNIT] == COMPLETE
        assert json.loads((project / REGISTRATION).read_text())["version"] == new
    else:
        assert _registry(project) == registry
        assert (project / REGISTRATION).read_bytes() == recorded


def test_the_next_run_settles_a_killed_registration_before_it_registers(project):
    registry = _registry(project)
    _kill_in_registration(project, *KILL_POINTS["candidate moved"][:2])
    run_pipeline(project, "evaluate", from_nodes=["log_to_mlflow"], extra_params=GATES_PASS)
    versions = _registry(project)["versions"]
    assert len(versions) == len(registry["versions"]) + 1  # the killed one deleted, one new
    _assert_registration_agrees(project)
