"""Methods on cached CLIP features: CRoFT (faithful and clean) and the baselines.

One contract (:class:`Method`: fit on features, return logits), one registry (:data:`METHODS`),
and :func:`build_method` to rebuild a method for serving from its name, configuration, text
features and logit scale (then :meth:`Method.load_state_dict`).
"""

from croft_pipeline.methods import baselines, croft  # noqa: F401  (register the methods)
from croft_pipeline.methods.base import (
    METHODS,
    EvalSet,
    FitReport,
    LogFn,
    Method,
    NonFiniteLossError,
    TrainSet,
    build_method,
    partition_id,
    restore_method,
)
from croft_pipeline.methods.selection import Selected, fit_selected, grid_points

__all__ = [
    "METHODS",
    "EvalSet",
    "FitReport",
    "LogFn",
    "Method",
    "NonFiniteLossError",
    "Selected",
    "TrainSet",
    "build_method",
    "fit_selected",
    "grid_points",
    "partition_id",
    "restore_method",
]
