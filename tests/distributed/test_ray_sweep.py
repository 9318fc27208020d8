"""``train.runner: ray``: the fit jobs as Ray tasks give the sequential run's outcomes, a task
whose worker process dies is retried, and only the driver writes MLflow."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import mlflow
import pytest
import torch

from croft_pipeline.methods import tuning
from croft_pipeline.pipelines.train import nodes
from tests.distributed.conftest import local_ray, ray_or_skip
from tests.distributed.dying import dies_once
from tests.kedro_harness import load_params
from tests.methods.synthetic import CLASSES, synthetic_tables

pytestmark = pytest.mark.slow  # subprocesses, a served model or a Ray cluster: the integration tier

ray = ray_or_skip()

NO_TRACKING = "no-mlflow-in-ray-workers://"  # any MLflow call in a worker fails its task
PARAMS = {**load_params("test")["train"], "methods": ["croft_clean", "tip_adapter_f"]}
ON_RAY = {**PARAMS, "runner": "ray"}
SEEDS = [1, 2]  # 2 methods x 2 seeds: 4 fit jobs, 2 grid points each
COMPARED = ("config", "best_epoch", "best_val_accuracy", "grid", "alpha", "val_accuracy_by_alpha")


@pytest.fixture(scope="module")
def cluster():
    yield from local_ray(runtime_env={"env_vars": {"MLFLOW_TRACKING_URI": NO_TRACKING}})


@pytest.fixture(scope="module")
def tables():
    return synthetic_tables()


@pytest.fixture(scope="module")
def sequential(tables, tmp_path_factory):
    """The fits in this process, one after another (train.workers: 1), logged to MLflow."""
    with _tracked(tmp_path_factory.mktemp("sequential")) as runs:
        weights, summary, _ = nodes.fit_methods(*tables, CLASSES, PARAMS, SEEDS)
    return weights, summary, runs()


def _assert_same_fits(result, expected) -> None:
    (weights, summary), (expected_weights, expected_summary) = result[:2], expected[:2]
    assert weights.keys() == expected_weights.keys()
    for key, state in expected_weights.items():
        assert all(torch.equal(weights[key][k], state[k]) for k in state), key
    assert summary.methods.keys() == expected_summary.methods.keys()
    for name, entry in expected_summary.methods.items():
        for seed, run in entry.seeds.items():
            other = summary.methods[name].seeds[seed]
            assert {k: getattr(other, k, None) for k in COMPARED} == {
                k: getattr(run, k, None) for k in COMPARED
            }


def test_a_killed_worker_is_retried_to_the_sequential_outcomes(
    cluster, tables, sequential, tmp_path, monkeypatch
):
    marker = tmp_path / "died"
    monkeypatch.setattr(tuning, "run_fit", partial(dies_once, str(marker)))
    result = nodes.fit_methods(*tables, CLASSES, ON_RAY, SEEDS)
    assert marker.exists()  # one task's worker did die
    _assert_same_fits(result, sequential)


def test_without_retries_a_killed_worker_fails_the_sweep(cluster, tables, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "run_fit", partial(dies_once, str(tmp_path / "died")))
    no_retry = {**ON_RAY, "ray": {"max_retries": 0}}
    with pytest.raises(ray.exceptions.RayError):
        nodes.fit_methods(*tables, CLASSES, no_retry, SEEDS)


def test_only_the_driver_writes_mlflow(cluster, tables, sequential, tmp_path):
    """The workers' MLflow points nowhere (NO_TRACKING), yet the runs are the sequential ones."""
    with _tracked(tmp_path) as runs:
        result = nodes.fit_methods(*tables, CLASSES, ON_RAY, SEEDS)
    _assert_same_fits(result, sequential)
    assert runs() == sequential[2]
    assert len(runs()) == 1 + len(SEEDS) * (2 + 2 + 2 * 2)  # parent; method, WiSE, grid points


@contextmanager
def _tracked(folder):
    """An active MLflow run in a SQLite store of its own; yields a function that lists the
    store's runs (name, parameters, the metrics that time nothing), sorted."""
    uri, before = f"sqlite:///{folder / 'mlflow.db'}", mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    artifacts = (folder / "artifacts").as_uri()  # not ./mlruns, the store's default
    experiment = mlflow.MlflowClient(uri).create_experiment("sweep", artifact_location=artifacts)
    try:
        with mlflow.start_run(experiment_id=experiment, run_name="parent"):
            yield partial(_runs, uri)
    finally:
        mlflow.set_tracking_uri(before)


def _runs(uri: str) -> list[tuple]:
    client = mlflow.MlflowClient(uri)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return sorted(
        (
            run.data.tags.get("mlflow.runName"),
            sorted(run.data.params.items()),
            sorted((k, v) for k, v in run.data.metrics.items() if "seconds" not in k),
        )
        for run in client.search_runs(experiments)
    )
