"""The accuracy benchmark: leave-one-domain-out over every domain × every seed × every method.

Each fold runs the project's own pipelines on the published ingest outputs: the splits with that
domain held out (``ingest``'s ``build_splits`` node), then ``embed``, ``train`` and ``evaluate``
through Kedro's runner, in memory, without registering a model. The embedding cache and the
CLIP checkpoint are shared with the default run, so a fold computes only the features it lacks.
One MLflow parent run holds a nested run per fold (and, below it, the usual method and grid
point runs). The result: per method, the mean ± std over folds × seeds of every metric, and the
paired differences with their intervals over folds × seeds (``ood.comparisons``).

    python benchmarks/bench_accuracy.py            # -> benchmarks/results/accuracy.{json,md}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from croft_pipeline import tracking
from croft_pipeline.config import config_loader
from croft_pipeline.datasets import ProvenanceDataset
from croft_pipeline.ood.comparisons import ComparisonConfig, compare_methods
from croft_pipeline.ood.evaluation import EvaluationConfig, summarise
from croft_pipeline.pipeline_registry import register_pipelines
from croft_pipeline.pipelines.ingest.nodes import build_splits, validate_data
from croft_pipeline.provenance import ProvenanceRecorder, recorder_for, ui_address
from croft_pipeline.settings import CONFIG_LOADER_ARGS
from croft_pipeline.validation import DataValidationError

logger = logging.getLogger(__name__)
BASE_ENV = CONFIG_LOADER_ARGS["base_env"]  # env None: the base configuration (config_loader)

PUBLISHED = ("manifest", "clip_model_spec", "dataset_roots", "id_classes", "openset_kinds")
FOLD_PIPELINES = ("embed", "train", "evaluate")
SKIPPED_NODES = {"register_served_model"}  # a benchmark fold moves no registry alias
KEPT = (
    "evaluation_scores",
    "evaluation_results",
    "evaluation_domain_results",
    "train_summary",
    "wise_curves",
)


class KeptDataset(MemoryDataset):
    """A memory dataset the runner does not empty after its last reader (results are read
    from the catalog once the run is over)."""

    def _release(self) -> None:
        pass


@dataclass
class Fold:
    heldout: str
    outputs: dict[str, Any]
    seconds: float


def ensure_published(project: Path, env: str | None) -> None:
    """Run ``ingest`` and ``pretrain`` unless their outputs exist (a default run made them)."""
    catalog = config_loader(project, env)["catalog"]
    missing = [n for n in PUBLISHED if not (project / catalog[n]["filepath"]).is_file()]
    if missing:
        logger.info("benchmark: %s missing, running ingest and pretrain first", missing)
        bootstrap_project(project)
        with chdir(project), KedroSession.create(project_path=project, env=env) as session:
            session.run(pipeline_names=["ingest", "pretrain"])


def _fold_catalog(
    project: Path, env: str | None, params: dict, splits: pd.DataFrame, recorder: ProvenanceRecorder
):
    """The published inputs from disk, the fold's splits, every parameter in memory, and the
    benchmark's provenance."""
    entries = config_loader(project, env)["catalog"]
    config = {}
    for name in (*PUBLISHED, "project_dir"):
        entry = dict(entries[name])
        key = "filepath" if "filepath" in entry else "path"
        entry[key] = str(project / entry[key])
        config[name] = entry
    catalog = DataCatalog.from_config(config)
    catalog["splits"] = MemoryDataset(splits, copy_mode="assign")
    for key, value in _flat_params(params).items():
        catalog[key] = MemoryDataset(value, copy_mode="assign")
    for name in KEPT:
        catalog[name] = KeptDataset(copy_mode="assign")
    catalog["provenance"] = ProvenanceDataset(recorder)
    return catalog


def _flat_params(params: dict, prefix: str = "params:") -> dict[str, Any]:
    """``params:a`` and ``params:a.b`` entries, as Kedro exposes them to nodes."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        flat[f"{prefix}{key}"] = value
        if isinstance(value, dict):
            flat.update(_flat_params(value, f"{prefix}{key}."))
    return flat


def fold_pipeline():
    pipelines = register_pipelines()
    combined = sum((pipelines[name] for name in FOLD_PIPELINES), Pipeline([]))
    return Pipeline([node for node in combined.nodes if node.name not in SKIPPED_NODES])


def benchmark_recorder(project: Path, env: str | None) -> ProvenanceRecorder:
    """The benchmark's provenance (the active MLflow run, if any, is its run)."""
    config = config_loader(project, env)
    ui = ui_address(config["mlflow"].get("ui"))
    return recorder_for(
        project, env or BASE_ENV, "benchmark", config["catalog"], tracking.active_run_ref(ui)
    )


