"""The score and evaluate pipelines' wiring on synthetic inputs (Kedro runner, real catalog entries),
and, once every pipeline exists, on the shared tiny end-to-end run."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.common.files import sha256_file, tensors_digest
from croft_pipeline.methods.train_summary import TrainSummary
from croft_pipeline.pipelines import evaluate, score
from croft_pipeline.publishing import publish
from croft_pipeline.publishing.registry import alias_version
from croft_pipeline.serving.predict_folder import predict_folder
from croft_pipeline.serving.pyfunc import load_in_process
from croft_pipeline.tracking.provenance import Provenance
from tests.fixtures.served_model import CLASSES, METHOD_CONFIG, MODEL_NAME
from tests.kedro_harness import load_params, pipeline_catalog
from tests.ood.synthetic import LOGIT_SCALE, synthetic_calibration, synthetic_predictions
from tests.reporting.browser import chromium_binary, inspect_page

REPO = Path(__file__).resolve().parents[2]
MODEL = "croft-clip-pipeline-test"
PROVENANCE = Provenance("1234567", "false", "test", "evaluate", {"manifest": "f" * 64}, "e" * 64)


def _params() -> dict:
    params = load_params(None)["evaluate"]
    params["scores"]["knn"]["k"] = 2
    params["register"].update(method="clip_adapter", model_name=MODEL, device="cpu")
    return params


def _catalog(project: Path, inputs: dict) -> DataCatalog:
    return pipeline_catalog(("catalog_score.yml", "catalog_evaluate.yml"), project, inputs)


def _run(project: Path, tiny, signals: dict[str, float], monkeypatch) -> DataCatalog:
    """The pipeline on synthetic predictions, whose logits no model computed: the check that
    the logged model predicts what evaluation scored (publishing.served_check, exercised on
    real runs by the tiny end-to-end run) is switched off here."""
    monkeypatch.setattr(publish, "served_sample", lambda *args: (None, None))
    monkeypatch.setattr(publish, "check_served", lambda *args: None)
    predictions = synthetic_predictions(methods=signals)
    dim = tiny.text_features.shape[1]  # the served KNN bank has the model's embedding size:
    predictions["embedding"] = [  # zeros appended keep every norm and distance
        np.pad(np.asarray(e), (0, dim - len(e))).tolist() for e in predictions["embedding"]
    ]
    train_summary = TrainSummary.from_dict(
        {
            "logit_scale": LOGIT_SCALE,
            "id_classes": CLASSES,
            "methods": {
                "zero_shot": {
                    "seeds": {
                        str(seed): {
                            "best_val_accuracy": 0.4,
                            "adapter": f"data/06_models/adapters/zero_shot/seed_{seed}.safetensors",
                            "adapter_sha256": tensors_digest({}),
                            "config": {"device": "cpu"},
                        }
                        for seed in (1, 2)
                    }
                },
                "clip_adapter": {
                    "seeds": {
                        str(seed): {
                            "best_val_accuracy": 0.5 + 0.1 * (seed == 1),
                            "adapter": f"data/06_models/adapters/clip_adapter/seed_{seed}.safetensors",
                            "adapter_sha256": tensors_digest(tiny.method.state_dict()),
                            "config": METHOD_CONFIG,
                        }
                        for seed in (1, 2)
                    }
                },
            },
        }
    )
    text_features = FeatureTable(CLASSES, tiny.text_features[:, None, :], {"logit_scale": 1.0})
    rows = predictions.drop_duplicates("sha256")
    center = torch.tensor(np.stack(rows["embedding"].to_numpy()), dtype=torch.float32)
    image_features = FeatureTable(list(rows["sha256"]), center[:, None, :])
    n_negatives = 2000  # 15 % of them fill NegLabel's 100 groups (no OOD validation: fallback)
    negative_labels = FeatureTable(
        [f"noun:word{i}" for i in range(n_negatives)],
        torch.randn(n_negatives, 1, dim, generator=torch.Generator().manual_seed(0)),
        {"id_classes": CLASSES, "shares": ((np.arange(n_negatives) + 1) / n_negatives).tolist()},
    )
    catalog = _catalog(
        project,
        {
            "predictions": predictions,
            "calibration": synthetic_calibration(predictions),
            "train_summary": train_summary,
            "training_runs": {},  # no MLflow training runs to log on
            "text_features": text_features,
            "clip_model_spec": {
                "model_name": MODEL_NAME,
                "pretrained": str(tiny.checkpoint),
                "checkpoint_sha256": sha256_file(tiny.checkpoint),
            },
            "adapter_weights": {
                **{f"clip_adapter/seed_{seed}": tiny.method.state_dict() for seed in (1, 2)},
                **{f"zero_shot/seed_{seed}": {} for seed in (1, 2)},
            },
            "project_dir": str(project),
            "provenance": PROVENANCE,
            "params:clip": {"precision": "fp32"},
            "params:evaluate": _params(),
            "params:ingest": load_params("test")["ingest"],
            # no WiSE-FT entries in this summary: the curves node has nothing to trace
            "splits": pd.DataFrame(),
            "image_features_center": image_features,
            "negative_labels": negative_labels,
            "openset_kinds": {"unknown": "far"},
            "params:train.wise": {"alphas": [0.0, 1.0]},
        },
    )
    with mlflow.start_run(run_name="evaluate-test"):
        SequentialRunner().run(score.create_pipeline() + evaluate.create_pipeline(), catalog)
    return catalog


@pytest.mark.slow
def test_evaluate_pipeline_writes_report_metrics_and_moves_champion_only_on_passing_gates(
    tmp_path,
    tiny_model,
    mlflow_store,
    monkeypatch,
    caplog,
):
    caplog.set_level(logging.INFO, logger="croft_pipeline")
    project = tmp_path / "project"
    catalog = _run(project, tiny_model, {"zero_shot": 0.4, "clip_adapter": 0.9}, monkeypatch)
    reporting = project / "data/08_reporting"
    metrics = json.loads((reporting / "metrics.json").read_text())
    assert set(metrics) == {"zero_shot", "clip_adapter"}
    assert all(isinstance(v, float) for entry in metrics.values() for v in entry.values())
    assert (
        metrics["clip_adapter"]["openset/energy_auroc"]
        > metrics["zero_shot"]["openset/energy_auroc"]
    )
    plots = sorted(p.name for p in (reporting / "plots").glob("*.png"))
    assert plots == [
        "accuracy_per_domain.png",
        "accuracy_scatter.png",
        "energy_hist_clip_adapter.png",
        "energy_hist_zero_shot.png",
        "roc_energy.png",
    ]
    report = (reporting / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(plots)
    registration = catalog.load("model_registration")
    first_threshold = registration["threshold"]
    assert registration["registered"] and registration["gates_passed"], registration["gates"]
    # headline.json (DVC's metrics): the served method and the gates' baseline, as metrics.json
    # has them, and the gates' verdict that moved the champion
    headline = json.loads((reporting / "headline.json").read_text())
    assert list(headline) == ["clip_adapter", "zero_shot", "gates"]
    for method in ("clip_adapter", "zero_shot"):
        assert headline[method].items() <= metrics[method].items()
        assert {"id/accuracy", "covariate/accuracy", "openset/energy_auroc"} <= set(
            headline[method]
        )
    assert headline["gates"]["passed"] is True
    comparisons = catalog.load("evaluation_comparisons")
    gate_rows = comparisons[
        (comparisons["method"] == "clip_adapter") & (comparisons["baseline"] == "zero_shot")
    ]
    assert {"covariate", "openset", "openset_far"} <= set(gate_rows["shift"])
    assert (gate_rows.loc[gate_rows["shift"] == "covariate", "low"] > 0).all()
    assert registration["seed"] == 1  # the best validation accuracy
    assert alias_version(MODEL, "candidate") == alias_version(MODEL, "champion") == "1"
    # the version carries the run's provenance, its gated metrics and a one-line description
    version = mlflow.MlflowClient().get_model_version(MODEL, "1")
    assert {key: version.tags.get(key) for key in PROVENANCE.tags()} == PROVENANCE.tags()
    summary = catalog.load("evaluation_summary").set_index(["method", "shift", "metric"])
    for gated in ("covariate/accuracy", "openset/energy_auroc"):
        mean = summary.loc[("clip_adapter", *gated.split("/")), "mean"]
        assert float(version.tags[f"croft.metric.{gated}"]) == pytest.approx(mean, rel=1e-5)
    assert version.description.startswith("clip_adapter seed 1 (candidate, champion): ")
    assert "\n" not in version.description and "git commit 1234567" in version.description
    assert "gates passed: champion moves to this run's version" in version.description
    # the report opens with the same gate box, before the verdict
    assert report.index('id="provenance"') < report.index('id="gates-table"')
    assert report.index('id="gates-table"') < report.index('id="verdict-table"')
    assert "gates passed: champion moves" in report and ">FAIL<" not in report

    run = mlflow.search_runs(filter_string="attributes.run_name = 'evaluate-test'").iloc[0]
    assert run["metrics.clip_adapter/covariate/accuracy"] == pytest.approx(
        metrics["clip_adapter"]["covariate/accuracy"]
    )
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(run["run_id"], "evaluation")}
    assert {"evaluation/report.html", "evaluation/metrics.json", "evaluation/plots"} <= artifacts
    tables = {f"evaluation/evaluation_{name}.csv" for name in ("summary", "comparisons")}
    assert tables <= artifacts  # logged by their catalog entries, as the saved files
    logged = client.list_artifacts(run["run_id"], "evaluation/plots")
    assert sorted(Path(a.path).name for a in logged) == plots
    report_artifact = mlflow.artifacts.download_artifacts(
        run_id=run["run_id"], artifact_path="evaluation/report.html"
    )
    assert Path(report_artifact).read_text() == report
    nested = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{run['run_id']}'")
    assert sorted(nested["tags.mlflow.runName"]) == [  # 2 methods x 2 seeds, the model's
        "evaluate/clip_adapter/seed_1",
        "evaluate/clip_adapter/seed_2",
        "evaluate/zero_shot/seed_1",
        "evaluate/zero_shot/seed_2",
        "register/clip_adapter/seed_1",
    ]
    assert sorted(nested["tags.croft.role"]) == ["evaluation"] * 4 + ["registration"]

    # A run whose adapter loses to zero-shot: a new candidate, the champion stays.
    second = _run(project, tiny_model, {"zero_shot": 0.9, "clip_adapter": 0.3}, monkeypatch)
    registration = second.load("model_registration")
    assert not registration["gates_passed"]
    assert json.loads((reporting / "headline.json").read_text())["gates"]["passed"] is False
    assert alias_version(MODEL, "candidate") == "2" and alias_version(MODEL, "champion") == "1"
    assert registration["champion_version"] == "1"
    failed = [gate["name"] for gate in registration["gates"] if not gate["passed"]]
    outcome = f"{len(failed)} of {len(registration['gates'])} gates failed ({'; '.join(failed)})"
    described = mlflow.MlflowClient().get_model_version(MODEL, "2").description
    assert f"{outcome}: champion stays where it was" in described
    assert ">FAIL<" in (reporting / "report.html").read_text()
    logged = [r.getMessage() for r in caplog.records if r.name.endswith("evaluate.nodes")]
    assert f"gates: {outcome}: champion stays where it was" in logged
    assert f"registered models:/{MODEL}/2 as @candidate" == logged[-1]
    assert sum(line.startswith("gate FAIL ") for line in logged) == len(failed)

    folder = str(tiny_model.images[0].parent)  # path input needs an allowed root
    champion = load_in_process(
        f"models:/{MODEL}@champion", model_config={"allowed_roots": [folder]}
    )
    predicted = champion.predict(pd.DataFrame({"path": [str(p) for p in tiny_model.images]}))
    expected = tiny_model.energy.numpy() < first_threshold  # the champion's own threshold
    assert predicted["is_unknown"].tolist() == expected.tolist()
    assert "knn" in predicted.columns  # evaluate.scores has knn: its bank travels with the model


@pytest.mark.slow
def test_default_run_reports_registers_and_serves(tiny_run, tiny_project, tmp_path):
    """The default pipeline (test env) leaves a report, metrics.json and a registered model whose
    folder predictions flag open-set EmojiShift images at the rate evaluate measured; its last
    lines say so."""
    reporting = tiny_project / "data/08_reporting"
    metrics = json.loads((reporting / "metrics.json").read_text())
    registration = json.loads((reporting / "model_registration.json").read_text())
    champion = registration["champion_version"]
    assert tiny_run.summary == (
        "produced data/08_reporting/report.html",
        "produced data/08_reporting/headline.json",
        "produced data/08_reporting/metrics.json",
        f"produced {registration['model_uri']} ({', '.join('@' + a for a in registration['aliases'])}; "
        f"champion: {'version ' + champion if champion else 'none yet'}); next: "
        "croft-pipeline predict --images DIR --out predictions.csv",
    )
    assert registration["registered"] and registration["clip_checkpoint_bundled"]
    assert all(np.isfinite(v) for entry in metrics.values() for v in entry.values())
    if chromium_binary() is not None:
        seen = inspect_page(reporting / "report.html")
        assert seen["images"] > 0 and seen["loaded"] == seen["images"]
        assert {t["id"] for t in seen["tables"]} >= {"summary-table", "domain-table"}

    method, seed = registration["method"], registration["seed"]
    scores = pd.read_parquet(tiny_project / "data/07_model_output/evaluation_scores.parquet")
    openset = scores[
        (scores["method"] == method)
        & (scores["seed"] == seed)
        & (scores["split"] == "test_openset")
    ]
    splits = pd.read_parquet(tiny_project / "data/03_primary/splits.parquet")
    rows = splits[(splits["seed"] == seed) & (splits["split"] == "test_openset")]
    rows = rows.drop_duplicates("sha256")
    roots = json.loads((tiny_project / "data/03_primary/dataset_roots.json").read_text())
    folder = tmp_path / "openset"
    for row in rows.itertuples():  # one file per image, named by its sha256
        target = folder / f"{row.sha256}{Path(row.path).suffix}"
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(tiny_project / roots[row.root] / row.path, target)

    mlflow.set_tracking_uri(registration["registry_uri"])
    mlflow.set_registry_uri(registration["registry_uri"])
    try:
        name = registration["model_name"]
        assert alias_version(name, "candidate") == registration["version"]
        champion = alias_version(name, "champion") == registration["version"]
        assert champion == registration["gates_passed"]
        alias = "champion" if champion else "candidate"
        predicted = predict_folder(f"models:/{name}@{alias}", folder, tmp_path / "preds.csv").table
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    predicted["sha256"] = predicted["path"].str.split(".").str[0]
    merged = predicted.merge(openset, on="sha256", validate="one_to_one")
    assert len(merged) == len(openset) > 0
    np.testing.assert_allclose(merged["energy"], merged["score_energy"], rtol=1e-4, atol=1e-4)
    # the served KNN score is evaluation's: the same bank, normalized by the same code
    np.testing.assert_allclose(merged["knn"], merged["score_knn"], rtol=1e-4, atol=1e-4)
    results = pd.read_parquet(reporting / "evaluation_results.parquet")
    deploy_fpr = results[
        (results["method"] == method)
        & (results["seed"] == seed)
        & (results["metric"] == "deploy_fpr")
    ]["value"].iloc[0]
    accepted = int((~merged["is_unknown"]).sum())
    assert abs(accepted - deploy_fpr * len(merged)) <= 1  # at most one borderline image differs
