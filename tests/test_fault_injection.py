"""Fault injection: ``kedro run`` of embed, train and evaluate as real subprocesses, SIGKILLed
(with all their workers) at seeded random points of the pipeline's measured duration. After
each kill the rerun completes, its outputs equal the uninterrupted run's, ``mlflow.db`` passes
SQLite's integrity check, the served alias points at a version whose run FINISHED and whose
model loads and predicts as the uninterrupted run's, and no MLflow run is left RUNNING."""

from __future__ import annotations

import json
import math
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow.entities import ViewType
from safetensors import safe_open

from croft_pipeline.pipeline_registry import pipelines_from, register_pipelines
from croft_pipeline.publishing.params import with_model_name
from croft_pipeline.serving.pyfunc import load_in_process
from tests.kedro_harness import (
    clear_outputs,
    copy_project,
    finish_run,
    kill_run,
    load_params,
    output_paths,
    start_kedro_run,
)

pytestmark = pytest.mark.slow

PIPELINES = pipelines_from("embed")  # in order: each reads the ones before
SEED = 11
KILLS = 2  # faults per pipeline
ATTEMPTS = 3  # runs per fault that may end before the kill point (each corrects the duration)
FRACTIONS = (0.05, 0.9)  # kill points: this share of the measured duration after the run starts
SESSION_STARTED = "Kedro project croft_pipeline"  # KedroSession.run's first log line
NODE_DONE = re.compile(r"node (\S+) done in")  # croft_pipeline.hooks.NodeTimingHook

# What differs between two uninterrupted runs, excluded from the comparison by name
# (train_summary.json holds no wall times and no run ids: they are in MLflow, training_runs.json):
RUN_ID = re.compile(rb"\b[0-9a-f]{32}\b")  # report.html: the MLflow run its provenance box links
REGISTRY_FIELDS = {"version", "model_uri", "run_id", "champion_version"}  # model_registration:
# the version a run registers (and its run) counts the store's earlier versions


@dataclass(frozen=True)
class Reference:
    """The project after one uninterrupted ``kedro run`` of every pipeline."""

    project: Path
    seconds: dict[str, float]  # each run's wall time from its session start: the kill points
    outputs: dict[str, dict[str, Any]]  # each pipeline's outputs (:func:`_outputs`)
    prediction: pd.DataFrame  # the registered model's prediction of one image


@pytest.fixture(scope="module")
def reference(tiny_project, tmp_path_factory) -> Reference:
    """One project copy (the shared tiny run's upstream data) with an uninterrupted run of each
    pipeline; the fault tests kill and rerun the pipelines in it in turn."""
    folder = tmp_path_factory.mktemp("faults")
    project = copy_project(tiny_project, folder / "project")
    seconds, outputs = {}, {}
    for pipeline in PIPELINES:
        clear_outputs(project, pipeline)
        log = folder / f"{pipeline}.log"
        run = _run(project, pipeline, log)
        assert run.returncode == 0, log.read_text()[-3000:]
        seconds[pipeline], outputs[pipeline] = run.seconds, _outputs(project, pipeline)
    return Reference(project, seconds, outputs, _served_prediction(project))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_killed_run_reruns_to_the_uninterrupted_outputs_and_a_sound_store(
    reference, pipeline, tmp_path
):
    project = reference.project
    rng = random.Random(f"{SEED}/{pipeline}")
    fractions = sorted(rng.uniform(*FRACTIONS) for _ in range(KILLS))
    seconds, left_running = reference.seconds[pipeline], {}
    for index, fraction in enumerate(fractions):
        for attempt in range(ATTEMPTS):
            clear_outputs(project, pipeline)  # a stale output cannot pass for the rerun's
            log = tmp_path / f"kill{index}_{attempt}.log"
            killed = _run(project, pipeline, log, kill_after=fraction * seconds)
            if killed.where is not None:
                break
            seconds = killed.seconds  # it ended before its kill point: a newer duration
        where = killed.where
        assert where is not None, f"{pipeline} ended before every kill point:\n{log.read_text()}"
        print(f"{pipeline}: SIGKILL at {fraction:.2f} of {seconds:.1f} s, {where}")
        log = tmp_path / f"rerun{index}.log"
        finish_run(start_kedro_run(project, pipeline, log), log)

        assert _integrity(project) == "ok"
        outputs = _outputs(project, pipeline)
        assert outputs.keys() == reference.outputs[pipeline].keys()
        for name, value in outputs.items():
            assert value == reference.outputs[pipeline][name], f"{name} differs after {where}"
        version, status = _served_version(project)
        assert status == "FINISHED", f"alias on version {version}, whose run is {status}"
        assert version == _registration(project)["version"]  # the latest evaluate run's
        pd.testing.assert_frame_equal(_served_prediction(project), reference.prediction)
        left_running[f"fault {index} ({where})"] = _running_runs(project)
    # last, so that every fault above was checked first (main leaves killed runs RUNNING)
    assert not any(left_running.values()), f"MLflow runs left RUNNING: {left_running}"


