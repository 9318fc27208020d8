"""Provenance: the facts of a run (git, data digests, checkpoint), and the MLflow runs and the
registered version of the tiny end-to-end run read back through ``MlflowClient``."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from croft_pipeline.config.loader import config_loader
from croft_pipeline.hooks import runner_class
from croft_pipeline.methods import METHODS
from croft_pipeline.methods.params import method_config
from croft_pipeline.methods.selection import varied_keys
from croft_pipeline.tracking import run_name
from croft_pipeline.tracking.provenance import (
    TRACKED_DATA,
    ProvenanceRecorder,
    git_state,
    recorder_for,
)
from tests.kedro_harness import REPO_ROOT, load_params

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_git_state_names_the_commit_and_whether_the_checkout_is_dirty(tmp_path):
    assert git_state(tmp_path) == ("unknown", "unknown")  # not a checkout: no failure
    subprocess.run([*GIT, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("a")
    subprocess.run([*GIT, "-C", str(tmp_path), "add", "a.txt"], check=True)
    subprocess.run([*GIT, "-C", str(tmp_path), "commit", "-qm", "a"], check=True)
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert git_state(tmp_path) == (head, "false")
    (tmp_path / "a.txt").write_text("changed")
    assert git_state(tmp_path) == (head, "true")


def test_recorder_digests_the_files_as_they_are_now(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-cheap-fox")
    manifest, spec = tmp_path / "manifest.parquet", tmp_path / "clip_model_spec.json"
    recorder = ProvenanceRecorder(tmp_path, "test", "ingest", {"manifest": manifest}, spec)
    before = recorder.current()
    assert before.data == {"manifest": "missing"} and before.clip_checkpoint_sha256 == "unknown"
    manifest.write_bytes(b"first")
    spec.write_text(json.dumps({"checkpoint_sha256": "d" * 64}))
    assert recorder.current().data["manifest"] == hashlib.sha256(b"first").hexdigest()
    manifest.write_bytes(b"second, longer")  # a run that rewrites the manifest reports the new one
    tags = recorder.current().tags()
    assert tags["croft.data.manifest.sha256"] == hashlib.sha256(b"second, longer").hexdigest()
    assert tags["croft.clip_checkpoint_sha256"] == "d" * 64
    assert tags["croft.dvc_experiment"] == "exp-cheap-fox" and tags["croft.kedro_env"] == "test"


def test_recorder_for_takes_the_catalogs_paths():
    catalog = config_loader(REPO_ROOT, "test")["catalog"]
    recorder = recorder_for(REPO_ROOT, "test", "__default__", catalog)
    assert set(recorder.files) == set(TRACKED_DATA)
    assert recorder.files["manifest"] == REPO_ROOT / catalog["manifest"]["filepath"]


@pytest.fixture(scope="module")
def store(tiny_project):
    uri = f"sqlite:///{tiny_project / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _expected_tags(project: Path) -> dict[str, str]:
    """The provenance tags computed here from the files themselves (not by the recorder)."""
    catalog = config_loader(REPO_ROOT, "test")["catalog"]
    spec = json.loads((project / catalog["clip_model_spec"]["filepath"]).read_text())
    return {
        "croft.git_commit": "unknown",  # the tiny project is a copy, not a git checkout
        "croft.git_dirty": "unknown",
        "croft.kedro_env": "test",
        "croft.pipeline": "__default__",
        **{
            f"croft.data.{name}.sha256": _sha256(project / catalog[name]["filepath"])
            for name in TRACKED_DATA
        },
        "croft.clip_checkpoint_sha256": _sha256(project / spec["pretrained"]),
    }


def _croft_tags(tags: dict[str, str]) -> dict[str, str]:
    keys = ("croft.git", "croft.kedro_env", "croft.pipeline", "croft.data.", "croft.clip")
    return {k: v for k, v in tags.items() if k.startswith(keys)}


def test_every_run_of_the_tiny_run_says_what_made_it(tiny_project, store):
    registration = json.loads(
        (tiny_project / "data/08_reporting/model_registration.json").read_text()
    )
    registered = store.get_run(registration["run_id"])  # the model's run, in the pipeline's
    parent = store.get_run(registered.data.tags["mlflow.parentRunId"])  # the __default__ run
    assert registered.info.status == "FINISHED"
    method, seed = registration["method"], registration["seed"]
    assert registered.info.run_name == f"register/{method}/seed_{seed}"
    expected = _expected_tags(tiny_project)
    assert _croft_tags(parent.data.tags) == expected
    note = parent.data.tags["mlflow.note.content"]
    assert "Kedro pipeline __default__" in note and "env test" in note
    experiment = parent.info.experiment_id
    nested = store.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    below = [
        run
        for child in nested
        for run in [
            child,
            *store.search_runs([experiment], f"tags.mlflow.parentRunId = '{child.info.run_id}'"),
        ]
    ]
    assert len(below) > len(nested) > 0  # method runs, their grid points, the evaluate runs
    for run in below:
        assert _croft_tags(run.data.tags) == expected, run.info.run_name

    # the registered version: the same provenance, its gated metrics and one line about it
    version = store.get_model_version(registration["model_name"], registration["version"])
    assert _croft_tags(version.tags) == expected
    gates = load_params("test")["evaluate"]["gates"]["comparisons"]
    assert {f"croft.metric.{g['shift']}/{g['metric']}" for g in gates} <= set(version.tags)
    assert version.description.startswith(f"{registration['method']} seed {registration['seed']}")

    # the report opens with the same facts and links the run
    page = (tiny_project / "data/08_reporting/report.html").read_text()
    assert page.index('id="provenance"') < page.index('id="verdict-table"')
    assert f"/#/experiments/{experiment}/runs/{parent.info.run_id}" in page
    assert expected["croft.data.manifest.sha256"] in page


def test_run_names_follow_one_scheme():
    assert run_name("fit", "croft_clean", 2, {"lambda2": 10.0, "lr": 0.05}) == (
        "fit/croft_clean/seed_2/lambda2=10,lr=0.05"
    )
    assert (
        run_name("fit", "croft_clean+wise", 1, {"alpha": 0.5})
        == "fit/croft_clean+wise/seed_1/alpha=0.5"
    )
    assert run_name("grid", "clip_adapter", 1, {"mode": "clean", "on": True}) == (
        "grid/clip_adapter/seed_1/mode=clean,on=True"
    )
    assert run_name("evaluate", "zero_shot", 1, {}) == "evaluate/zero_shot/seed_1"


def test_the_runner_tag_is_its_class_name():
    recorded = "<kedro.runner.parallel_runner.ParallelRunner object at 0x7f3a2c1d9e50>"
    assert runner_class(recorded) == "ParallelRunner"
    assert runner_class("ThreadRunner") == "ThreadRunner"  # given as a class: its __name__
    assert runner_class(None) == runner_class("None") == "SequentialRunner"  # Kedro's default


def test_every_run_of_the_tiny_run_is_named_and_tagged_by_what_it_is(tiny_project, store):
    registration = json.loads(
        (tiny_project / "data/08_reporting/model_registration.json").read_text()
    )
    parent = store.get_run(store.get_run(registration["run_id"]).data.tags["mlflow.parentRunId"])
    tags = parent.data.tags
    assert "run_id" not in tags and re.fullmatch(
        r"\d{4}-\d\d-\d\dT[\d.]+Z", tags["kedro.session_id"]
    )
    assert tags["runner"] == "SequentialRunner" and tags["croft.role"] == "pipeline"
    runs = store.search_runs([parent.info.experiment_id])
    nested = [run for run in runs if run.info.run_id != parent.info.run_id]
    scheme = (
        r"(fit|grid|evaluate|register)/[a-z_]+(\+wise)?/seed_\d+(/[\w.]+=[^,/]+(,[\w.]+=[^,/]+)*)?"
    )
    roles = {
        "fit": "method",
        "grid": "grid point",
        "evaluate": "evaluation",
        "register": "registration",
    }
    for run in nested:
        assert re.fullmatch(scheme, run.info.run_name), run.info.run_name
        assert run.data.tags["croft.role"] == roles[run.info.run_name.split("/")[0]], (
            run.info.run_name
        )
    assert {run.info.run_name.split("/")[0] for run in nested} == set(roles)


def test_mlflow_compare_runs_gives_the_method_table(tiny_project, store):
    """Each method and seed is a training run named by its kept grid point, with its per-epoch
    curves (step = epoch) and the results table's metrics that evaluation logged on it."""
    summary = json.loads((tiny_project / "data/06_models/train_summary.json").read_text())
    runs = json.loads((tiny_project / "data/06_models/training_runs.json").read_text())
    results = pd.read_parquet(tiny_project / "data/08_reporting/evaluation_results.parquet")
    params = load_params("test")["train"]
    registration = json.loads(
        (tiny_project / "data/08_reporting/model_registration.json").read_text()
    )
    pipeline_run = store.get_run(registration["run_id"]).data.tags["mlflow.parentRunId"]
    for method, entry in summary["methods"].items():
        for seed, recorded in entry["seeds"].items():
            run = store.get_run(runs[method][seed])
            if "base" in entry:  # a WiSE-FT point
                shown = f"alpha={recorded['alpha']:g}"
            else:
                grid = params["grids"].get(method) or {}
                shown = ",".join(f"{k}={recorded['config'][k]:g}" for k in varied_keys(grid))
            assert run.info.run_name == "/".join(
                filter(None, ["fit", method, f"seed_{seed}", shown])
            )
            assert run.data.tags["croft.role"] == "method"
            if METHODS.get(method) is not None and METHODS[method].trains:
                history = store.get_metric_history(run.info.run_id, "val_accuracy")
                epochs = method_config(params, method)["epochs"]
                assert [m.step for m in history] == list(range(epochs))
            mine = results[(results["method"] == method) & (results["seed"] == int(seed))]
            for shift, metric in (
                ("id", "accuracy"),
                ("covariate", "accuracy"),
                ("openset", "energy_auroc"),
                ("openset", "energy_fpr95_id_positive"),
            ):
                value = mine[(mine["shift"] == shift) & (mine["metric"] == metric)]["value"]
                assert run.data.metrics[f"{shift}/{metric}"] == pytest.approx(value.iloc[0])
            assert not any(re.match(r"openset/msp_", key) for key in run.data.metrics)
            assert run.data.tags["croft.evaluated_in"] == pipeline_run
