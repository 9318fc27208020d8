"""Run the project's real Kedro pipelines inside a throw-away copy of the project."""

from __future__ import annotations

import shutil
from contextlib import chdir
from pathlib import Path
from typing import Any

import mlflow
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from croft_pipeline.config import config_loader, parameters

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", ".telemetry")
DATA_LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def make_project_copy(target: Path) -> Path:
    """Copy conf/ and the project files into ``target`` with empty data layers."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO_ROOT / "conf", target / "conf", dirs_exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy2(REPO_ROOT / name, target / name)
    (target / "src").mkdir(exist_ok=True)  # bootstrap_project wants the source dir to exist
    for layer in DATA_LAYERS:
        (target / "data" / layer).mkdir(parents=True, exist_ok=True)
    return target


def run_pipeline(
    project: Path,
    pipeline: str = "__default__",
    env: str = "test",
    extra_params: dict[str, Any] | None = None,
    **run_options: Any,
) -> dict[str, Any]:
    """Run one registered pipeline of the project copy, as `kedro run --pipeline` would
    (``run_options``: further ``KedroSession.run`` arguments, e.g. ``from_nodes``)."""
    pin_tracking_store(project, env)
    bootstrap_project(project)
    try:
        with (
            chdir(project),  # as `kedro run` in the project root
            KedroSession.create(
                project_path=project, env=env, runtime_params=extra_params
            ) as session,
        ):
            return session.run(pipeline_names=[pipeline], **run_options)
    finally:
        while mlflow.active_run() is not None:  # kedro-mlflow leaves its run open in-process
            mlflow.end_run()


def pin_tracking_store(project: Path, env: str) -> None:
    """Point the copy's MLflow store at its own ``mlflow.db`` by absolute path.

    MLflow caches one store per URI string, so the relative ``sqlite:///mlflow.db`` of two
    copies run in one process would both reach the database of the first one run.
    """
    uri = f"sqlite:///{project.resolve() / 'mlflow.db'}"
    server = yaml.safe_load((project / "conf" / "base" / "mlflow.yml").read_text())["server"]
    pinned = {"server": {**server, "mlflow_tracking_uri": uri, "mlflow_registry_uri": uri}}
    (project / "conf" / env).mkdir(parents=True, exist_ok=True)
    (project / "conf" / env / "mlflow.yml").write_text(yaml.safe_dump(pinned))


def load_params(env: str | None = "test") -> dict[str, Any]:
    """The parameters ``kedro run --env=<env>`` resolves (base merged with the environment)."""
    return parameters(REPO_ROOT, env)


def pipeline_catalog(catalog_file: str, project: Path, inputs: dict[str, Any]):
    """The real entries of ``conf/base/<catalog_file>`` (as Kedro resolves them) stored under
    ``project``, plus in-memory ``inputs`` (to run one pipeline's nodes on hand-made data)."""
    from kedro.io import DataCatalog, MemoryDataset

    names = yaml.safe_load((REPO_ROOT / "conf" / "base" / catalog_file).read_text())
    resolved = config_loader(REPO_ROOT)["catalog"]
    config = {name: dict(resolved[name]) for name in names}
    for entry in config.values():
        key = "filepath" if "filepath" in entry else "path"
        entry[key] = str(project / entry[key])
    catalog = DataCatalog.from_config(config)
    for name, value in inputs.items():
        catalog[name] = MemoryDataset(value, copy_mode="assign")
    return catalog
