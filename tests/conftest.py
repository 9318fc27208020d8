"""Shared fixtures: one tiny end-to-end run of the real pipelines, reused by many tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

import croft_pipeline  # noqa: F401  (offline defaults before anything else loads)
from tests.kedro_harness import EMBED_CACHE, chunk_digests, make_project_copy, run_pipeline
from tests.network_guard import loopback_only

pytest_plugins = ["tests.fixtures.served_model"]  # the tiny served model and MLflow store

END_TO_END_FIXTURES = {"tiny_run", "tiny_project", "fresh_project"}


def pytest_collection_modifyitems(items) -> None:
    """A test that runs real pipelines (directly or through the shared tiny run) is ``slow``,
    so ``-m "not slow"`` leaves only the unit tests."""
    for item in items:
        if END_TO_END_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@dataclass(frozen=True)
class TinyRun:
    project: Path
    network_attempts: tuple[str, ...]
    summary: tuple[str, ...]  # the run's last lines (croft_pipeline.hooks.RunSummaryHook)
    # the cache chunks this run wrote: later tests (the benchmark's folds) add to the shared cache
    cache_chunks: dict[str, str]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """The whole default pipeline, run once in the `test` environment with the network cut."""
    project = make_project_copy(tmp_path_factory.mktemp("tiny_project"))
    hooks, summary = logging.getLogger("croft_pipeline.hooks"), _Lines()
    hooks.addHandler(summary)
    try:
        with loopback_only() as attempts:
            run_pipeline(project, "__default__", env="test")
    finally:
        hooks.removeHandler(summary)
    produced = tuple(line for line in summary.lines if line.startswith("produced "))
    chunks = chunk_digests(project / EMBED_CACHE)
    return TinyRun(project, tuple(attempts), produced, chunks)


@pytest.fixture(scope="session")
def tiny_project(tiny_run) -> Path:
    """The project copy of :func:`tiny_run` (all pipeline outputs are under its data/)."""
    return tiny_run.project


@pytest.fixture
def fresh_project(tmp_path) -> Path:
    """An empty project copy (conf only) for a test that runs pipelines itself."""
    return make_project_copy(tmp_path / "project")
