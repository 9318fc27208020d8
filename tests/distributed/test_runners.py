"""Choosing a runner (no Ray needed): the Ray actor pool's size, and the parameters' rules."""

from __future__ import annotations

import pytest

from croft_pipeline.config.rules import ParameterError
from croft_pipeline.distributed.embed import RayEmbed, chunk_runner
from croft_pipeline.distributed.jobs import LOCAL, Runner


@pytest.mark.parametrize(
    ("options", "resources", "pool"),
    [
        ({}, {"CPU": 2}, (1, 0)),  # one 1-CPU actor beside a 0.5-CPU decode task
        ({}, {"CPU": 16}, (15, 0)),
        ({}, {"CPU": 16, "GPU": 4}, (4, 1)),  # one GPU per actor
        ({"actors": 2, "cpus_per_actor": 1, "decode_cpus": 1}, {"CPU": 2}, (2, 0)),  # fused
        ({"actors": 2, "cpus_per_actor": 0.5}, {"CPU": 2}, (2, 0)),
    ],
)
def test_the_actor_pool_fits_the_cluster(options, resources, pool):
    assert RayEmbed(**options).pool(resources) == pool


@pytest.mark.parametrize(
    ("options", "resources"),
    [({"actors": 2}, {"CPU": 2}), ({"actors": 5}, {"CPU": 64, "GPU": 4})],
)
def test_a_pool_the_cluster_cannot_hold_is_named(options, resources):
    with pytest.raises(ParameterError, match=r"^embed.ray.actors must fit the cluster"):
        RayEmbed(**options).pool(resources)


def test_local_is_the_default_runner():
    assert chunk_runner({}) is None and chunk_runner({"runner": "local"}) is None
    assert Runner.from_params({}, "train") == LOCAL
    ray = Runner.from_params({"runner": "ray", "ray": {"max_retries": 1}}, "train")
    assert (ray.kind, ray.max_retries, ray.key) == ("ray", 1, "train.runner")


def test_a_broken_ray_option_is_named_by_its_full_key():
    """The runners read their ``ray`` blocks through the parameter models (one set of rules)."""
    with pytest.raises(ParameterError, match=r"^train\.ray\.max_retries must be an integer >= 0"):
        Runner.from_params({"ray": {"max_retries": -1}}, "train")
    with pytest.raises(ParameterError, match=r"^embed\.ray\.decode_cpus must be > 0, got 0$"):
        chunk_runner({"ray": {"decode_cpus": 0}})
