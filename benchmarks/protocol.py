"""The accuracy benchmark: leave-one-domain-out over every domain × every seed × every method,
on one or more backbones (pretrainings of the project's CLIP with different seeds).

Each fold runs the project's own pipelines on the published ingest outputs: the splits with that
domain held out (``ingest``'s ``build_splits`` node), then ``embed``, ``train`` and ``evaluate``
through Kedro's runner, in memory, without registering a model. The backbone of the configured
``pretrain.seed`` is the default run's CLIP (its checkpoint and ``clip_model_spec``); every other
seed's checkpoint is pretrained (or reused, by its stamp) next to the default one by the pretrain
nodes, its spec kept in memory: the benchmark writes none of the default run's outputs. The
embedding cache is keyed by the model, so a fold computes only the features it lacks. One MLflow
parent run holds a nested run per backbone pretrained and per (backbone, fold) (and, below it,
the usual method and grid point runs). The result: per method, the mean ± std over backbones ×
folds × seeds of every metric; the paired differences with their intervals over those units,
resampled per backbone (``ood.comparisons``); and the same comparisons on each backbone alone.

    python benchmarks/bench_accuracy.py            # -> benchmarks/results/accuracy.{json,md}
"""

from __future__ import annotations

import dataclasses
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
from croft_pipeline.config.loader import CONFIG_LOADER_ARGS, config_loader
from croft_pipeline.datasets import ProvenanceDataset
from croft_pipeline.ood.comparisons import ComparisonConfig, compare_methods, compare_scores
from croft_pipeline.ood.evaluation import EvaluationConfig, summarise
from croft_pipeline.pipeline_registry import pipelines_from, register_pipelines
from croft_pipeline.pipelines.ingest.nodes import build_splits, validate_data
from croft_pipeline.pipelines.pretrain.nodes import describe_clip_model, pretrain_clip
from croft_pipeline.pretraining.default_model import is_project_checkpoint, pretrain_config
from croft_pipeline.tracking.provenance import (
    Provenance,
    ProvenanceRecorder,
    recorder_for,
    ui_address,
)
from croft_pipeline.validation import DataValidationError

logger = logging.getLogger(__name__)
BASE_ENV = CONFIG_LOADER_ARGS["base_env"]  # env None: the base configuration (config_loader)

PUBLISHED = ("manifest", "clip_model_spec", "dataset_roots", "id_classes", "openset_kinds")
BACKBONE_INPUTS = ("pretrain_pairs", "splits")  # what pretraining another backbone reads
PRETRAIN_REPORT = "clip_pretrain_report"  # the default checkpoint's recipe (read, never written)
FOLD_PIPELINES = pipelines_from("embed")
SCORE_PAIRS = (("neglabel", "energy"), ("neglabel", "mcm"))  # score comparisons (paired AUROC)
SKIPPED_NODES = {"register_model"}  # a benchmark fold moves no registry alias
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
    backbone: int = 0  # the pretraining seed of its CLIP


DEFAULT_RUN = "default run"  # a backbone that is the default run's CLIP


@dataclass(frozen=True)
class Backbone:
    """One pretraining of the CLIP: its seed, its checkpoint (``clip.pretrained``, relative to
    the project), its ``clip_model_spec``, and where it came from (``default run``: the default
    run's checkpoint and spec, as published; ``trained`` or ``reused``: by the benchmark, at its
    own path)."""

    seed: int
    checkpoint: str
    spec: dict[str, Any]
    source: str
    seconds: float = 0.0

    @property
    def default(self) -> bool:
        return self.source == DEFAULT_RUN

    def params(self, params: dict) -> dict:
        """The parameters with this backbone's CLIP (the default run's: unchanged)."""
        return params if self.default else backbone_params(params, self.seed, self.checkpoint)

    def provenance(self, recorder: ProvenanceRecorder) -> ProvenanceRecorder | BackboneRecorder:
        """The benchmark's provenance, naming this backbone's checkpoint."""
        return recorder if self.default else BackboneRecorder(recorder, self.sha256)

    @property
    def sha256(self) -> str:
        return str(self.spec.get("checkpoint_sha256"))

    def summary(self) -> dict[str, Any]:
        """What the result files say about it (its zero-shot accuracy comes from its spec)."""
        return {
            "seed": self.seed,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.spec.get("checkpoint_sha256"),
            "source": self.source,
            "pretrain_seconds": round(self.seconds, 1),
            "zero_shot_accuracy": self.spec.get("zero_shot_accuracy"),
            "chance_accuracy": self.spec.get("chance_accuracy"),
        }


