"""The project's configuration as Kedro resolves it, for code that runs outside a Kedro session
(the DVC stage generator, tests, benchmarks): same loader, same merge rules as ``settings.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

from croft_pipeline.settings import CONFIG_LOADER_ARGS


def config_loader(project_root: str | Path, env: str | None = None) -> OmegaConfigLoader:
    """The loader ``kedro run --env=<env>`` uses (``env=None``: the base configuration only)."""
    args = {**CONFIG_LOADER_ARGS, "default_run_env": CONFIG_LOADER_ARGS["base_env"]}
    return OmegaConfigLoader(str(Path(project_root) / "conf"), env=env, **args)


def parameters(project_root: str | Path, env: str | None = None) -> dict[str, Any]:
    """Every parameter of the environment, merged over base key by key."""
    return dict(config_loader(project_root, env)["parameters"])