@dataclass(frozen=True)
class Run:
    returncode: int
    seconds: float  # from its session start to its end or its kill
    where: str | None  # where it was killed; None: it ended before its kill point


def _run(project: Path, pipeline: str, log: Path, kill_after: float = math.inf) -> Run:
    """``kedro run`` of the pipeline, SIGKILLed ``kill_after`` seconds after its session starts
    unless it ends first; where it was killed is the node it was running, from the log (the
    first node in run order that had not finished)."""
    process = start_kedro_run(project, pipeline, log)
    while SESSION_STARTED not in log.read_text() and process.poll() is None:
        time.sleep(0.05)
    started = time.monotonic()
    while process.poll() is None and time.monotonic() - started < kill_after:
        time.sleep(0.05)
    seconds, ended = time.monotonic() - started, process.poll() is not None
    kill_run(process)  # its workers too, if it ended
    if ended:
        return Run(process.returncode, seconds, None)
    done = set(NODE_DONE.findall(log.read_text()))
    pending = [n.name for n in register_pipelines()[pipeline].nodes if n.name not in done]
    if not done:
        where = "before its first node finished" + (f" (in {pending[0]})" if pending else "")
    else:
        where = f"in node {pending[0]}" if pending else "after its last node"
    return Run(process.returncode, seconds, where)


def _outputs(project: Path, pipeline: str) -> dict[str, Any]:
    """Every file the pipeline's catalog outputs hold: its bytes; a safetensors file's tensors
    (bit for bit) and header metadata; a JSON file with run-specific fields without them."""
    files = {}
    for path in output_paths(project, pipeline):
        for file in sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]:
            name = str(file.relative_to(project))
            if not file.exists():
                files[name] = None
            elif file.suffix == ".safetensors":
                files[name] = _tensors(file)
            elif file.name == "training_runs.json":  # the ids of this run's MLflow runs
                files[name] = {
                    m: sorted(seeds) for m, seeds in json.loads(file.read_text()).items()
                }
            elif file.name == "report.html":
                files[name] = RUN_ID.sub(b"<run id>", file.read_bytes())
            elif file.name == "model_registration.json":
                files[name] = _without(json.loads(file.read_text()), REGISTRY_FIELDS)
            else:
                files[name] = file.read_bytes()
    return files


def _tensors(path: Path) -> dict[str, Any]:
    """Not the file's bytes: safetensors writes its header metadata in a per-process random
    order (safetensors 0.8: a Rust HashMap), so two uninterrupted runs may differ there."""
    with safe_open(str(path), framework="pt") as handle:
        tensors, names = {}, handle.keys()  # a safe_open handle is no mapping
        for name in names:
            tensor = handle.get_tensor(name)
            tensors[name] = (str(tensor.dtype), tuple(tensor.shape), tensor.numpy().tobytes())
        return {"metadata": handle.metadata(), "tensors": tensors}


def _without(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def _integrity(project: Path) -> str:
    with closing(sqlite3.connect(project / "mlflow.db")) as db:
        return "\n".join(row[0] for row in db.execute("PRAGMA integrity_check"))


def _registration(project: Path) -> dict[str, Any]:
    return json.loads((project / "data/08_reporting/model_registration.json").read_text())


def _register_params() -> dict[str, Any]:
    params = load_params("test")
    return with_model_name(params["evaluate"]["register"], params["ingest"])


@contextmanager
def _store(project: Path) -> Iterator[mlflow.MlflowClient]:
    """A client of the project's tracking store and registry, also set as MLflow's default."""
    uri = f"sqlite:///{project / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def _served_version(project: Path) -> tuple[str, str]:
    """(version, its run's status) of the alias that every registration moves (candidate)."""
    register = _register_params()
    with _store(project) as client:
        version = client.get_model_version_by_alias(
            register["model_name"], register["candidate_alias"]
        )
        return str(version.version), client.get_run(version.run_id).info.status


def _served_prediction(project: Path) -> pd.DataFrame:
    """The aliased model, loaded through the registry, on one image of the project."""
    register = _register_params()
    image = next((project / "data/01_raw/emojishift").rglob("*.png"))
    with _store(project):
        model = load_in_process(
            f"models:/{register['model_name']}@{register['candidate_alias']}",
            model_config={"allowed_roots": [str(image.parent)]},
        )
        prediction = model.predict(pd.DataFrame({"path": [str(image)]}))
    assert len(prediction) == 1
    return prediction.reset_index(drop=True)


def _running_runs(project: Path) -> list[str]:
    with _store(project) as client:
        experiments = [e.experiment_id for e in client.search_experiments(ViewType.ALL)]
        runs = client.search_runs(
            experiments, "attributes.status = 'RUNNING'", run_view_type=ViewType.ALL
        )
        return sorted(run.info.run_name for run in runs)
