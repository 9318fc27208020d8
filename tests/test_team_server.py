"""The team setup against real servers on loopback (``croft_pipeline.tools.team``): PostgreSQL,
``mlflow server`` with proxied artifacts and basic-auth, two envs' runs at once from two
processes, a reader's permissions, a server that is down, serving from the team registry.
Skipped where PostgreSQL is not installed, except under CI=true (.ci/run installs it)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from croft_pipeline.tools import team
from croft_pipeline.tracking.server import denied
from tests.kedro_harness import REPO_ROOT, finish_run, start_kedro
from tests.pipelines.test_folder_dataset import PHOTOS, add_folder_env
from tests.serving.test_rest_server import _free_port, _post, _wait_until_up

pytestmark = pytest.mark.slow
TEAM_ENV = "team_test"  # the tiny `test` env tracking to the team server (conf/team/mlflow.yml)
PHOTOS_ENV = "photos"  # the folder env of tests.pipelines.test_folder_dataset, likewise


def _postgres_installed() -> bool:
    try:
        team.pg_bin("initdb")
    except team.TeamError:
        return False
    return True


@pytest.fixture(scope="module")
def server():
    """``team up`` in a fresh state folder on free ports; ``team down`` after the module (and
    the two processes it started are gone)."""
    if not _postgres_installed():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed")
    root = Path(tempfile.mkdtemp(prefix="croft-team-", dir="/tmp"))
    root.chmod(0o755)  # under root the cluster runs as `postgres`, which must reach it
    state = team.State(root / "state")
    started = team.up(state, _free_port(), _free_port(), root / "credentials.yml")
    try:
        yield {**started, "state": state, "passwords": team.load_secrets(state)}
    finally:
        team.down(state)
        for pid in (started["mlflow_pid"], started["postgres_pid"]):
            assert not team.alive(pid), f"PID {pid} still runs after down"
        assert (state.pgdata / "PG_VERSION").exists()  # down keeps the data
        shutil.rmtree(root, ignore_errors=True)


def _client(server, user: str | None) -> MlflowClient:
    """A client of the team server as ``user`` (None: no credentials)."""
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
    os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
    if user is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = server["passwords"][user]
    return MlflowClient(tracking_uri=server["uri"], registry_uri=server["uri"])


@pytest.fixture
def as_user(server, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    yield lambda user: _client(server, user)


def _team_project(source: Path, target: Path, user: str, server, photos: Path | None = None):
    """A copy of ``source`` whose env tracks to the team server as ``user``: the `test` env, or
    with ``photos`` the folder env on that folder."""
    project = shutil.copytree(source, target)
    if photos is None:
        env = project / "conf" / TEAM_ENV
        shutil.copytree(REPO_ROOT / "conf" / "test", env, dirs_exist_ok=True)
    else:
        add_folder_env(project, photos)
        env = project / "conf" / PHOTOS_ENV
    shutil.copy2(REPO_ROOT / "conf" / "team" / "mlflow.yml", env / "mlflow.yml")
    team.write_credentials(
        project / "conf" / "local" / "credentials.yml", user, server["passwords"][user]
    )
    return project


def _environ(server, uri: str | None = None) -> dict[str, str]:
    environ = {**os.environ, "CROFT_TEAM_SERVER": uri or server["uri"]}
    # MLflow sets MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI in os.environ when an in-process run
    # (the tiny run, in this worker) sets its store: a subprocess would inherit them
    for key in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        environ.pop(key, None)
    return environ


@pytest.fixture(scope="module")
def team_runs(server, tiny_project, tmp_path_factory):
    """Two projects, the `test` env (its evaluate pipeline) and the folder env (its whole run),
    run at the same time by two `kedro run` processes against the team server as the writer."""
    tmp = tmp_path_factory.mktemp("team")
    default = _team_project(tiny_project, tmp / "default_project", team.WRITER, server)
    photos = _team_project(tiny_project, tmp / "photos_project", team.WRITER, server, tmp / PHOTOS)
    logs = {"default": tmp / "default.log", "photos": tmp / "photos.log"}
    runs = {
        "default": start_kedro(
            default,
            ["run", "--pipeline=evaluate", f"--env={TEAM_ENV}"],
            logs["default"],
            _environ(server),
        ),
        "photos": start_kedro(
            photos, ["run", f"--env={PHOTOS_ENV}"], logs["photos"], _environ(server)
        ),
    }
    for name, process in runs.items():
        finish_run(process, logs[name])
    return {"default": default, "photos": photos, "logs": logs}


def _registration(project: Path) -> dict:
    return json.loads((project / "data/08_reporting/model_registration.json").read_text())


def test_two_envs_at_once_round_trip_through_the_team_server(server, team_runs, as_user):
    client = as_user(team.WRITER)
    for name, model in (("default", "croft-clip"), ("photos", f"croft-clip-{PHOTOS}")):
        registration = _registration(team_runs[name])
        assert registration["model_name"] == model and str(registration["version"]) == "1"
        aliases = client.get_registered_model(model).aliases
        expected = {"candidate": "1"} | ({"champion": "1"} if registration["gates_passed"] else {})
        assert {alias: str(v) for alias, v in aliases.items()} == expected
        assert len(client.search_model_versions(f"name='{model}'")) == 1

        registered = client.get_run(registration["run_id"])  # the model's, in the pipeline's
        run = client.get_run(registered.data.tags["mlflow.parentRunId"])
        assert run.info.status == "FINISHED" and run.data.params and run.data.metrics
        listed = {f.path for f in client.list_artifacts(run.info.run_id, "evaluation")}
        assert {"evaluation/report.html", "evaluation/plots"} <= listed
        report = client.download_artifacts(
            run.info.run_id, "evaluation/report.html", str(team_runs[name] / "downloaded")
        )
        local = team_runs[name] / "data/08_reporting/report.html"
        assert Path(report).read_bytes() == local.read_bytes()
        # proxied: the bytes live in the server's artifact folder, not in the client's project
        stored = list(server["state"].artifacts.rglob(f"{run.info.run_id}/**/report.html"))
        assert stored and stored[0].read_bytes() == local.read_bytes()


def test_no_credential_reaches_logs_report_or_tracking(server, team_runs, as_user):
    client = as_user(team.WRITER)
    secrets = [server["passwords"][user] for user in (team.WRITER, team.READER, team.ADMIN, "db")]
    texts = [log.read_text() for log in team_runs["logs"].values()]
    for project in (team_runs["default"], team_runs["photos"]):
        texts.append((project / "data/08_reporting/report.html").read_text())
        texts.append((project / "data/08_reporting/model_registration.json").read_text())
    experiment = client.get_experiment_by_name(team.EXPERIMENT)
    for run in client.search_runs([experiment.experiment_id]):
        texts.append(json.dumps({**run.data.tags, **run.data.params}))
    for model in client.search_model_versions():
        texts.append(json.dumps({**model.tags, "description": model.description}))
    assert len(texts) > 6
    leaked = [i for i, text in enumerate(texts) for secret in secrets if secret in text]
    assert leaked == []


def test_a_reader_reads_and_loads_but_cannot_write(server, team_runs, as_user, tmp_path):
    from croft_pipeline.serving.pyfunc import load_in_process

    assert "401" in str(_refusal(lambda: as_user(None).search_experiments()))
    reader = as_user(team.READER)
    registration = _registration(team_runs["default"])
    assert reader.get_run(registration["run_id"]).data.params  # the register run's
    with _tracking(server["uri"]):
        model = load_in_process("models:/croft-clip@candidate")
    assert model.metadata.run_id == registration["run_id"]

    experiment = reader.get_experiment_by_name(team.EXPERIMENT).experiment_id
    for operation, needed in (
        (lambda: reader.create_run(experiment), "EDIT on the experiment"),
        (
            lambda: reader.set_registered_model_alias("croft-clip", "champion", "1"),
            "EDIT on the registered model",
        ),
    ):
        line = denied(server["uri"], _refusal(operation), team.READER)
        assert line is not None and server["uri"] in line and needed in line

    # a reader's `kedro run`: one line naming the server and the permission, no node run
    project = _team_project(team_runs["default"], tmp_path / "reader", team.READER, server)
    log = tmp_path / "reader.log"
    process = start_kedro(
        project, ["run", "--pipeline=evaluate", f"--env={TEAM_ENV}"], log, _environ(server)
    )
    assert process.wait(timeout=300) != 0
    text = log.read_text()
    assert f"Error: MLflow tracking server {server['uri']} denied user 'reader'" in text, text[
        -2000:
    ]
    assert "EDIT on the experiment" in text and "Traceback" not in text
    assert "Running node" not in text and "Completed node" not in text


@contextmanager
def _tracking(uri: str):
    """MLflow's default tracking and registry URIs for the block, then as they were."""
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def _refusal(operation) -> MlflowException:
    with pytest.raises(MlflowException) as raised:
        operation()
    return raised.value