class BackboneRecorder:
    """A :class:`ProvenanceRecorder` whose CLIP checkpoint is a benchmark backbone's (the default
    run's spec file names the default one); what ``ProvenanceDataset`` reads."""

    def __init__(self, recorder: ProvenanceRecorder, checkpoint_sha256: str) -> None:
        self.recorder, self.checkpoint_sha256 = recorder, checkpoint_sha256
        self.env, self.pipeline = recorder.env, recorder.pipeline

    def current(self) -> Provenance:
        return dataclasses.replace(
            self.recorder.current(), clip_checkpoint_sha256=self.checkpoint_sha256
        )


def backbone_checkpoint(params: dict, seed: int) -> str:
    """Where the benchmark pretrains seed ``seed``: next to ``pretrain.checkpoint``, with
    ``-seed<k>`` in its name."""
    default = Path(params["pretrain"]["checkpoint"])
    return default.with_name(f"{default.stem}-seed{seed}{default.suffix}").as_posix()


def backbone_params(params: dict, seed: int, checkpoint: str) -> dict:
    """``params`` with ``pretrain.seed``, ``pretrain.checkpoint`` and ``clip.pretrained`` changed."""
    return {
        **params,
        "clip": {**params["clip"], "pretrained": checkpoint},
        "pretrain": {**params["pretrain"], "seed": seed, "checkpoint": checkpoint},
    }


def ensure_published(project: Path, env: str | None) -> None:
    """Run ``ingest`` and ``pretrain`` unless their outputs exist (a default run made them)."""
    catalog = config_loader(project, env)["catalog"]
    needed = (*PUBLISHED, *BACKBONE_INPUTS)
    missing = [n for n in needed if not (project / catalog[n]["filepath"]).is_file()]
    if missing:
        logger.info("benchmark: %s missing, running ingest and pretrain first", missing)
        bootstrap_project(project)
        with chdir(project), KedroSession.create(project_path=project, env=env) as session:
            session.run(pipeline_names=["ingest", "pretrain"])


def _published_catalog(project: Path, env: str | None, names: Sequence[str]) -> DataCatalog:
    """The catalog entries ``names`` (and ``project_dir``) of the default run, by absolute path."""
    entries = config_loader(project, env)["catalog"]
    config = {}
    for name in (*names, "project_dir"):
        entry = dict(entries[name])
        key = "filepath" if "filepath" in entry else "path"
        entry[key] = str(project / entry[key])
        config[name] = entry
    return DataCatalog.from_config(config)


