"""Where torch computes: the device and the CPU thread count (one rule for every stage)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from croft_pipeline.config.rules import THREAD_COUNT


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
