"""``croft-pipeline predict`` and ``croft-pipeline info`` as real subprocesses (the console script
runs ``croft_pipeline.tools.console:main``; ``python -m croft_pipeline.tools.console`` is the same entry point)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import croft_pipeline
from croft_pipeline.common.files import sha256_file
from croft_pipeline.publishing.registry import log_and_register
from croft_pipeline.serving.pyfunc import load_in_process
from tests.fixtures.served_model import CLASSES, MODEL_NAME

MODEL = "croft-clip-cli"
SUMMARY = re.compile(
    r"^(\d+) predicted: (\d+) known, (\d+) unknown \(\d+\.\d%\); 0 errors; "
    r"\d+\.\d images/s; written to (.+)$"
)

pytestmark = pytest.mark.slow  # subprocesses, a served model or a Ray cluster: the integration tier


def _cli(*args: str, store: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "PYTHONPATH": str(Path(croft_pipeline.__file__).parents[1]),  # the code under test
    }
    return subprocess.run(
        [sys.executable, "-m", "croft_pipeline.tools.console", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _register(tiny_model, tmp_path) -> dict:
    """The tiny model (with a KNN bank) as champion, logged in a run that holds two methods'
    evaluation metrics, as the evaluate pipeline's run does."""
    artifacts = tiny_model.write_bundle(
        tmp_path / "bundle", knn_k=2, threshold=tiny_model.clear_threshold
    )
    with mlflow.start_run(run_name="evaluate-cli"):
        mlflow.log_metrics(
            {"clip_adapter/openset/energy_auroc": 0.75, "zero_shot/openset/energy_auroc": 0.5}
        )
        return log_and_register(
            artifacts, MODEL, ["candidate", "champion"], tags={"method": "clip_adapter"}
        )


def test_predict_writes_the_csv_in_batches_and_prints_one_summary_line(
    tiny_model, mlflow_store, tmp_path
):
    registered = _register(tiny_model, tmp_path)
    folder, out = tiny_model.images[0].parent, tmp_path / "predictions.csv"
    run = _cli(
        "predict",
        "--model",
        f"models:/{MODEL}@champion",
        "--images",
        str(folder),
        "--out",
        str(out),
        "--batch-size",
        "4",
        store=mlflow_store,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(out)
    assert table["path"].tolist() == [p.name for p in sorted(tiny_model.images)]
    expected = load_in_process(
        registered["model_uri"], model_config={"allowed_roots": [str(folder.resolve())]}
    ).predict(pd.DataFrame({"path": [str(p.resolve()) for p in sorted(tiny_model.images)]}))
    assert list(table.columns) == ["path", *expected.columns, "error"]
    assert table["error"].isna().all()
    assert table["is_unknown"].tolist() == expected["is_unknown"].tolist()
    for column in ("score", "energy", "knn"):
        np.testing.assert_allclose(table[column], expected[column], rtol=1e-5)

    summary = SUMMARY.match(run.stdout.strip().splitlines()[-1])
    assert summary, run.stdout
    unknown = int(table["is_unknown"].sum())
    assert summary.groups()[:3] == (str(len(table)), str(len(table) - unknown), str(unknown))
    assert summary.group(4) == str(out) and 0 < unknown < len(table)
    assert f"{len(table)}/{len(table)}" in run.stderr  # the progress bar reached the end

    missing = _cli(
        "predict",
        "--model",
        f"models:/{MODEL}@champion",
        "--images",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "other.csv"),
        store=mlflow_store,
    )
    assert missing.returncode == 1 and not (tmp_path / "other.csv").exists()
    assert (
        missing.stderr.strip()
        == f"croft-pipeline predict: --images {tmp_path / 'nope'}: not a folder"
    )


def test_info_says_what_the_model_is(tiny_model, mlflow_store, tmp_path):
    registered = _register(tiny_model, tmp_path)
    run = _cli("info", "--model", f"models:/{MODEL}@champion", "--json", store=mlflow_store)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads(run.stdout)
    bundle = info["bundle"]
    assert bundle["model_name"] == MODEL_NAME and bundle["class_names"] == CLASSES
    assert bundle["clip_checkpoint_sha256"] == sha256_file(tiny_model.checkpoint)
    assert bundle["method"] == "clip_adapter" and bundle["method_config"]["ratio"] == 0.2
    assert bundle["threshold"] == tiny_model.clear_threshold
    assert (bundle["score"], bundle["knn_params"]) == ("energy", {"k": 2})
    assert info["registry"]["version"] == registered["version"]
    assert set(info["registry"]["aliases"]) == {"candidate", "champion"}
    assert info["registry"]["tags"] == {
        "method": "clip_adapter",
        "croft.registration": "complete",  # the unit finished (publishing.interrupted)
        "croft.alias_before.candidate": "",  # neither alias was set before it
        "croft.alias_before.champion": "",
    }
    assert info["registry"]["run_id"] == registered["run_id"]
    assert info["run"]["metrics"] == {"openset/energy_auroc": 0.75}  # the registered method's

    text = _cli("info", "--model", f"models:/{MODEL}/1", store=mlflow_store)
    assert text.returncode == 0, text.stderr[-3000:]
    assert f"clip_checkpoint_sha256: {bundle['clip_checkpoint_sha256']}" in text.stdout
    assert "openset/energy_auroc: 0.75" in text.stdout and "zero_shot" not in text.stdout

    local = mlflow.artifacts.download_artifacts(
        registered["model_uri"], dst_path=str(tmp_path / "m")
    )
    offline = _cli("info", "--model", local, "--json", store=mlflow_store)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert json.loads(offline.stdout)["bundle"] == bundle and "registry" not in offline.stdout

    unknown = _cli("info", "--model", "models:/no-such-model@champion", store=mlflow_store)
    assert unknown.returncode == 1 and "no-such-model" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1

    mlflow.MlflowClient().delete_registered_model_alias(MODEL, "champion")
    no_champion = _cli("info", "--model", f"models:/{MODEL}@champion", store=mlflow_store)
    assert no_champion.returncode == 1 and len(no_champion.stderr.strip().splitlines()) == 1
    assert "quality gates" in no_champion.stderr
    assert f"models:/{MODEL}@candidate" in no_champion.stderr
    assert "its aliases: @candidate (version 1)" in no_champion.stderr

    # No --model: croft-clip@champion, or its candidate while no version is champion (a fresh
    # clone whose run failed a gate), saying so with the version's gate outcome.
    client, default = mlflow.MlflowClient(), "croft-clip"
    client.create_registered_model(default)
    source = client.get_model_version(MODEL, registered["version"]).source
    client.create_model_version(default, source, registered["run_id"], description="1 gate failed")
    client.set_registered_model_alias(default, "candidate", "1")
    fallback = _cli("info", "--json", store=mlflow_store)
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    assert json.loads(fallback.stdout)["registry"]["aliases"] == ["candidate"]
    assert fallback.stderr.splitlines()[0] == (  # then MLflow's download bar
        "croft-pipeline info: no version of 'croft-clip' is champion yet; using "
        "models:/croft-clip@candidate, version 1: 1 gate failed"
    )
    client.set_registered_model_alias(default, "champion", "1")
    champion = _cli("info", "--json", store=mlflow_store)
    assert champion.returncode == 0, champion.stderr[-3000:]
    assert "croft-pipeline" not in champion.stderr and "@champion" in champion.stdout
