"""Offline-and-quiet defaults, applied on import of the package (a user's own settings win)."""

import os

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
}


def apply_offline_defaults() -> None:
    """Set each default unless the user already set that variable."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