def _fold_catalog(
    project: Path,
    env: str | None,
    params: dict,
    splits: pd.DataFrame,
    recorder: ProvenanceRecorder,
    spec: dict[str, Any] | None = None,
):
    """The published inputs from disk (with ``spec``, the backbone's, as ``clip_model_spec``),
    the fold's splits, every parameter in memory, and the benchmark's provenance."""
    catalog = _published_catalog(project, env, PUBLISHED)
    if spec is not None:
        catalog["clip_model_spec"] = MemoryDataset(spec, copy_mode="deepcopy")
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
    backbone: Backbone | None = None,
) -> Fold:
    """One held-out domain through embed -> train -> evaluate, outputs kept in memory, on
    ``backbone`` (default: the default run's CLIP)."""
    started = time.perf_counter()
    recorder = recorder or benchmark_recorder(project, env)
    if backbone is not None:
        params, recorder = backbone.params(params), backbone.provenance(recorder)
    fold_params = {
        **params,
        "ingest": {
            **params["ingest"],
            "dataset": {**params["ingest"]["dataset"], "heldout_domain": heldout},
        },
    }
    catalog_paths = config_loader(project, env)["catalog"]
    manifest = pd.read_parquet(project / catalog_paths["manifest"]["filepath"])
    id_classes = json.loads((project / catalog_paths["id_classes"]["filepath"]).read_text())
    splits = build_splits(manifest, fold_params["ingest"], params["seeds"], str(project))
    report = validate_data(manifest, splits, id_classes, fold_params["ingest"], str(project))
    if not report["success"]:  # the same data checks as the default run's splits
        raise DataValidationError(f"held-out {heldout}: {report['failure_message']}")
    spec = None if backbone is None or backbone.default else backbone.spec
    catalog = _fold_catalog(project, env, fold_params, splits, recorder, spec)
    with chdir(project):
        SequentialRunner().run(fold_pipeline(), catalog)
    outputs = {name: catalog.load(name) for name in KEPT}
    seed = backbone.seed if backbone is not None else int(params["pretrain"]["seed"])
    return Fold(heldout, outputs, time.perf_counter() - started, seed)


def domains_of(params: dict) -> list[str]:
    """Every domain a fold can hold out: EmojiShift's styles, or the configured domains."""
    ingest = params["ingest"]
    if ingest["dataset"].get("domains"):
        return list(ingest["dataset"]["domains"])
    return list(ingest["emojishift"]["styles"])


def prepare_backbones(
    project: Path,
    env: str | None,
    params: dict,
    seeds: Sequence[int],
    recorder: ProvenanceRecorder,
) -> list[Backbone]:
    """Each pretraining seed's backbone: the default run's CLIP for the configured
    ``pretrain.seed`` (while its recipe is the configured one), else the pretrain nodes' checkpoint
    at :func:`backbone_checkpoint` (trained, or reused by its stamp) and its spec, in memory."""
    configured = int(params["pretrain"]["seed"])
    project_clip = is_project_checkpoint(
        params["clip"].get("pretrained"), params["pretrain"]["checkpoint"], project
    )
    backbones = []
    for seed in seeds:
        if seed == configured and (not project_clip or _default_is_current(project, env, params)):
            spec = _published_catalog(project, env, ["clip_model_spec"]).load("clip_model_spec")
            backbones.append(Backbone(seed, str(params["clip"]["pretrained"]), spec, DEFAULT_RUN))
        elif not project_clip:
            raise ValueError(
                f"backbone {seed}: only the project's own CLIP can be pretrained with other seeds, "
                f"and clip.pretrained is {params['clip'].get('pretrained')!r} (not "
                f"pretrain.checkpoint): run the benchmark with --backbones {configured}"
            )
        else:
            backbones.append(_pretrained_backbone(project, env, params, seed, recorder))
    return backbones


def _default_is_current(project: Path, env: str | None, params: dict) -> bool:
    """Whether the default checkpoint was pretrained with the configured model and recipe (as
    ``clip_pretrain.json`` records; the pairs are the published ingest's either way). When it was
    not, the configured seed is pretrained at its own path too, so that every backbone has the
    same recipe, and the default checkpoint stays as it is."""
    path = project / config_loader(project, env)["catalog"][PRETRAIN_REPORT]["filepath"]
    report = json.loads(path.read_text()) if path.is_file() else {}
    if "config" not in report:
        return True  # nothing recorded to compare with: the default run's, as published
    configured = json.loads(json.dumps(dataclasses.asdict(pretrain_config(params["pretrain"]))))
    model_name = params["clip"]["model_name"]
    current = report["config"] == configured and report.get("model_name") == model_name
    if not current:
        logger.warning(
            "benchmark: %s records another recipe than the configured one; backbone %s is "
            "pretrained at %s (the default checkpoint is left as it is)",
            path,
            params["pretrain"]["seed"],
            backbone_checkpoint(params, int(params["pretrain"]["seed"])),
        )
    return current


