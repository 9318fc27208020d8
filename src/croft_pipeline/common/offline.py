"""Offline-and-quiet defaults, applied on import of the package (a user's own settings win)."""

import logging
import os
import re

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # open_clip hub tags fail at once instead of after ~46 s of retries
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "KEDRO_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per artifact fetched at registration
}


def apply_offline_defaults() -> None:
    """Set each default unless the user already set that variable."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


# Notices the field's libraries log on every ``kedro`` command about their own code or about a
# form this project uses on purpose, dropped by logger. (MLflow shows its warnings under a fresh
# ``simplefilter("once")``, past any warnings filter: they are dropped where Kedro logs them.)
LIBRARY_NOTICES = {
    "py.warnings": (
        # kedro-mlflow's KedroPipelineModel has an untyped ``predict``: MLflow asks for type
        # hints when the class is defined
        r"Add type hints to the `predict` method",
        # ``kedro run --pipeline=train`` is how this project's users call a pipeline (Kedro 1.x
        # prefers --pipelines, which the README's other commands and the DVC stages use)
        r"Option '--pipeline' is deprecated",
    ),
    # ProvenanceHook puts the run's own dataset in place of the catalog's placeholder (declared
    # in catalog.yml for Kedro-Viz)
    "kedro.io.data_catalog": (r"^Replacing dataset 'provenance'$",),
}


class LibraryNotices(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]):
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(re.search(pattern, text) for pattern in self.patterns)


def quiet_library_warnings() -> None:
    """Drop :data:`LIBRARY_NOTICES` from their loggers (once per process)."""
    for name, patterns in LIBRARY_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, LibraryNotices) for f in logger.filters):
            logger.addFilter(LibraryNotices(patterns))
