"""``train.runner: ray``: the fit jobs as Ray tasks give the sequential run's outcomes, a task
whose worker process dies is retried, and only the driver writes MLflow."""

from __future__ import annotations

from functools import partial

import pytest

from croft_pipeline.distributed import TaskLostError
from croft_pipeline.methods import tuning
from croft_pipeline.pipelines.train import nodes
from tests.distributed.conftest import (
    NO_TRACKING,
    SEEDS,
    SWEEP,
    assert_same_fits,
    local_ray,
    ray_or_skip,
    tracked,
)
from tests.distributed.dying import dies_once
from tests.methods.synthetic import CLASSES

pytestmark = pytest.mark.slow  # subprocesses, a served model or a Ray cluster: the integration tier

ray = ray_or_skip()

ON_RAY = {**SWEEP, "runner": "ray"}


@pytest.fixture(scope="module")
def cluster():
    yield from local_ray(runtime_env={"env_vars": {"MLFLOW_TRACKING_URI": NO_TRACKING}})


def test_a_killed_worker_is_retried_to_the_sequential_outcomes(
    cluster, tables, sequential, tmp_path, monkeypatch
):
    marker = tmp_path / "died"
    monkeypatch.setattr(tuning, "run_fit", partial(dies_once, str(marker)))
    result = nodes.fit_methods(*tables, CLASSES, ON_RAY, SEEDS)
    assert marker.exists()  # one task's worker did die
    assert_same_fits(result, sequential)


def test_without_retries_a_killed_worker_fails_the_sweep(cluster, tables, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "run_fit", partial(dies_once, str(tmp_path / "died")))
    no_retry = {**ON_RAY, "ray": {"max_retries": 0}}
    with pytest.raises(
        TaskLostError, match=r"^train\.runner: job \d of 4 was lost .*max_retries=0"
    ):
        nodes.fit_methods(*tables, CLASSES, no_retry, SEEDS)


def test_only_the_driver_writes_mlflow(cluster, tables, sequential, tmp_path):
    """The workers' MLflow points nowhere (NO_TRACKING), yet the runs are the sequential ones."""
    with tracked(tmp_path) as runs:
        result = nodes.fit_methods(*tables, CLASSES, ON_RAY, SEEDS)
    assert_same_fits(result, sequential)
    assert runs() == sequential[2]
    assert len(runs()) == 1 + len(SEEDS) * (2 + 2 + 2 * 2)  # parent; method, WiSE, grid points
