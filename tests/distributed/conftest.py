"""One local Ray cluster per test module: 2 CPUs, no dashboard, no usage stats, no log relay."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import pytest


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
