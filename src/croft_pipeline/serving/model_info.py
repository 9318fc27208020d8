"""What a served model is: its bundle (CLIP, checkpoint digest, method, classes, threshold, score)
and, for a registry URI, its model version (aliases, tags, description) and MLflow run (metrics).

Reads the bundle's ``config.json`` and the ``MLmodel`` file only: the weights stay where they are.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
from mlflow.store.artifact.utils.models import get_model_name_and_version

from croft_pipeline.serving.bundle import read_config

BUNDLE_FACTS = (
    "model_name",
    "pretrained",
    "clip_checkpoint_sha256",
    "precision",
    "method",
    "method_config",
    "seed",
    "class_names",
    "threshold",
    "score",
    "score_params",
    "knn_params",
    "device",
)
MODEL_FACTS = ("mlflow_version", "utc_time_created", "model_uuid")


def model_info(model_uri: str) -> dict[str, Any]:
    """``{"uri", "model", "bundle", "registry"?, "run"?}`` of a ``models:/`` URI or a local
    model folder; ``run.metrics`` are the run's metrics of the registered method."""
    info: dict[str, Any] = {"uri": model_uri}
    with tempfile.TemporaryDirectory() as tmp:
        if model_uri.startswith("models:/"):
            repository = ModelsArtifactRepository(model_uri)
            mlmodel = Path(repository.download_artifacts("MLmodel", tmp))
        else:
            mlmodel = Path(model_uri) / "MLmodel"
            if not mlmodel.is_file():
                raise FileNotFoundError(
                    f"--model {model_uri}: no MLmodel file (not a model folder)"
                )
        meta = yaml.safe_load(mlmodel.read_text())
        config_path = meta["flavors"]["python_function"]["artifacts"]["config"]["path"]
        if model_uri.startswith("models:/"):
            config_file = repository.download_artifacts(config_path, tmp)
        else:
            config_file = str(mlmodel.parent / config_path)
        config = read_config({"config": config_file})
    info["model"] = {key: meta.get(key) for key in MODEL_FACTS}
    info["bundle"] = {key: config.get(key) for key in BUNDLE_FACTS}
    if model_uri.startswith("models:/"):
        info.update(registry_facts(model_uri, config["method"]))
    return info


def registry_facts(model_uri: str, bundle_method: str) -> dict[str, Any]:
    """The model version behind ``model_uri`` and the metrics of the run that logged it (of its
    parent, the pipeline's run, when a pipeline registered it from a nested ``register`` run)."""
    client = MlflowClient()
    name, version = get_model_name_and_version(client, model_uri)
    found = client.get_model_version(name, version)
    method = found.tags.get("method", bundle_method)
    facts: dict[str, Any] = {
        "registry": {
            "name": name,
            "version": str(found.version),
            "aliases": list(found.aliases),
            "description": found.description or "",
            "tags": dict(found.tags),
            "run_id": found.run_id,
            "registry_uri": mlflow.get_registry_uri(),
        }
    }
    if found.run_id:
        run = client.get_run(found.run_id)
        if parent := run.data.tags.get("mlflow.parentRunId"):  # a pipeline's `register` run
            run = client.get_run(parent)
        prefix = f"{method}/"
        facts["run"] = {
            "name": run.info.run_name,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "metrics": {
                key[len(prefix) :]: value
                for key, value in sorted(run.data.metrics.items())
                if key.startswith(prefix)
            },
        }
    return facts


def format_info(info: dict[str, Any]) -> str:
    """``info`` as indented ``key: value`` lines, one section per part."""
    lines = [f"model: {info['uri']}"]
    for section in ("bundle", "registry", "run", "model"):
        if section in info:
            lines.append(f"{section}:")
            lines += _lines(info[section], "  ")
    return "\n".join(lines)


def _lines(facts: dict[str, Any], indent: str) -> list[str]:
    lines = []
    for key, value in facts.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines += _lines(value, indent + "  ")
        else:
            shown = json.dumps(value) if isinstance(value, list | dict) else value
            shown = "-" if shown in ("", None) else shown
            lines.append(f"{indent}{key}: {shown}")
    return lines
