"""Independent jobs as Ray tasks (:func:`croft_pipeline.runtime.parallel_map`'s ``ray`` runner).

Each job is one task reserving ``cpus_per_task`` CPUs; a task whose worker process dies (killed,
out of memory, a lost node) is run again up to ``max_retries`` times, while an exception the job
raises fails the map at once (a bad configuration stays an error). Jobs return plain data and
the driver alone writes files and MLflow, as with the local process pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from croft_pipeline.distributed import connect
from croft_pipeline.runtime import Runner


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def ray_map(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    runner: Runner,
    done: Callable[[], Any] = lambda: None,
) -> list[Any]:
    """``[fn(item) for item in items]`` as Ray tasks, in item order; ``done()`` after each."""
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
            ray.get(finished)  # the first failure raises here, not after every job ran
            done()
    finally:
        for ref in waiting:
            ray.cancel(ref)
    return ray.get(refs)
