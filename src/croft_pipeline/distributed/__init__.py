"""Ray, the optional engine beyond one machine: Ray Data for ``embed``, Ray tasks for sweeps.

Ray is imported only when a stage's ``runner`` is ``ray`` (``pip install -e ".[ray]"``); the
default install runs without it. :func:`connect` joins the cluster ``RAY_ADDRESS`` names
(``ray://head:10001``, or ``auto`` for the one this machine belongs to), or starts a local one.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import socket
from collections import Counter
from collections.abc import Iterable
from types import ModuleType

INSTALL_HINT = 'pip install -e ".[ray]"'
SAME_PATHS = (
    "docs/cluster.md: the dataset roots must be at the same path on every node "
    "(a shared filesystem such as NFS, or the same copy on each node)"
)

logger = logging.getLogger(__name__)


class RayMissingError(ImportError):
    """``runner: ray`` asked for, but Ray is not installed."""


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def require_ray(key: str) -> ModuleType:
    """The ``ray`` module, or a :class:`RayMissingError` naming the parameter ``key``."""
    if not ray_installed():
        raise RayMissingError(f"{key}: ray needs Ray, which is not installed: {INSTALL_HINT}")
    return importlib.import_module("ray")


def connect(key: str) -> ModuleType:
    """``ray``, connected: to the running session, ``RAY_ADDRESS``'s cluster, or a new local one
    (no dashboard; usage stats are off by the package's offline defaults)."""
    ray = require_ray(key)
    if not ray.is_initialized():  # a cluster (RAY_ADDRESS) takes no local-start options
        ray.init(**({} if os.environ.get("RAY_ADDRESS") else {"include_dashboard": False}))
    return ray


class NotOnNodeError(FileNotFoundError):
    """A file the driver named that a Ray node cannot read (its folder not mounted there)."""


class TaskLostError(RuntimeError):
    """A Ray task lost with its worker process or node, its retries used up."""


def cause_of(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The exception of type ``kind`` (exactly, not Ray's wrapper of it) in ``error``'s chain: a
    Ray task's error carries its task's exception as ``cause``, Ray Data's as ``__cause__``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if type(error) is kind:
            return error
        seen.add(id(error))
        error = getattr(error, "cause", None) or error.__cause__
    return None


def node_id() -> str:
    """The id of the Ray node this worker runs on (call it inside a task or an actor)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def readable_here(path: str) -> str:
    """``path``, or a :class:`NotOnNodeError` naming it, this node and the rule of docs/cluster.md."""
    if not os.access(path, os.R_OK):
        raise NotOnNodeError(
            f"{path} is not readable on Ray node {node_id()} (host {socket.gethostname()}): "
            f"{SAME_PATHS}"
        )
    return path


def log_placement(key: str, unit: str, nodes: Iterable[str]) -> dict[str, int]:
    """Log how many ``unit`` (tasks, batches) ran on each Ray node; the counts are returned
    and ride on the log record as ``nodes``."""
    counts = dict(Counter(nodes))
    where = ", ".join(f"{node[:12]}: {count}" for node, count in sorted(counts.items()))
    total = sum(counts.values())
    logger.info(
        "%s: %d %s on %d Ray node(s) (%s)",
        key,
        total,
        unit,
        len(counts),
        where,
        extra={"nodes": counts},
    )
    return counts
