"""The train pipeline through Kedro's runner with its real catalog entries (synthetic inputs),
MLflow nested runs included; and its outputs in the shared tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from safetensors.torch import load_file

from croft_pipeline.config.loader import config_loader
from croft_pipeline.methods import METHODS, grid_points, restore_method
from croft_pipeline.methods.params import method_config, method_grids
from croft_pipeline.methods.selection import varied_keys
from croft_pipeline.pipelines import calibrate
from croft_pipeline.pipelines.train import create_pipeline
from tests.kedro_harness import load_params, pipeline_catalog
from tests.methods.synthetic import CLASSES, synthetic_tables

REPO = Path(__file__).resolve().parents[2]
ADAPTERS = config_loader(REPO)["catalog"]["adapter_weights"]["dataset"]["path"]  # weights folder
SEEDS = [1, 2]


def _catalog(project: Path, inputs: dict) -> DataCatalog:
    return pipeline_catalog(("catalog_train.yml", "catalog_calibrate.yml"), project, inputs)


@pytest.fixture(scope="module")
def mlflow_tmp_store(tmp_path_factory):
    """A throw-away SQLite tracking store for this module's runs."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("train-tests", (root / "artifacts").as_uri())
        )
        yield uri
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory, mlflow_tmp_store):
    tmp_path = tmp_path_factory.mktemp("train_project")
    splits, center, views, text = synthetic_tables(seeds=SEEDS)
    params = load_params("test")["train"]
    catalog = _catalog(
        tmp_path,
        {
            "splits": splits,
            "image_features_center": center,
            "image_features_train_views": views,
            "text_features": text,
            "id_classes": CLASSES,
            "params:train": params,
            "params:calibrate": load_params("test")["calibrate"],
            "params:evaluate.scores": load_params("test")["evaluate"]["scores"],
            "params:evaluate.knn_bank_split": load_params("test")["evaluate"]["knn_bank_split"],
            "params:seeds": SEEDS,
        },
    )
    with mlflow.start_run(run_name="train-test") as parent:
        SequentialRunner().run(create_pipeline() + calibrate.create_pipeline(), catalog)
    return tmp_path, params, parent.info.run_id, text, center


@pytest.mark.slow
def test_train_pipeline_writes_weights_summary_predictions_and_calibration(trained_project):
    project, params, _, text, center = trained_project
    summary = json.loads((project / "data/06_models/train_summary.json").read_text())
    calibration = json.loads((project / "data/06_models/calibration.json").read_text())
    predictions = pd.read_parquet(project / "data/07_model_output/predictions.parquet")
    wise = {f"{name}+wise" for name in METHODS if METHODS[name].trains}
    assert set(summary["methods"]) == set(calibration) == set(METHODS) | wise
    weight_space = {n for n in METHODS if METHODS[n].trains and METHODS[n].starts_at_zero_shot}
    for name, entry in summary["methods"].items():
        for seed in map(str, SEEDS):
            run = entry["seeds"][seed]
            if name in wise:  # an interpolation, rebuilt from its base method's weights
                assert entry["base"] == name.removesuffix("+wise") and "adapter" not in run
                assert entry["space"] == ("weight" if entry["base"] in weight_space else "output")
                assert run["alpha"] in params["wise"]["alphas"]
                continue
            assert run["adapter"] == f"{name}/seed_{seed}"  # its key in adapter_weights
            state = load_file(project / ADAPTERS / f"{run['adapter']}.safetensors")
            method = restore_method(
                name, run["config"], text.features[:, 0], summary["logit_scale"], int(seed), state
            )
            if METHODS[name].trains:
                tried = [row["point"] for row in run["grid"]]
                assert run["zero_shot_val_accuracy"] >= 0 and run["oracle"]["point"] in tried
            rows = predictions[(predictions["method"] == name) & (predictions["seed"] == int(seed))]
            logits = np.stack(rows["logits"].to_numpy())
            assert logits.dtype == np.float32 and logits.shape[1] == len(CLASSES)
            # the saved weights are the ones that produced the predictions
            features = center.select(rows["sha256"].tolist())[:, 0]
            assert np.array_equal(method.logits(features).numpy(), logits)
            val = rows[rows["split"] == "val"]
            energy = torch.logsumexp(torch.tensor(np.stack(val["logits"].to_numpy())), 1)
            assert float((energy >= calibration[name][seed]["threshold"]).float().mean()) >= 0.95
    files = list((project / "data/06_models/adapters").rglob("*.safetensors"))
    assert len(files) == len(SEEDS) * len(METHODS)