def _pretrained_backbone(
    project: Path, env: str | None, params: dict, seed: int, recorder: ProvenanceRecorder
) -> Backbone:
    """Pretrain (or reuse) seed ``seed``'s checkpoint and describe it, in a nested MLflow run."""
    checkpoint = backbone_checkpoint(params, seed)
    changed = backbone_params(params, seed, checkpoint)
    clip, pretrain = changed["clip"], changed["pretrain"]
    catalog = _published_catalog(project, env, ("dataset_roots", "id_classes", *BACKBONE_INPUTS))
    roots, project_dir = catalog.load("dataset_roots"), str(project)
    started = time.perf_counter()
    tags = {"backbone": str(seed), "stage": "pretrain"}
    with mlflow.start_run(run_name=f"pretrain backbone={seed}", nested=True, tags=tags):
        mlflow.log_params({"pretrain_seed": seed, "checkpoint": checkpoint})
        report = pretrain_clip(
            catalog.load("pretrain_pairs"), roots, project_dir, clip, pretrain, changed["ingest"]
        )
        splits, id_classes = catalog.load("splits"), catalog.load("id_classes")
        spec = describe_clip_model(report, splits, id_classes, roots, project_dir, clip, pretrain)
        source = "reused" if report.get("reused") else "trained"
        backbone = Backbone(seed, checkpoint, spec, source, time.perf_counter() - started)
        tracking.tag_active_run(backbone.provenance(recorder).current().tags())
    logger.info("benchmark: backbone %d %s at %s", seed, source, checkpoint)
    return backbone


def _backbone_seeds(backbones: Sequence[int] | None, params: dict) -> list[int]:
    seeds = list(dict.fromkeys(int(seed) for seed in backbones or ()))
    return seeds or [int(params["pretrain"]["seed"])]


