"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

import croft_pipeline  # noqa: F401  (applies the offline defaults first)
from croft_pipeline.hooks import NodeTimingHook

HOOKS = (NodeTimingHook(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment overrides single keys of a parameter block, not the whole block
    "merge_strategy": {"parameters": "soft"},
}
