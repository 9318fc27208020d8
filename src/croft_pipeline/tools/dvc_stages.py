"""Generate ``dvc.yaml`` from the Kedro pipelines and the catalog, so the two never drift.

One stage per pipeline, ``cmd: sh scripts/kedro run --pipelines=<name>`` (the project's own
interpreter, activated or not: ``scripts/kedro``; ``--pipelines``, the form Kedro 1.x does not
call deprecated); deps are the files the pipeline reads (catalog
inputs), its code (the import graph of its nodes, :mod:`croft_pipeline.tools.code_deps`) and the catalog
files that define its datasets; params are the keys of the parameter files it uses; outs are the
files it writes, but the few headline numbers (:data:`METRICS`), which are its metrics. Top-level ``plots`` declare the curves the pipelines write for ``dvc plots``.
``python -m croft_pipeline.tools.dvc_stages`` rewrites dvc.yaml; a test checks that the committed file
equals the generated one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from kedro.config import OmegaConfigLoader

from croft_pipeline.config.loader import config_loader
from croft_pipeline.pipeline_registry import PIPELINE_ORDER, register_pipelines
from croft_pipeline.tools.code_deps import PACKAGE, covering_paths, module_file, pipeline_code

KEDRO = "scripts/kedro"  # runs Kedro with the project's interpreter (see the script)
METRICS = {"evaluation_headline"}  # catalog datasets that are DVC metrics (`dvc exp show`)
RUN_RECORDS = {  # outputs that say what one run did, so a forced rerun changes their hash
    "emojishift_receipt": "`reused`: whether this run rendered the images or found them",
    "clip_pretrain_report": "`reused`, `seconds`: whether this run trained the checkpoint",
    "training_runs": "the ids of this run's MLflow training runs",
    "evaluation_report": "the provenance box links this run's MLflow run",
    "model_registration": "the registry version and MLflow run this run registered",
}
PLOTS = {  # catalog dataset -> its `dvc plots` definition (templates: .dvc/plots/<name>.json)
    "roc_curve": {
        "title": "ROC of the plot score: ID test (positive) vs open-set",
        "template": "by_method",
        "x": "fpr",
        "y": "tpr",
        "x_label": "false positive rate (open-set accepted)",
        "y_label": "true positive rate (ID accepted)",
    },
    "score_histogram": {
        "title": "Plot-score densities: ID test, covariate shift, open-set",
        "template": "by_method_and_shift",
        "x": "score",
        "y": "density",
        "x_label": "score (higher = more ID)",
        "y_label": "density",
    },
    "validation_accuracy_curve": {
        "title": "ID-validation accuracy per epoch (selected fit, mean over seeds)",
        "template": "by_method",
        "x": "epoch",
        "y": "val_accuracy",
        "x_label": "epoch",
        "y_label": "validation accuracy",
    },
}


def entry_storage(entry: dict[str, Any]) -> dict[str, Any]:
    """The catalog entry, or the dataset it wraps (``MlflowArtifactDataset``), that names the
    file (``filepath``) or folder (``path``, partitioned datasets) it stores."""
    inner = entry.get("dataset")
    if "filepath" in entry or "path" in entry or not isinstance(inner, dict):
        return entry
    return entry_storage(inner)


def _filepath(entry: dict[str, Any]) -> str | None:
    """The file or folder an entry stores (:func:`entry_storage`)."""
    if "ProjectDir" in str(entry.get("type", "")):
        return None  # the project folder itself, not data
    storage = entry_storage(entry)
    path = storage.get("filepath", storage.get("path"))
    return None if path is None else str(path)


def _catalog_paths(loader: OmegaConfigLoader) -> dict[str, str]:
    return {
        name: path
        for name, entry in loader["catalog"].items()
        if isinstance(entry, dict) and (path := _filepath(entry))
    }


def _key_sources(conf_dir: Path, pattern: str) -> dict[str, str]:
    """Top-level key (a dataset, a parameter block) -> the base file defining it, project-relative
    (``pattern``: ``catalog*.yml`` or ``parameters*.yml``)."""
    sources = {}
    for path in sorted((conf_dir / "base").glob(pattern)):
        for key in yaml.safe_load(path.read_text()) or {}:
            sources[key] = path.relative_to(conf_dir.parent).as_posix()
    return sources


def stage_code(project_root: Path, name: str, pipeline) -> list[str]:
    """The project files (folders where all of one's files count) a stage runs as code."""
    files = pipeline_code(pipeline, f"{PACKAGE}.pipelines.{name}.pipeline")
    package_dir = module_file(PACKAGE).parent
    root = project_root.resolve()
    return [p.resolve().relative_to(root).as_posix() for p in covering_paths(files, package_dir)]


def _extra_outs(params: dict[str, Any]) -> dict[str, list[Any]]:
    """Files and folders that nodes write directly: rendered images, checkpoint, cache."""
    ingest = params.get("ingest", {})
    rendered = ingest.get("roots", {}) if ingest.get("source") == "emojishift" else {}
    pretrain = params.get("pretrain", {})
    written = [pretrain.get(key) for key in ("checkpoint", "feature_cache")]
    cache_dir = params.get("embed", {}).get("cache_dir")
    # persist: DVC leaves them in place on a rerun; the node itself re-renders only what changed,
    # reuses the checkpoint while its stamp matches, and computes only missing cache entries
    return {
        "ingest": [{path: {"persist": True}} for path in sorted(set(rendered.values()))],
        "pretrain": [{path: {"persist": True}} for path in written if path],
        "embed": [{cache_dir: {"persist": True}}] if cache_dir else [],
    }


def _outermost(keys: set[str]) -> list[str]:
    """``evaluate`` covers ``evaluate.scores``: keep only the keys no other key contains."""
    return sorted(k for k in keys if not any(k.startswith(f"{other}.") for other in keys))


def build_stages(project_root: Path) -> dict[str, Any]:
    conf_dir = project_root / "conf"
    loader = config_loader(project_root)
    paths = _catalog_paths(loader)
    param_files = _key_sources(conf_dir, "parameters*.yml")
    catalog_files = _key_sources(conf_dir, "catalog*.yml")
    extra = _extra_outs(loader["parameters"])
    pipelines = register_pipelines()
    stages: dict[str, Any] = {}
    for name in PIPELINE_ORDER:
        pipeline = pipelines[name]
        inputs = pipeline.inputs()
        outputs = pipeline.all_outputs()
        params: dict[str, set[str]] = {}
        for dataset in sorted(inputs):
            if dataset.startswith("params:"):
                key = dataset.removeprefix("params:")  # a block, or one key of it (a.b)
                if key.split(".")[0] in param_files:
                    params.setdefault(param_files[key.split(".")[0]], set()).add(key)
        code = stage_code(project_root, name, pipeline)
        config = {catalog_files[d] for d in inputs | outputs if d in catalog_files}
        config |= {"conf/base/globals.yml", KEDRO}
        deps = sorted({paths[d] for d in inputs if d in paths} | set(code) | config)
        written = sorted(paths[d] for d in outputs if d in paths and d not in METRICS)
        stage: dict[str, Any] = {"cmd": f"sh {KEDRO} run --pipelines={name}", "deps": deps}
        if params:
            stage["params"] = [{f: _outermost(keys)} for f, keys in sorted(params.items())]
        outs = written + extra.get(name, [])
        if outs:
            stage["outs"] = outs
        # cached like every output (git ignores data/): `dvc push` and `dvc exp show` see it
        metrics = sorted(paths[d] for d in outputs & METRICS)
        if metrics:
            stage["metrics"] = metrics
        stages[name] = stage
    return {"stages": stages, "plots": _plots(paths)}


def _plots(paths: dict[str, str]) -> list[dict[str, Any]]:
    """Top-level plot definitions: one per curve table, ``y`` keyed by the table's file."""
    return [{name: {**spec, "y": {paths[name]: spec["y"]}}} for name, spec in PLOTS.items()]


def render(project_root: Path) -> str:
    header = "# Generated by `python -m croft_pipeline.tools.dvc_stages` from the Kedro pipelines and catalog.\n"
    return header + yaml.safe_dump(build_stages(project_root), sort_keys=False, width=100)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    (root / "dvc.yaml").write_text(render(root))
    print(f"wrote {root / 'dvc.yaml'}")


if __name__ == "__main__":
    main()