@pytest.mark.slow
def test_train_pipeline_logs_nested_runs_per_method_and_seed(trained_project):
    project, params, parent, *_ = trained_project
    client = mlflow.MlflowClient()
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    summary = json.loads((project / "data/06_models/train_summary.json").read_text())
    runs = json.loads((project / "data/06_models/training_runs.json").read_text())
    assert {m: set(r) for m, r in runs.items()} == {
        m: set(e["seeds"]) for m, e in summary["methods"].items()
    }
    recorded = [run_id for seeds in runs.values() for run_id in seeds.values()]
    assert sorted(recorded) == sorted(children["run_id"])  # evaluation logs its metrics there
    trained = [name for name in METHODS if METHODS[name].trains]
    assert len(children) == (len(METHODS) + len(trained)) * len(SEEDS)  # + the WiSE-FT points
    wise = children[children["tags.method"].str.endswith("+wise")]
    assert sorted(wise["tags.mlflow.runName"]) == sorted(
        f"fit/{name}+wise/seed_{seed}/alpha={alpha:g}"
        for name, seed, alpha in zip(
            wise["params.base"],
            wise["params.seed"],
            wise["params.alpha"].astype(float),
            strict=True,
        )
    )
    children = children.drop(wise.index)
    adapters = {  # the weights are artifacts of the pipeline's run (catalog_train.yml)
        artifact.path
        for folder in client.list_artifacts(parent, "adapters")
        for artifact in client.list_artifacts(parent, folder.path)
    }
    assert len(adapters) == len(children)
    for _, child in children.iterrows():
        name, run_id = child["tags.method"], child["run_id"]
        settings = method_config(params, name)
        grid = method_grids(params, [name])[name]
        kept = ",".join(f"{k}={float(child[f'params.{k}']):g}" for k in varied_keys(grid))
        assert child["tags.mlflow.runName"] == "/".join(
            filter(None, ["fit", name, f"seed_{child['tags.seed']}", kept])
        )
        assert child["tags.croft.role"] == "method"
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {"config.json", "grid.json"} <= artifacts
        weights = f"{name}/seed_{child['tags.seed']}.safetensors"  # partition file name
        assert f"adapters/{weights}" in adapters
        logged = mlflow.artifacts.download_artifacts(
            run_id=parent, artifact_path=f"adapters/{weights}"
        )
        assert Path(logged).read_bytes() == (project / ADAPTERS / weights).read_bytes()
        config = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.json")
            ).read_text()
        )
        assert config["device"] == params["device"]
        if name == "zero_shot":
            continue
        keys = ["loss", "lr", "val_accuracy", "train_accuracy"]
        if name.startswith("croft"):
            keys += ["ce", "edr_ce", "edr_grad", "gen_loss", "gen_disalign"]
            assert child["tags.mode"] in ("faithful", "clean")
            assert child["params.lambda1"] == str(settings["lambda1"])
        for key in keys:
            history = client.get_metric_history(run_id, key)
            assert [m.step for m in history] == list(range(settings["epochs"])), (name, key)
        lrs = [m.value for m in client.get_metric_history(run_id, "lr")]
        assert lrs[0] == settings["warmup_lr"]
        assert client.get_metric_history(run_id, "wise_alpha")
        # every grid point tried is a run nested under the method's run, with its curve
        points = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
        assert len(points) == len(grid_points(method_grids(params, [name])[name]))
        prefix = f"grid/{name}/seed_{child['tags.seed']}/"
        assert all(title.startswith(prefix) for title in points["tags.mlflow.runName"])
        assert set(points["tags.croft.role"]) == {"grid point"}
        for point_id in points["run_id"]:
            assert len(client.get_metric_history(point_id, "val_accuracy")) == settings["epochs"]
            assert client.get_metric_history(point_id, "oracle_test_covariate")


@pytest.mark.slow
def test_train_outputs_in_the_tiny_end_to_end_run(tiny_project):
    summary = json.loads((tiny_project / "data/06_models/train_summary.json").read_text())
    params = load_params("test")["train"]
    trained = {name for name in params["methods"] if METHODS[name].trains}
    assert set(summary["methods"]) == set(params["methods"]) | {f"{n}+wise" for n in trained}
    predictions = pd.read_parquet(tiny_project / "data/07_model_output/predictions.parquet")
    splits = pd.read_parquet(tiny_project / "data/03_primary/splits.parquet")
    for name, entry in summary["methods"].items():
        for seed, run in entry["seeds"].items():
            assert (
                "adapter" not in run
                or (tiny_project / ADAPTERS / f"{run['adapter']}.safetensors").is_file()
            )
            rows = predictions[(predictions["method"] == name) & (predictions["seed"] == int(seed))]
            assert len(rows) == (splits["seed"] == int(seed)).sum()
            assert np.isfinite(np.stack(rows["logits"].to_numpy())).all()
    calibration = json.loads((tiny_project / "data/06_models/calibration.json").read_text())
    assert all(
        entry["val_tpr"] >= 0.95 for seeds in calibration.values() for entry in seeds.values()
    )
