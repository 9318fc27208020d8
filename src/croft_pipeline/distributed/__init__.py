"""Ray, the optional engine beyond one machine: Ray Data for ``embed``, Ray tasks for sweeps.

Ray is imported only when a stage's ``runner`` is ``ray`` (``pip install -e ".[ray]"``); the
default install runs without it. :func:`connect` joins the cluster ``RAY_ADDRESS`` names
(``ray://head:10001``, or ``auto`` for the one this machine belongs to), or starts a local one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

INSTALL_HINT = 'pip install -e ".[ray]"'


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
