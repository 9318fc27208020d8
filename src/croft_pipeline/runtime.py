"""Where torch computes: the device, the CPU thread count and the runner of independent jobs
(one rule for every stage)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from croft_pipeline.config.rules import POSITIVE, RUNNER, THREAD_COUNT, at_least


@dataclass(frozen=True)
class Runner:
    """Where :func:`parallel_map` runs its jobs: ``local`` processes or ``ray`` tasks."""

    kind: str = "local"
    max_retries: int = 3  # ray: times a task whose worker process died is run again
    cpus_per_task: float = 1.0  # ray: CPUs each task reserves
    key: str = field(default="runner", compare=False)  # the parameter naming it (for errors)

    @classmethod
    def from_params(cls, block: Mapping[str, Any], key: str) -> Runner:
        """``<key>.runner`` and its ``<key>.ray`` options (``max_retries``, ``cpus_per_task``)."""
        ray = block.get("ray") or {}
        return cls(
            kind=RUNNER.check(f"{key}.runner", block.get("runner", "local")),
            max_retries=at_least(0).check(f"{key}.ray.max_retries", ray.get("max_retries", 3)),
            cpus_per_task=POSITIVE.check(f"{key}.ray.cpus_per_task", ray.get("cpus_per_task", 1)),
            key=f"{key}.runner",
        )


LOCAL = Runner()


class DeviceError(ValueError):
    """A configured device that this machine does not have."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when present, else CPU; otherwise the named device.

    Asking for CUDA on a machine without it is a :class:`DeviceError`, not a late crash.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(
            f"device {device!r} is not a torch device: use auto, cpu or cuda[:i]"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} asked for, but CUDA is not available: use 'auto'")
    return resolved


@contextmanager
def torch_threads(count: int | str | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads; ``"auto"``: :func:`free_cores`; None: as is.

    On a CPU that other processes keep busy, fewer threads are much faster (OpenMP threads spin
    while they wait for each other: two threads on two busy cores ran ~25x slower than one).
    """
    THREAD_COUNT.check("num_threads", count)
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(free_cores() if count == "auto" else int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def free_cores() -> int:
    """Threads worth using: every core unless other work keeps the CPU busy (load >= cores - 0.5).

    The 1-minute load average stands for that work (it counts this process too, once it runs).
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, int(cores - busy + 1.5)))


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
            from croft_pipeline.distributed.tasks import ray_map

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
