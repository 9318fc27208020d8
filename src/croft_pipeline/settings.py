"""Kedro project settings."""

import logging
import os

import kedro_mlflow  # noqa: F401  (its import forces its logger to INFO; undone below)
from kedro.config import OmegaConfigLoader

import croft_pipeline  # noqa: F401  (applies the offline defaults first)
from croft_pipeline.hooks import NodeTimingHook, ParameterCheckHook, ProvenanceHook
from croft_pipeline.hooks.run_lock import RunLockHook

# kedro-mlflow logs "The run ... was closed because of an error" at INFO, once per open run, on
# every failure; at WARNING (the root level of conf/logging.yml) a failure ends with its error.
logging.getLogger("kedro_mlflow").setLevel(logging.NOTSET)


def store_root() -> str:
    """The folder prefix of the MLflow store (``${store_root:}mlflow.db`` in mlflow.yml): the
    DVC repository's root when DVC runs the stage (a queued experiment runs in a copy under
    ``.dvc/tmp`` and must track into the repository's store), else the project root ("")."""
    root = os.environ.get("DVC_ROOT")
    return f"{root.rstrip('/')}/" if root else ""


HOOKS = (NodeTimingHook(), ParameterCheckHook(), RunLockHook(), ProvenanceHook())
# kedro-viz is here for `kedro viz run` (it reads code and catalog); its run hooks would write
# dataset statistics and run events under .viz/ on every `kedro run`.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment overrides single keys of a parameter block, not the whole block
    "merge_strategy": {"parameters": "soft"},
    # kedro-mlflow adds this pattern inside a session; stated here, code outside one reads it too
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    "custom_resolvers": {"store_root": store_root},
}
