"""Independent jobs: where they run (:class:`Runner`) and :func:`parallel_map`, which runs them in
this machine's processes or as Ray tasks.

A Ray job is one task reserving ``cpus_per_task`` CPUs; a task whose worker process dies (killed,
out of memory, a lost node) is run again up to ``max_retries`` times, while an exception the job
raises fails the map at once (a bad configuration stays an error). Jobs return plain data and
the driver alone writes files and MLflow, as with the local process pool.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from croft_pipeline.config.rules import RUNNER, THREAD_COUNT
from croft_pipeline.distributed import TaskLostError, connect, log_placement, node_id
from croft_pipeline.methods.params import RayTasks

RAY_TASKS = RayTasks()  # the defaults of train.ray


@dataclass(frozen=True)
class Runner:
    """Where :func:`parallel_map` runs its jobs: ``local`` processes or ``ray`` tasks."""

    kind: str = "local"
    max_retries: int = RAY_TASKS.max_retries  # ray: times a task whose dead worker reruns
    cpus_per_task: float = RAY_TASKS.cpus_per_task  # ray: CPUs each task reserves
    key: str = field(default="runner", compare=False)  # the parameter naming it (for errors)

    @classmethod
    def from_params(cls, block: Mapping[str, Any], key: str) -> Runner:
        """``<key>.runner`` and its ``<key>.ray`` options (``max_retries``, ``cpus_per_task``)."""
        ray = RayTasks.checked(block.get("ray"), f"{key}.ray")
        return cls(
            kind=RUNNER.check(f"{key}.runner", block.get("runner", "local")),
            max_retries=ray.max_retries,
            cpus_per_task=ray.cpus_per_task,
            key=f"{key}.runner",
        )


LOCAL = Runner()


def _call(fn: Callable[[Any], Any], item: Any) -> tuple[str, Any]:
    """``fn(item)`` in a Ray task, with the node it ran on."""
    return node_id(), fn(item)


def ray_map(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    runner: Runner,
    done: Callable[[], Any] = lambda: None,
) -> list[Any]:
    """``[fn(item) for item in items]`` as Ray tasks, in item order; ``done()`` after each.
    The tasks' nodes are logged (:func:`~croft_pipeline.distributed.log_placement`)."""
    ray = connect(runner.key)
    task = ray.remote(_call).options(
        num_cpus=runner.cpus_per_task, max_retries=runner.max_retries, retry_exceptions=False
    )
    shared = ray.put(fn)
    refs = [task.remote(shared, item) for item in items]
    waiting = list(refs)
    try:
        while waiting:
            finished, waiting = ray.wait(waiting, num_returns=1)
            try:
                ray.get(finished)  # the first failure raises here, not after every job ran
            except (ray.exceptions.RayTaskError, ray.exceptions.TaskCancelledError):
                raise  # the job's own exception: no retry, as documented
            except ray.exceptions.RayError as error:
                raise _lost(runner, refs.index(finished[0]), len(refs), error) from error
            done()
    finally:
        for ref in waiting:
            ray.cancel(ref)
    placed = ray.get(refs)
    log_placement(runner.key, "tasks", [node for node, _ in placed])
    return [result for _, result in placed]


def _lost(runner: Runner, index: int, total: int, error: Exception) -> TaskLostError:
    """A :class:`TaskLostError` naming the job, the retries and what Ray says was lost."""
    retries = f"{runner.key.rsplit('.', 1)[0]}.ray.max_retries={runner.max_retries}"
    said = str(error).strip().splitlines()
    return TaskLostError(
        f"{runner.key}: job {index + 1} of {total} was lost with its Ray worker or node and "
        f"{retries} retries are used up: {' '.join(said[:3])}"
    )


def worker_count(workers: int | str | None, jobs: int) -> int:
    """Processes for ``jobs`` independent jobs: ``auto`` = the cores (at most one per job)."""
    THREAD_COUNT.check("workers", workers)
    count = (os.cpu_count() or 1) if workers in (None, "auto") else int(workers)
    return max(1, min(count, jobs))


def parallel_map(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    workers: int,
    desc: str = "jobs",
    runner: Runner = LOCAL,
) -> list[Any]:
    """``[fn(item) for item in items]``, in ``workers`` fresh processes when ``workers > 1``, or
    as Ray tasks when ``runner.kind`` is ``ray`` (the cluster's CPUs bound them, not ``workers``).

    Processes are spawned, not forked: a fork after torch started its OpenMP threads can hang.
    ``fn`` must be importable (a module-level function) and its items picklable.
    """
    bar = tqdm(total=len(items), desc=desc, unit="job", disable=len(items) < 2)
    with bar:
        if runner.kind == "ray":
            return ray_map(fn, items, runner, bar.update)
        if workers <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(fn(item))
                bar.update()
            return results
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = []
            for result in pool.map(fn, items):
                results.append(result)
                bar.update()
            return results
