"""The project's configuration as Kedro resolves it: the loader arguments ``settings.py`` gives
Kedro, and the same loader for code that runs outside a Kedro session (the DVC stage
generator, tests, benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader


def store_root() -> str:
    """The folder prefix of the MLflow store (``${store_root:}mlflow.db`` in mlflow.yml): the
    DVC repository's root when DVC runs the stage (a queued experiment runs in a copy under
    ``.dvc/tmp`` and must track into the repository's store), else the project root ("")."""
    root = os.environ.get("DVC_ROOT")
    return f"{root.rstrip('/')}/" if root else ""


CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment overrides single keys of a parameter block, not the whole block
    "merge_strategy": {"parameters": "soft"},
    # kedro-mlflow adds this pattern inside a session; stated here, code outside one reads it too
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    "custom_resolvers": {"store_root": store_root},
}


def config_loader(project_root: str | Path, env: str | None = None) -> OmegaConfigLoader:
    """The loader ``kedro run --env=<env>`` uses (``env=None``: the base configuration only)."""
    args = {**CONFIG_LOADER_ARGS, "default_run_env": CONFIG_LOADER_ARGS["base_env"]}
    return OmegaConfigLoader(str(Path(project_root) / "conf"), env=env, **args)


def parameters(project_root: str | Path, env: str | None = None) -> dict[str, Any]:
    """Every parameter of the environment, merged over base key by key."""
    return dict(config_loader(project_root, env)["parameters"])
