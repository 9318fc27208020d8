"""The accuracy benchmark on the tiny project: folds × seeds as units, one MLflow parent run with
a nested run per fold, and result files with the tables."""

from __future__ import annotations

import importlib.util
import json

import mlflow

from croft_pipeline.benchmark import run_benchmark
from tests.kedro_harness import REPO_ROOT, load_params

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
    assert set(results["selection"]) == set(results["fold_seconds"]) == set(FOLDS)
    heldout = {fold: r["methods"]["zero_shot"]["seeds"] for fold, r in results["selection"].items()}
    assert all(set(s) == {str(x) for x in seeds} for s in heldout.values())

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
