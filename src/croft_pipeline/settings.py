"""Kedro project settings."""

import logging

import kedro_mlflow  # noqa: F401  (its import forces its logger to INFO; undone below)

import croft_pipeline  # noqa: F401  (applies the offline defaults first)
from croft_pipeline.config.loader import (
    CONFIG_LOADER_ARGS,  # noqa: F401  (Kedro reads it here)
    ProjectConfigLoader,
)
from croft_pipeline.hooks import (
    NodeTimingHook,
    ParameterCheckHook,
    PipelineRunTagsHook,
    ProvenanceHook,
    RunSummaryHook,
)
from croft_pipeline.hooks.run_lock import RunLockHook
from croft_pipeline.hooks.tracking_server import TrackingServerHook
from croft_pipeline.hooks.tracking_store import TrackingStoreHook

# kedro-mlflow logs "The run ... was closed because of an error" at INFO, once per open run, on
# every failure; at WARNING (the root level of conf/logging.yml) a failure ends with its error.
logging.getLogger("kedro_mlflow").setLevel(logging.NOTSET)

HOOKS = (
    NodeTimingHook(),
    ParameterCheckHook(),
    TrackingServerHook(),
    TrackingStoreHook(),
    RunLockHook(),
    ProvenanceHook(),
    PipelineRunTagsHook(),
    RunSummaryHook(),
)
# kedro-viz is here for `kedro viz run` (it reads code and catalog); its run hooks would write
# dataset statistics and run events under .viz/ on every `kedro run`.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

CONFIG_LOADER_CLASS = ProjectConfigLoader  # refuses an --env that has no folder under conf/
