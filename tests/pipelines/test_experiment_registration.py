"""Experiments and ad-hoc runs register nothing unless asked (``publishing.experiments``): the
rule on its own, then real Kedro sessions on copies of the shared tiny project, both ways."""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path

import mlflow
import pytest

from croft_pipeline.publishing.experiments import aliases_stay, held_reason
from croft_pipeline.publishing.gates import GateResult, gates_outcome
from croft_pipeline.tracking.provenance import Provenance, override_keys
from tests.kedro_harness import copy_with_store, run_pipeline

MODEL = "croft-clip"  # the test env's registered model
REGISTRATION = "data/08_reporting/model_registration.json"
GATES_PASS = {"gates": {"comparisons": []}}  # every version would be champion
COMMITTED = Provenance("abc", "false", "test", "evaluate")


def test_a_run_of_the_committed_config_registers_and_an_experiment_only_when_asked():
    experiment = Provenance("abc", "false", "test", "__default__", dvc_experiment="exp-cheap-fox")
    ad_hoc = Provenance("abc", "false", "test", "evaluate", overrides=("train.lr",))
    assert held_reason({}, COMMITTED) == held_reason({}, None) == ""
    assert held_reason({"experiments": False}, experiment) == (
        "DVC experiment exp-cheap-fox registers no version "
        "(evaluate.register.experiments=true registers it)"
    )
    assert held_reason({}, ad_hoc).startswith("a run with --params train.lr registers no version")
    assert held_reason({"experiments": True}, experiment) == ""
    assert held_reason({"experiments": True}, ad_hoc) == ""
    assert override_keys(
        {"evaluate": {"report": {"title": "x"}, "gates": {"comparisons": []}}}
    ) == (
        "evaluate.gates.comparisons",
        "evaluate.report.title",
    )


def test_the_gate_sentence_says_that_nothing_moves_when_the_run_registers_nothing():
    passed, failed = GateResult("a", True, "1 > 0"), GateResult("b", False, "0 > 1")
    held = "DVC experiment x registers no version"
    assert gates_outcome([passed], "champion") == (
        "all 1 gates passed: champion moves to this run's version"
    )
    assert gates_outcome([passed], "champion", held) == (
        f"all 1 gates passed, but {held}: champion stays where it was"
    )
    assert gates_outcome([passed, failed], "champion", held) == (
        f"1 of 2 gates failed (b), and {held}: champion stays where it was"
    )
    stays = {"model_name": MODEL, "alias_versions": {"candidate": "3", "champion": None}}
    assert aliases_stay(stays) == "croft-clip: @candidate stays at version 3, @champion stays unset"


@pytest.fixture
def project(tiny_project, tmp_path) -> Path:
    return copy_with_store(tiny_project, tmp_path / "project")


def _client(project: Path) -> mlflow.MlflowClient:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _registry(project: Path) -> dict:
    client = _client(project)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    return {
        "versions": sorted(str(v.version) for v in versions),
        "aliases": {a: str(v) for a, v in client.get_registered_model(MODEL).aliases.items()},
        "logged_models": len(client.search_logged_models(experiment_ids=[_experiment(project)])),
    }


def _experiment(project: Path) -> str:
    return _client(project).get_experiment_by_name("croft-pipeline").experiment_id


def _evaluate(project: Path, caplog, extra_params: dict | None = None) -> list[str]:
    """The evaluate pipeline from its report on; its log lines from the nodes and hooks."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="croft_pipeline"):
        run_pipeline(project, "evaluate", from_nodes=["render_report"], extra_params=extra_params)
    return [r.getMessage() for r in caplog.records if r.name.startswith("croft_pipeline")]


def _heading(project: Path) -> str:
    page = (project / "data/08_reporting/report.html").read_text()
    return html.unescape(re.sub(r"\s+", " ", re.search(r"Quality gates of [^<]*", page).group(0)))


@pytest.mark.parametrize("kind", ["--params", "dvc exp run"])
def test_an_experiment_registers_nothing_and_says_so(project, caplog, monkeypatch, kind):
    before = _registry(project)
    assert before["aliases"]["candidate"] == before["versions"][-1]  # the plain tiny run's
    if kind == "dvc exp run":
        monkeypatch.setenv("DVC_EXP_NAME", "exp-cheap-fox")  # as DVC sets it for a stage
        lines, experiment = _evaluate(project, caplog), "DVC experiment exp-cheap-fox"
    else:
        params = {"evaluate": {**GATES_PASS, "report": {"title": "retry"}}}
        lines = _evaluate(project, caplog, params)
        experiment = "a run with --params evaluate.gates.comparisons, evaluate.report.title"

    assert _registry(project) == before  # no version, no logged model, no alias moved
    recorded = json.loads((project / REGISTRATION).read_text())
    held = f"{experiment} registers no version (evaluate.register.experiments=true registers it)"
    champion = before["aliases"].get("champion")
    stays = f"{MODEL}: @candidate stays at version {before['aliases']['candidate']}, @champion "
    stays += f"stays at version {champion}" if champion else "stays unset"
    assert recorded["registered"] is False and recorded["reason"] == held
    assert recorded["alias_versions"]["candidate"] == before["aliases"]["candidate"]
    outcome = gates_outcome(
        [GateResult(**gate) for gate in recorded["gates"]], "champion", recorded["reason"]
    )
    assert f"gates: {outcome}" in lines and "champion stays where it was" in outcome
    assert f"registered nothing: {stays}" in lines
    assert f"produced no registered version ({held}); {stays}" in lines
    assert _heading(project) == f"Quality gates of {recorded['method']}: {outcome}"
    if kind == "--params":
        assert recorded["gates_passed"] and outcome.startswith("all 1 gates passed, but a run")
        runs = _client(project).search_runs(
            [_experiment(project)], "attributes.run_name = 'evaluate'"
        )
        run = runs[0]  # the latest
        assert run.data.tags["croft.params_overrides"] == (
            "evaluate.gates.comparisons, evaluate.report.title"
        )


def test_an_experiment_that_asks_registers_and_moves_the_aliases(project, caplog):
    before = _registry(project)
    params = {"evaluate": {**GATES_PASS, "register": {"experiments": True}}}
    lines = _evaluate(project, caplog, params)
    after = _registry(project)
    (new,) = set(after["versions"]) - set(before["versions"])
    assert after["aliases"] == {"candidate": new, "champion": new}
    assert f"registered models:/{MODEL}/{new} as @candidate, @champion" in lines
    version = _client(project).get_model_version(MODEL, new)
    keys = "evaluate.gates.comparisons, evaluate.register.experiments"
    assert version.tags["croft.params_overrides"] == keys
    assert version.description.endswith(f", a run with --params {keys}")
    assert "all 1 gates passed: champion moves to this run's version" in _heading(project)
