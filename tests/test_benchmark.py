"""The accuracy benchmark on the tiny project: (backbones ×) folds × seeds as units, one MLflow
parent run with a nested run per fold, and result files with the tables; backbones pretrained
beside the default run's outputs, which stay as they are (its embed cache gains the folds'
chunks: ``TinyRun.cache_chunks`` keeps the run's own)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlflow

from benchmarks.protocol import (
    _default_is_current,
    backbone_checkpoint,
    benchmark_recorder,
    prepare_backbones,
    run_benchmark,
)
from croft_pipeline.common.files import sha256_file
from croft_pipeline.config.loader import config_loader
from tests.kedro_harness import REPO_ROOT, copy_project, load_params, pin_tracking_store

FOLDS = ["noto", "symbola"]


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "bench_accuracy", REPO_ROOT / "benchmarks/bench_accuracy.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_every_fold_through_the_pipelines(tiny_project, tmp_path):
    results = run_benchmark(tiny_project, "test", FOLDS)
    seeds = load_params("test")["seeds"]
    summary, comparisons = results["summary"], results["comparisons"]
    assert set(summary["n_seeds"]) == {len(FOLDS) * len(seeds)}  # one unit per fold and seed
    assert set(comparisons["units"]) == {len(FOLDS) * len(seeds)}
    configured = load_params("test")["pretrain"][
        "seed"
    ]  # the default run's CLIP, the only backbone
    assert set(results["selection"]) == set(results["fold_seconds"]) == {configured}
    assert set(results["selection"][configured]) == set(results["fold_seconds"][configured])
    assert set(results["selection"][configured]) == set(FOLDS)
    selection = results["selection"][configured]
    heldout = {fold: r.methods["zero_shot"].seeds for fold, r in selection.items()}
    assert all(set(s) == set(seeds) for s in heldout.values())

    mlflow.set_tracking_uri(f"sqlite:///{tiny_project / 'mlflow.db'}")
    try:
        parent = mlflow.get_run(results["mlflow_run_id"])
        assert parent.data.tags["benchmark"] == "accuracy"
        folds = mlflow.search_runs(
            experiment_names=["croft-pipeline-benchmark"],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        )
        assert sorted(folds["tags.heldout"]) == sorted(FOLDS)
    finally:
        mlflow.set_tracking_uri(None)

    bench = _bench_module()
    bench.write_results(
        results, tmp_path, "python benchmarks/bench_accuracy.py --folds noto symbola", 1.0
    )
    document = json.loads((tmp_path / "accuracy.json").read_text())
    assert {"machine", "command", "date", "commit", "summary", "comparisons", "selection"} <= set(
        document
    )
    page = (tmp_path / "accuracy.md").read_text()
    for heading in (
        "Every method",
        "Against zero-shot CLIP",
        "Does the energy term help",
        "oracle",
    ):
        assert heading in page


def _default_run_files(project: Path) -> dict[str, str]:
    """sha256 of every file the default run's catalog holds (folders: every file below), and of
    the default CLIP checkpoint."""
    entries = config_loader(project, "test")["catalog"].values()
    paths = [project / e.get("filepath", e.get("path", "")) for e in entries if isinstance(e, dict)]
    paths.append(project / load_params("test")["clip"]["pretrained"])
    files = [f for p in paths if p != project for f in ([p] if p.is_file() else p.rglob("*"))]
    return {str(f.relative_to(project)): sha256_file(f) for f in files if f.is_file()}


def test_backbones_are_a_random_factor_pretrained_beside_the_default_run(tiny_project, tmp_path):
    """Two backbones (the default run's and a second pretraining seed) × one fold: two
    checkpoints, the default run's outputs byte for byte as they were, units = backbones × folds
    × seeds (resampled per backbone), the same comparisons on each backbone alone, and a
    per-backbone table per headline comparison."""
    project = copy_project(tiny_project, tmp_path / "project")
    pin_tracking_store(project, "test")  # the copy's own MLflow store
    params = load_params("test")
    configured = params["pretrain"]["seed"]
    other, seeds = configured + 1, params["seeds"]
    before = _default_run_files(project)
    results = run_benchmark(project, "test", ["noto"], backbones=[configured, other])
    assert _default_run_files(project) == before

    backbones = {b["seed"]: b for b in results["backbones"]}
    assert backbones[configured]["source"] == "default run"
    assert backbones[configured]["checkpoint"] == params["clip"]["pretrained"]
    assert backbones[other]["source"] == "trained"
    assert backbones[other]["checkpoint"] == backbone_checkpoint(params, other)
    digests = [sha256_file(project / backbones[s]["checkpoint"]) for s in (configured, other)]
    assert digests == [backbones[s]["checkpoint_sha256"] for s in (configured, other)]
    assert digests[0] != digests[1]
    assert all("mean" in b["zero_shot_accuracy"] for b in backbones.values())

    units = 2 * 1 * len(seeds)
    assert set(results["comparisons"]["units"]) == {units}
    assert set(results["summary"]["n_seeds"]) == {units}
    per_backbone = results["backbone_comparisons"]
    assert set(per_backbone["backbone"]) == {configured, other}
    assert set(per_backbone["units"]) == {len(seeds)}
    assert len(per_backbone) == 2 * len(results["comparisons"])

    written = (project / backbones[other]["checkpoint"]).stat().st_mtime_ns
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        children = mlflow.search_runs(
            experiment_names=["croft-pipeline-benchmark"],
            filter_string=f"tags.mlflow.parentRunId = '{results['mlflow_run_id']}'",
        )
        recorder = benchmark_recorder(project, "test")
        (again,) = prepare_backbones(project, "test", params, [other], recorder)
    finally:
        mlflow.set_tracking_uri(None)
    # a nested run per backbone pretrained and per backbone x fold, each naming its checkpoint
    folds = children[children["tags.heldout"].notna()]
    assert sorted(folds["tags.backbone"]) == [str(configured), str(other)]
    assert list(children.loc[children["tags.stage"] == "pretrain", "tags.backbone"]) == [str(other)]
    by_backbone = dict(
        zip(folds["tags.backbone"], folds["tags.croft.clip_checkpoint_sha256"], strict=True)
    )
    assert by_backbone == {str(configured): digests[0], str(other): digests[1]}
    # a second benchmark reuses the checkpoint by its stamp, and its spec is the same
    assert (again.source, again.sha256) == ("reused", digests[1])
    assert (project / again.checkpoint).stat().st_mtime_ns == written
    assert again.spec["zero_shot_accuracy"] == backbones[other]["zero_shot_accuracy"]
    # the configured seed is the default run's checkpoint only while its recipe is the configured one
    assert _default_is_current(project, "test", params)
    steps = params["pretrain"]["steps"] + 1
    assert not _default_is_current(
        project, "test", {**params, "pretrain": {**params["pretrain"], "steps": steps}}
    )

    bench = _bench_module()
    bench.write_results(
        results, tmp_path, "python benchmarks/bench_accuracy.py --backbones 0,1", 1.0
    )
    document = json.loads((tmp_path / "accuracy.json").read_text())
    assert [b["seed"] for b in document["backbones"]] == [configured, other]
    assert {row["backbones"] for row in document["backbone_agreement"]} == {2}
    page = (tmp_path / "accuracy.md").read_text()
    assert "## Backbones" in page
    roles = set(results["comparisons"]["role"]) | set(results["score_comparisons"]["role"])
    assert page.count(f"Per backbone (pretraining seeds {configured}, {other})") == len(roles)
    assert "/2: " in page