def run_fold(
    project: Path,
    env: str | None,
    params: dict,
    heldout: str,
    recorder: ProvenanceRecorder | None = None,
) -> Fold:
    """One held-out domain through embed -> train -> evaluate, outputs kept in memory."""
    started = time.perf_counter()
    fold_params = {
        **params,
        "ingest": {**params["ingest"], "dataset": {**params["ingest"]["dataset"], "heldout_domain": heldout}},
    }  # fmt: skip
    catalog_paths = config_loader(project, env)["catalog"]
    manifest = pd.read_parquet(project / catalog_paths["manifest"]["filepath"])
    id_classes = json.loads((project / catalog_paths["id_classes"]["filepath"]).read_text())
    splits = build_splits(manifest, fold_params["ingest"], params["seeds"])
    report = validate_data(manifest, splits, id_classes, fold_params["ingest"], str(project))
    if not report["success"]:  # the same data checks as the default run's splits
        raise DataValidationError(f"held-out {heldout}: {report['failure_message']}")
    recorder = recorder or benchmark_recorder(project, env)
    catalog = _fold_catalog(project, env, fold_params, splits, recorder)
    with chdir(project):
        SequentialRunner().run(fold_pipeline(), catalog)
    outputs = {name: catalog.load(name) for name in KEPT}
    return Fold(heldout, outputs, time.perf_counter() - started)


def domains_of(params: dict) -> list[str]:
    """Every domain a fold can hold out: EmojiShift's styles, or the configured domains."""
    ingest = params["ingest"]
    if ingest["dataset"].get("domains"):
        return list(ingest["dataset"]["domains"])
    return list(ingest["emojishift"]["styles"])


def run_benchmark(
    project: Path, env: str | None = None, folds: Sequence[str] | None = None
) -> dict[str, Any]:
    """Every fold, in one MLflow parent run; returns the tables the result files are built from."""
    project = Path(project).resolve()
    bootstrap_project(project)
    ensure_published(project, env)
    params = dict(config_loader(project, env)["parameters"])
    heldout_domains = list(folds or domains_of(params))
    tracking_uri = config_loader(project, env)["mlflow"]["server"]["mlflow_tracking_uri"]
    with chdir(project):
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment("croft-pipeline-benchmark")
        with mlflow.start_run(
            run_name="accuracy benchmark", tags={"benchmark": "accuracy"}
        ) as parent:
            mlflow.log_params(
                {"folds": ",".join(heldout_domains), "seeds": str(params["seeds"]), "env": str(env)}
            )
            recorder = benchmark_recorder(project, env)
            tracking.tag_active_run(recorder.current().tags())
            done = []
            for heldout in heldout_domains:
                with mlflow.start_run(
                    run_name=f"heldout={heldout}", nested=True, tags={"heldout": heldout}
                ):
                    fold = run_fold(project, env, params, heldout, recorder)
                    mlflow.log_metric("fold_seconds", fold.seconds)
                done.append(fold)
                logger.info("benchmark: fold %s done in %.0f s", heldout, fold.seconds)
            tracking.tag_run_tree(recorder.current().tags())
    return aggregate(done, params, parent.info.run_id)


def _stack(folds: Sequence[Fold], name: str) -> pd.DataFrame:
    return pd.concat(
        [fold.outputs[name].assign(fold=fold.heldout) for fold in folds], ignore_index=True
    )


def aggregate(folds: Sequence[Fold], params: dict, run_id: str) -> dict[str, Any]:
    """Mean ± std over folds × seeds, paired intervals over folds × seeds, selection records."""
    results = _stack(folds, "evaluation_results")
    # one unit per (fold, seed): summarise's mean and std run over folds x seeds
    units = results.assign(seed=results["fold"] + "/" + results["seed"].astype(str))
    summary = summarise(units)
    scores = _stack(folds, "evaluation_scores")
    evaluate = params["evaluate"]
    comparisons = compare_methods(
        scores,
        summary,
        EvaluationConfig.from_params(evaluate),
        ComparisonConfig.from_params(evaluate.get("comparisons")),
    )
    return {
        "summary": summary,
        "comparisons": comparisons,
        "domain_results": _stack(folds, "evaluation_domain_results"),
        "selection": {fold.heldout: fold.outputs["train_summary"] for fold in folds},
        "wise_curves": _stack(folds, "wise_curves"),
        "fold_seconds": {fold.heldout: round(fold.seconds, 1) for fold in folds},
        "mlflow_run_id": run_id,
    }