@pytest.mark.parametrize("case", ["server down", "no credentials"])
def test_a_run_stops_before_any_node_with_one_line(server, team_runs, tmp_path, case):
    project = _team_project(team_runs["default"], tmp_path / "p", team.WRITER, server)
    uri = server["uri"]
    if case == "server down":
        uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    else:
        (project / "conf" / "local" / "credentials.yml").unlink()
    log = tmp_path / "run.log"
    process = start_kedro(project, ["run", f"--env={TEAM_ENV}"], log, _environ(server, uri))
    assert process.wait(timeout=120) != 0
    errors = [line for line in log.read_text().splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and uri in errors[0], log.read_text()[-2000:]
    assert ("unreachable" if case == "server down" else "refused no credentials") in errors[0]
    assert "Running node" not in log.read_text() and "Traceback" not in log.read_text()


def test_served_and_described_from_the_team_registry(server, team_runs, tmp_path):
    """`mlflow models serve` and `croft-pipeline info` with a reader's credentials."""
    environ = {
        **_environ(server),
        "MLFLOW_TRACKING_URI": server["uri"],
        "MLFLOW_TRACKING_USERNAME": team.READER,
        "MLFLOW_TRACKING_PASSWORD": server["passwords"][team.READER],
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    info = subprocess.run(
        [
            sys.executable,
            "-m",
            "croft_pipeline.tools.console",
            "info",
            "--json",
            "--model",
            "models:/croft-clip@candidate",
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert info.returncode == 0, info.stderr[-2000:]
    described = json.loads(info.stdout)
    anonymous = {k: v for k, v in environ.items() if not k.startswith("MLFLOW_TRACKING_USER")}
    anonymous.pop("MLFLOW_TRACKING_PASSWORD")
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "croft_pipeline.tools.console",
            "info",
            "--model",
            "models:/croft-clip@candidate",
        ],
        env=anonymous,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"croft-pipeline info: MLflow tracking server {server['uri']} did not authenticate "
        "this client (HTTP 401)"
    )
    assert described["bundle"]["class_names"] == _registration_classes(team_runs["default"])
    assert described["run"]["metrics"]  # the pipeline run's, the register run's parent

    port, log = _free_port(), tmp_path / "serve.log"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        "models:/croft-clip@candidate",
    ]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(process, f"http://127.0.0.1:{port}/ping", log)
        image = next((team_runs["default"] / "data/01_raw").rglob("*.png"))
        body = {"dataframe_records": [{"image": base64.b64encode(image.read_bytes()).decode()}]}
        status, answer = _post(f"http://127.0.0.1:{port}/invocations", body)
        assert status == 200, answer
        assert answer["predictions"][0]["class_name"] in described["bundle"]["class_names"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def _registration_classes(project: Path) -> list[str]:
    return json.loads((project / "data/03_primary/id_classes.json").read_text())
