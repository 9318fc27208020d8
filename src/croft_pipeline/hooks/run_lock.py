"""One pipeline run at a time per project: an exclusive lock on ``data/.run.lock``.

The lock is ``filelock``'s (``flock`` on Unix), so the kernel releases it when its process dies,
however it dies (SIGKILL included); the file only records who holds it, for the message a second
run fails with. Failing fast, not waiting: two runs of one project write the same outputs, so the
second would only redo or overwrite the first's work; its user decides whether to wait or stop.

:class:`RunLockHook` takes the lock before any other hook's ``before_pipeline_run`` (before
kedro-mlflow opens its run), ends the MLflow runs of killed runs (``tracking.ownership.end_stale_runs``),
settles the registrations they left unfinished (``publishing.interrupted.settle_project``),
tags the new run as this process's, and releases the lock after every other end-of-run hook.
In a DVC repository it also holds DVC's locks for the run (:mod:`croft_pipeline.hooks.dvc_lock`):
one lock for both tools.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from kedro.framework.hooks import hook_impl

from croft_pipeline.hooks import dvc_lock
from croft_pipeline.hooks.errors import RunRefused

logger = logging.getLogger(__name__)

LOCK_FILE = "data/.run.lock"  # relative to the project root


class RunLockHeld(RunRefused):
    """Another process holds the project's run lock."""


class RunLock:
    """An exclusive, non-blocking lock on ``path`` that records its holder in the file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = FileLock(self.path, timeout=0, thread_local=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self, pipeline: str) -> None:
        """Take the lock for a run of ``pipeline``; raise :class:`RunLockHeld` if it is taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunLockHeld(held_message(self.path, self.path.read_text())) from None
        self.path.write_text(json.dumps(holder_record(pipeline)))  # the file stays: same inode

    def release(self) -> None:
        """Clear the record and unlock (the file stays: removing it would race a new holder)."""
        if not self._lock.is_locked:
            return
        self.path.write_text("")
        self._lock.release()


def holder_record(pipeline: str) -> dict[str, Any]:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "pipeline": pipeline,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if (stage := dvc_lock.dvc_stage()) is not None:
        record["dvc_stage"] = stage
    return record


def held_message(path: Path, holder: str) -> str:
    try:
        record = json.loads(holder)
        who = f"pid {record['pid']} on {record['host']}, pipeline {record['pipeline']}, "
        who += f"since {record['since']}"
        if "dvc_stage" in record:
            who += f", run by DVC as its stage {record['dvc_stage']}"
    except (ValueError, KeyError, TypeError):
        who = "holder not recorded yet"
    return f"another run holds {path} ({who}); wait for it or stop it"


def pipeline_label(run_params: dict[str, Any]) -> str:
    return "+".join(run_params.get("pipeline_names") or ["__default__"])


class RunLockHook:
    """Serialises the runs of a project and ends the MLflow runs that killed runs left RUNNING.

    Hook wrappers (pluggy ``wrapper=True``) run their code before ``yield`` ahead of every plain
    hook and after ``yield`` behind them, whatever the registration order: plugin hooks such as
    kedro-mlflow's are registered after ``settings.HOOKS`` and so are called before them.
    """

    def __init__(self) -> None:
        self._lock: RunLock | None = None
        self._dvc_locks = ExitStack()

    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params: dict[str, Any], catalog):
        from croft_pipeline import tracking  # MLflow only when a pipeline runs
        from croft_pipeline.publishing.interrupted import settle_project
        from croft_pipeline.publishing.params import with_model_name
        from croft_pipeline.tracking import ownership

        if self._lock is not None:  # a run of this process that never reached its end hooks
            logger.warning("releasing %s left held by an interrupted run", self._lock.path)
            self._release()
        project = Path(run_params["project_path"])
        lock = RunLock(project / LOCK_FILE)
        lock.acquire(pipeline_label(run_params))
        self._lock = lock
        try:
            holder = held_message(lock.path, lock.path.read_text())  # what DVC prints if stopped
            self._dvc_locks = dvc_lock.hold(project, lock.path.parent, holder)
            ownership.end_stale_runs(lock.path)
            register = with_model_name(
                catalog.load("params:evaluate")["register"], catalog.load("params:ingest")
            )
            settle_project(register, run_params["project_path"])
            result = yield  # kedro-mlflow opens the pipeline's run here
            tracking.tag_active_run(ownership.owner_tags(lock.path))
        except BaseException:
            self._release()
            raise
        return result

    @hook_impl(wrapper=True)
    def after_pipeline_run(self):
        try:
            return (yield)  # kedro-mlflow ends its run here
        finally:
            self._release()

    @hook_impl(wrapper=True)
    def on_pipeline_error(self):
        try:
            return (yield)  # kedro-mlflow ends its run as FAILED here
        finally:
            self._release()

    def _release(self) -> None:
        dvc_locks, self._dvc_locks = self._dvc_locks, ExitStack()
        try:
            dvc_locks.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
