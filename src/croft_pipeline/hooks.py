"""Project hooks: one log line per node with its wall time; parameters checked at the start."""

from __future__ import annotations

import logging
import time
from typing import Any

from kedro.framework.hooks import hook_impl

from croft_pipeline.config_checks import check_parameters

logger = logging.getLogger(__name__)


class NodeTimingHook:
    """Logs ``node <name> done in <s> s`` after every node."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        started = self._started.pop(node.name, None)
        if started is not None:
            logger.info("node %s done in %.2f s", node.name, time.perf_counter() - started)

    @hook_impl
    def on_node_error(self, node: Any) -> None:
        started = self._started.pop(node.name, None)
        if started is not None:
            logger.error("node %s failed after %.2f s", node.name, time.perf_counter() - started)


class ParameterCheckHook:
    """Checks every parameter block before the run starts (before other hooks and any node)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, catalog: Any) -> None:
        check_parameters(catalog.load("parameters"))
