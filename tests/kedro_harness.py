"""Run the project's real Kedro pipelines inside a throw-away copy of the project: in this
process, or as a real ``kedro run`` subprocess that a test can kill."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import chdir, suppress
from pathlib import Path
from typing import Any

import mlflow
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from croft_pipeline.common.files import sha256_file
from croft_pipeline.config.loader import config_loader, parameters
from croft_pipeline.tools.dvc_stages import entry_storage

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", ".telemetry")
EMBED_CACHE = "data/04_feature/cache"  # conf/base/catalog: the embed pipeline's chunk files
MLFLOW_STORE = ("mlflow.db", "mlruns")  # conf/base/mlflow.yml: the store in the project root
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


def chunk_digests(cache: Path) -> dict[str, str]:
    """Every embed cache chunk's SHA-256, by its path in the cache."""
    return {str(p.relative_to(cache)): sha256_file(p) for p in cache.rglob("chunk-*.safetensors")}


def copy_project(source: Path, target: Path) -> Path:
    """A copy of a project copy (conf and every data layer) with an MLflow store of its own, an
    empty one (:func:`copy_with_store` keeps the source's runs and registry)."""
    store = set(MLFLOW_STORE)
    return Path(
        shutil.copytree(
            source, target, ignore=lambda d, names: store & set(names) if Path(d) == source else ()
        )
    )


def copy_with_store(source: Path, target: Path) -> Path:
    """A copy of a project copy with its MLflow store, relocated as its user would after copying
    (``croft-pipeline relocate-store``): its runs write into the copy's ``mlruns/``."""
    from croft_pipeline.tracking.store import relocate

    copy = Path(shutil.copytree(source, target))
    relocate(copy / "mlflow.db")
    return copy


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


def output_paths(project: Path, pipeline: str, env: str = "test") -> list[Path]:
    """The files and folders of a pipeline's catalog outputs in the project copy (its in-memory
    datasets have none), as ``kedro run --env=<env>`` resolves them."""
    from croft_pipeline.pipeline_registry import register_pipelines

    catalog = config_loader(REPO_ROOT, env)["catalog"]
    stored = {name: _stored_path(entry) for name, entry in catalog.items()}
    outputs = register_pipelines()[pipeline].all_outputs()
    return sorted(project / path for name, path in stored.items() if name in outputs and path)


def _stored_path(entry: dict[str, Any]) -> str | None:
    """The file or folder a catalog entry stores; None for a MemoryDataset entry (a layer only)."""
    storage = entry_storage(entry)
    return storage.get("filepath", storage.get("path"))


def clear_outputs(project: Path, pipeline: str, env: str = "test") -> None:
    """Delete what a pipeline writes (the embed cache too), so that its next run computes it all."""
    paths = output_paths(project, pipeline, env)
    if pipeline == "embed":
        paths.append(project / parameters(REPO_ROOT, env)["embed"]["cache_dir"])
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def start_kedro(
    project: Path,
    args: list[str],
    log: Path,
    environ: Mapping[str, str] | None = None,
    path_first: Sequence[str] = (),
    module: str = "kedro",
) -> subprocess.Popen:
    """``kedro <args>`` (``python -m <module> <args>``) in the project copy as a real subprocess
    that imports this checkout's ``croft_pipeline`` (after the ``path_first`` folders), in a
    process group of its own (its workers too: :func:`kill_run` kills them all), with ``environ``
    (default: this process's); stdout and stderr go to ``log``."""
    environ = os.environ if environ is None else environ
    path = [*path_first, str(REPO_ROOT / "src"), environ.get("PYTHONPATH")]
    # COLUMNS: Kedro's rich log handler wraps at 80 columns; one record per line reads better
    variables = {
        **environ,
        "PYTHONPATH": os.pathsep.join(filter(None, path)),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "1000",
    }
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=project,
            env=variables,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_kedro_run(project: Path, pipeline: str, log: Path, env: str = "test") -> subprocess.Popen:
    """``kedro run --pipeline=<pipeline> --env=<env>`` in the project copy (:func:`start_kedro`:
    its DataLoader and fit workers are in its process group)."""
    pin_tracking_store(project, env)  # a copied project's pinned store may name its source's
    return start_kedro(project, ["run", f"--pipeline={pipeline}", f"--env={env}"], log)


def kill_run(process: subprocess.Popen) -> None:
    """SIGKILL a :func:`start_kedro_run` process and every process of its group."""
    with suppress(ProcessLookupError):  # the group is gone already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def finish_run(process: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    """Wait for a :func:`start_kedro_run` process; it must succeed (the log tail says why not)."""
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    kill_run(process)  # a run past its timeout (it fails below), and any worker left behind
    assert process.returncode == 0, log.read_text()[-3000:]


def load_params(env: str | None = "test") -> dict[str, Any]:
    """The parameters ``kedro run --env=<env>`` resolves (base merged with the environment)."""
    return parameters(REPO_ROOT, env)


def pipeline_catalog(catalog_files: str | tuple[str, ...], project: Path, inputs: dict[str, Any]):
    """The real entries of ``conf/base/<catalog_file>`` (one name or several; as Kedro resolves
    them) stored under ``project``, plus in-memory ``inputs`` (to run pipelines' nodes on
    hand-made data)."""
    from kedro.io import DataCatalog, MemoryDataset

    files = (catalog_files,) if isinstance(catalog_files, str) else catalog_files
    names = {
        name
        for file in files
        for name in yaml.safe_load((REPO_ROOT / "conf" / "base" / file).read_text())
    }
    resolved = config_loader(REPO_ROOT)["catalog"]
    config = {name: copy.deepcopy(resolved[name]) for name in names}
    for entry in config.values():
        if path := _stored_path(entry):
            storage = entry_storage(entry)
            storage["filepath" if "filepath" in storage else "path"] = str(project / path)
    catalog = DataCatalog.from_config(config)
    for name, value in inputs.items():
        catalog[name] = MemoryDataset(value, copy_mode="assign")
    return catalog
