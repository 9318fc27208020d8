"""Ray for the tests: one cluster per test module (a local one, a multi-node one on this machine),
and what the sweep and embed tests compare (the sequential fits, the cache chunks)."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch

from croft_pipeline.pipelines.train import nodes
from tests.kedro_harness import load_params
from tests.methods.synthetic import CLASSES, synthetic_tables

NO_TRACKING = "no-mlflow-in-ray-workers://"  # any MLflow call in a worker fails its task
SWEEP = {**load_params("test")["train"], "methods": ["croft_clean", "tip_adapter_f"]}
SEEDS = [1, 2]  # 2 methods x 2 seeds: 4 fit jobs, 2 grid points each
COMPARED = ("config", "best_epoch", "best_val_accuracy", "grid", "alpha", "val_accuracy_by_alpha")
OBJECT_STORE = 128 * 2**20  # bytes per node: the tests' features and model are small


def ray_or_skip() -> Any:
    """``ray``; without it the module is skipped, except in CI (``make`` installs ``.[ray]``),
    where a missing Ray is an error rather than tests that silently never run."""
    if os.environ.get("CI") == "true":
        return importlib.import_module("ray")
    return pytest.importorskip("ray")


def local_ray(**options: Any) -> Iterator[Any]:
    """A module fixture's body: ``ray`` started on this machine, shut down after the module."""
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # the package's offline default, made sure
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 2**20,
        **options,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@contextmanager
def own_ray_tmp() -> Iterator[Path]:
    """A short temp folder of its own as ``RAY_TMPDIR`` (raylet socket paths are length-limited)
    for a cluster this test starts: Ray notes a started cluster's address there, where a plain
    ``ray.init()`` would read it from ``/tmp/ray`` and join it (another test's, another user's)."""
    folder, before = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp")), os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            del os.environ["RAY_TMPDIR"]
        else:
            os.environ["RAY_TMPDIR"] = before
        shutil.rmtree(folder, ignore_errors=True)


def ray_cluster(workers: int, **options: Any) -> Iterator[Any]:
    """A module fixture's body: a ``ray.cluster_utils.Cluster`` on this machine (a head without
    CPUs, so every task runs on a worker node, and ``workers`` one-CPU worker raylets), the
    driver connected; after the module the driver and every raylet are shut down."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    node = {"object_store_memory": OBJECT_STORE, "include_dashboard": False}
    with own_ray_tmp():
        cluster = Cluster()
        try:
            cluster.add_node(**node, num_cpus=0)
            for _ in range(workers):
                cluster.add_node(**node, num_cpus=1)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False, **options)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive_nodes(ray) -> set[str]:
    """The ids of the cluster's live nodes, as Ray's control store lists them."""
    return {node["NodeID"] for node in ray.nodes() if node["Alive"]}


@pytest.fixture(scope="module")
def tables():
    return synthetic_tables()


@pytest.fixture(scope="module")
def sequential(tables, tmp_path_factory):
    """The fits in this process, one after another (train.workers: 1), logged to MLflow."""
    with tracked(tmp_path_factory.mktemp("sequential")) as runs:
        weights, summary, _ = nodes.fit_methods(*tables, CLASSES, SWEEP, SEEDS)
    return weights, summary, runs()


def assert_same_fits(result, expected) -> None:
    """Equal weights and summaries (what ``fit_methods`` returns) of two sweeps."""
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


def placements(caplog) -> list[dict[str, int]]:
    """The node counts the runners logged (``distributed.log_placement``), in order."""
    return [record.nodes for record in caplog.records if hasattr(record, "nodes")]


@contextmanager
def tracked(folder):
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
