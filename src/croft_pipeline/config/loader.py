"""The project's configuration as Kedro resolves it: the loader class and arguments
``settings.py`` gives Kedro, and the same loader for code that runs outside a Kedro session
(the DVC stage generator, tests, benchmarks). The loader refuses an environment that has no
folder before anything reads it (:class:`ProjectConfigLoader`)."""

from __future__ import annotations

import difflib
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

import click
import yaml
from kedro.config import MissingConfigException, OmegaConfigLoader

CONFIG_SUFFIXES = (".yml", ".yaml", ".json")  # the files OmegaConfigLoader reads


class ConfigError(click.ClickException):
    """A configuration a run cannot start with. Kedro's CLI prints it as click prints its own
    errors, ``Error: <message>`` and exit status 1, not as a traceback."""


def store_root() -> str:
    """The folder prefix of the MLflow store (``${store_root:}mlflow.db`` in mlflow.yml): the
    DVC repository's root when DVC runs the stage (a queued experiment runs in a copy under
    ``.dvc/tmp`` and must track into the repository's store), else the project root ("")."""
    root = os.environ.get("DVC_ROOT")
    return f"{root.rstrip('/')}/" if root else ""


TEAM_SERVER = "http://127.0.0.1:5055"  # croft_pipeline.tools.team's default address


def team_server() -> str:
    """The team's MLflow server (``${team_server:}`` in conf/team/mlflow.yml):
    ``$CROFT_TEAM_SERVER``, else :data:`TEAM_SERVER` (a server on this machine)."""
    return os.environ.get("CROFT_TEAM_SERVER") or TEAM_SERVER


CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment overrides single keys of a parameter block (or a catalog entry: e.g. only
    # its filepath), not the whole block
    "merge_strategy": {"parameters": "soft", "catalog": "soft"},
    # kedro-mlflow adds this pattern inside a session; stated here, code outside one reads it too
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    "custom_resolvers": {"store_root": store_root, "team_server": team_server},
}


def environments(conf_dir: str | Path) -> list[str]:
    """The environments of a configuration folder: its sub-folders, sorted."""
    return sorted(p.name for p in Path(conf_dir).iterdir() if p.is_dir() and p.name[0] != ".")


def missing_environment(conf_source: str | Path, env: str) -> str | None:
    """Why ``env`` cannot be loaded from ``conf_source`` (it has no folder there), in one line
    naming the environments that exist; ``None`` when it can (or ``conf_source`` is not a local
    folder: an archive or a remote store, which Kedro reads itself)."""
    conf = Path(conf_source)
    if not conf.is_dir() or (conf / env).is_dir():
        return None
    known = environments(conf)
    lowered = {name.lower(): name for name in known}
    close = [lowered[n] for n in difflib.get_close_matches(env.lower(), list(lowered), n=1)]
    listed = f"the environments are {', '.join(known)}"
    hint = f"did you mean {close[0]}? {listed[0].upper()}{listed[1:]}" if close else listed
    return f"environment {env!r} does not exist (no folder {conf.name}/{env}); {hint}"


class ProjectConfigLoader(OmegaConfigLoader):
    """Kedro's ``OmegaConfigLoader`` that first refuses a run environment (``--env``,
    ``KEDRO_ENV``, else ``default_run_env``) or base environment without a folder: a
    :class:`ConfigError` before any hook or plugin reads the configuration.

    Credentials come from ``conf/local`` (never committed) whatever the environment; an entry of
    the base or run environment's own credentials files overrides them."""

    def __init__(self, conf_source: str | Path, env: str | None = None, *args, **kwargs):
        for name in dict.fromkeys((kwargs.get("base_env"), env or kwargs.get("default_run_env"))):
            if name and (problem := missing_environment(conf_source, name)):
                raise ConfigError(problem)
        super().__init__(conf_source, env, *args, **kwargs)

    def __getitem__(self, key: str) -> dict[str, Any]:
        local = CONFIG_LOADER_ARGS["default_run_env"]
        folder = Path(str(self.conf_source)) / local
        if (
            key != "credentials"
            or (self.env or self.default_run_env) == local
            or not folder.is_dir()
        ):
            return super().__getitem__(key)
        local_only = OmegaConfigLoader(
            self.conf_source,
            env=local,
            base_env=local,
            default_run_env=local,
            config_patterns={"credentials": self.config_patterns["credentials"]},
        )
        self._register_globals_resolver()  # creating local_only took the `globals` resolver
        found = []
        for loader in (local_only, super()):
            with suppress(MissingConfigException):
                found.append(loader.__getitem__(key))
        if not found:
            raise MissingConfigException(
                f"no credentials files in conf/{local} or the environments"
            )
        return {name: entry for config in found for name, entry in config.items()}


def parameter_files(loader: OmegaConfigLoader) -> dict[str, Any]:
    """What each source of ``loader``'s parameters sets, as written: every parameters file of
    the base and run environments by its path (``conf/test/parameters_train.yml``), then the
    run's runtime parameters as ``--params``; files only when the configuration is a folder."""
    conf = Path(loader.conf_source)
    files: dict[str, Any] = {}
    names = dict.fromkeys((loader.base_env, loader.env or loader.default_run_env))
    for env in [name for name in names if name and (conf / name).is_dir()]:
        paths = {
            p
            for pattern in loader.config_patterns["parameters"]
            for p in (conf / env).glob(pattern)
        }
        for path in sorted(paths):
            hidden = any(part.startswith(".") for part in path.relative_to(conf).parts)
            if path.is_file() and path.suffix in CONFIG_SUFFIXES and not hidden:
                label = f"{conf.name}/{path.relative_to(conf).as_posix()}"
                files[label] = yaml.safe_load(path.read_text()) or {}
    if loader.runtime_params:
        files["--params"] = loader.runtime_params
    return files


def config_loader(project_root: str | Path, env: str | None = None) -> OmegaConfigLoader:
    """The loader ``kedro run --env=<env>`` uses (``env=None``: the base configuration only)."""
    args = {**CONFIG_LOADER_ARGS, "default_run_env": CONFIG_LOADER_ARGS["base_env"]}
    return ProjectConfigLoader(str(Path(project_root) / "conf"), env=env, **args)


def parameters(project_root: str | Path, env: str | None = None) -> dict[str, Any]:
    """Every parameter of the environment, merged over base key by key."""
    return dict(config_loader(project_root, env)["parameters"])