def run_benchmark(
    project: Path,
    env: str | None = None,
    folds: Sequence[str] | None = None,
    backbones: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Every fold on every backbone (pretraining seeds; default: the configured ``pretrain.seed``,
    the default run's CLIP), in one MLflow parent run; returns the tables the result files are
    built from."""
    project = Path(project).resolve()
    bootstrap_project(project)
    ensure_published(project, env)
    params = dict(config_loader(project, env)["parameters"])
    heldout_domains = list(folds or domains_of(params))
    seeds = _backbone_seeds(backbones, params)
    tracking_uri = config_loader(project, env)["mlflow"]["server"]["mlflow_tracking_uri"]
    with chdir(project):
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment("croft-pipeline-benchmark")
        with mlflow.start_run(
            run_name="accuracy benchmark", tags={"benchmark": "accuracy"}
        ) as parent:
            mlflow.log_params(
                {
                    "folds": ",".join(heldout_domains),
                    "seeds": str(params["seeds"]),
                    "backbones": ",".join(map(str, seeds)),
                    "env": str(env),
                }
            )
            recorder = benchmark_recorder(project, env)
            tracking.tag_active_run(recorder.current().tags())
            prepared = prepare_backbones(project, env, params, seeds, recorder)
            done = [
                _nested_fold(project, env, params, heldout, recorder, backbone)
                for backbone in prepared
                for heldout in heldout_domains
            ]
            checkpoints = ", ".join(backbone.sha256 for backbone in prepared)
            provenance = recorder.current()
            tracking.tag_active_run(
                dataclasses.replace(provenance, clip_checkpoint_sha256=checkpoints).tags()
            )
    return aggregate(done, params, parent.info.run_id, prepared)


def _nested_fold(
    project: Path,
    env: str | None,
    params: dict,
    heldout: str,
    recorder: ProvenanceRecorder,
    backbone: Backbone,
) -> Fold:
    """:func:`run_fold` in a nested MLflow run, its tree tagged with the backbone's provenance."""
    tags = {"heldout": heldout, "backbone": str(backbone.seed)}
    name = f"heldout={heldout} backbone={backbone.seed}"
    with mlflow.start_run(run_name=name, nested=True, tags=tags):
        fold = run_fold(project, env, params, heldout, recorder, backbone)
        mlflow.log_metric("fold_seconds", fold.seconds)
        tracking.tag_run_tree(backbone.provenance(recorder).current().tags())
    logger.info(
        "benchmark: fold %s on backbone %d done in %.0f s", heldout, fold.backbone, fold.seconds
    )
    return fold


def _stack(folds: Sequence[Fold], name: str) -> pd.DataFrame:
    return pd.concat(
        [fold.outputs[name].assign(fold=fold.heldout, backbone=fold.backbone) for fold in folds],
        ignore_index=True,
    )


def _by_backbone(folds: Sequence[Fold], value) -> dict[int, dict[str, Any]]:
    """``{backbone: {held-out domain: value(fold)}}``."""
    table: dict[int, dict[str, Any]] = {}
    for fold in folds:
        table.setdefault(fold.backbone, {})[fold.heldout] = value(fold)
    return table


def aggregate(
    folds: Sequence[Fold], params: dict, run_id: str, backbones: Sequence[Backbone] = ()
) -> dict[str, Any]:
    """Mean ± std over backbones × folds × seeds, paired intervals over those units (resampled
    per backbone), the comparisons on each backbone alone, selection records."""
    results = _stack(folds, "evaluation_results")
    # one unit per (backbone, fold, seed): summarise's mean and std run over all of them
    labels = [results[key].astype(str) for key in ("backbone", "fold", "seed")]
    units = results.assign(seed=labels[0] + "/" + labels[1] + "/" + labels[2])
    summary = summarise(units)
    scores = _stack(folds, "evaluation_scores")
    evaluate = params["evaluate"]
    evaluation = EvaluationConfig.from_params(evaluate)
    comparison = ComparisonConfig.from_params(evaluate.get("comparisons"))
    comparisons = compare_methods(scores, summary, evaluation, comparison)
    order = list(dict.fromkeys(fold.backbone for fold in folds))
    pairs = [pair for pair in SCORE_PAIRS if set(pair) <= set(evaluation.scores)]
    score_comparisons = compare_scores(scores, evaluation, comparison, pairs)
    return {
        "summary": summary,
        "comparisons": comparisons,
        "backbone_comparisons": backbone_comparisons(
            scores, summary, evaluation, comparison, comparisons, order
        ),
        "score_comparisons": score_comparisons,
        "backbone_score_comparisons": per_backbone(
            scores, order, lambda part: compare_scores(part, evaluation, comparison, pairs)
        ),
        "backbones": [backbone.summary() for backbone in backbones],
        "domain_results": _stack(folds, "evaluation_domain_results"),
        "selection": _by_backbone(folds, lambda fold: fold.outputs["train_summary"]),
        "wise_curves": _stack(folds, "wise_curves"),
        "fold_seconds": _by_backbone(folds, lambda fold: round(fold.seconds, 1)),
        "mlflow_run_id": run_id,
    }


def backbone_comparisons(
    scores: pd.DataFrame,
    summary: pd.DataFrame,
    evaluation: EvaluationConfig,
    comparison: ComparisonConfig,
    pooled: pd.DataFrame,
    order: Sequence[int],
) -> pd.DataFrame:
    """The comparisons on each backbone's units alone (folds × seeds), with a ``backbone``
    column; the best baseline is the pooled one (``summary``), so the rows match ``pooled``'s.
    One backbone: ``pooled`` itself (its one cluster is the same resampling)."""
    if len(order) == 1:
        return pooled.assign(backbone=order[0])
    return per_backbone(
        scores, order, lambda part: compare_methods(part, summary, evaluation, comparison)
    )


def per_backbone(scores: pd.DataFrame, order: Sequence[int], compare) -> pd.DataFrame:
    """``compare`` run on each backbone's scored samples alone, with a ``backbone`` column."""
    parts = [
        compare(scores[scores["backbone"] == seed].drop(columns="backbone")).assign(backbone=seed)
        for seed in order
    ]
    return pd.concat(parts, ignore_index=True)
