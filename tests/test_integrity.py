"""Nothing corrupt is used silently: changed bytes in a cache chunk, a feature table or an
adapter file are errors naming the file, and the registry only serves what was evaluated
(real Kedro sessions on copies of the shared tiny project)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import torch
from kedro.io import DatasetError

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.common.files import CorruptFileError
from croft_pipeline.publishing import publish
from croft_pipeline.publishing.served_check import ServedModelMismatch
from tests.kedro_harness import copy_with_store, run_pipeline

MODEL = "croft-clip"
REGISTRATION = "data/08_reporting/model_registration.json"
ADAPTERS = "data/06_models/adapters"
# champion moves with every version; a run with --params registers only when asked
GATES_PASS = {"evaluate": {"gates": {"comparisons": []}, "register": {"experiments": True}}}


@pytest.fixture
def project(tiny_project, tmp_path) -> Path:
    return copy_with_store(tiny_project, tmp_path / "project")


def _flip_last_byte(path: Path) -> None:
    """One bit of the file's last tensor value: still a valid safetensors file."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def _versions(project: Path) -> list[str]:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def _registered_adapter(project: Path) -> Path:
    recorded = json.loads((project / REGISTRATION).read_text())
    return project / ADAPTERS / recorded["method"] / f"seed_{recorded['seed']}.safetensors"


def _evaluate_registers_nothing(project: Path, error: type, match: str) -> None:
    versions, recorded = _versions(project), (project / REGISTRATION).read_bytes()
    with pytest.raises(error, match=match):
        run_pipeline(project, "evaluate", from_nodes=["log_to_mlflow"], extra_params=GATES_PASS)
    assert _versions(project) == versions
    assert (project / REGISTRATION).read_bytes() == recorded


def test_a_changed_adapter_file_is_refused_and_nothing_is_registered(project):
    """The filed case: a corrupted adapter under data/06_models was bundled and registered,
    though evaluation had scored the predictions of the weights train wrote."""
    adapter = _registered_adapter(project)
    _flip_last_byte(adapter)
    # Kedro wraps the dataset's error in its own, message kept
    _evaluate_registers_nothing(project, DatasetError, rf"{adapter}: its bytes changed")


def test_an_adapter_swapped_for_another_valid_file_is_refused(project):
    adapter = _registered_adapter(project)
    other = next(p for p in sorted((project / ADAPTERS).rglob("*.safetensors")) if p != adapter)
    shutil.copyfile(other, adapter)
    _evaluate_registers_nothing(
        project, CorruptFileError, "are not the ones train_summary.json records"
    )


def test_a_bundle_that_predicts_otherwise_than_evaluated_is_not_registered(project, monkeypatch):
    """The last check before a version exists: the logged model, loaded as served, predicts a
    sample of the evaluated rows; here the bundle's weights are nudged after evaluation."""
    write_bundle = publish.write_bundle

    def nudged(out_dir, config, text_features, state, *args):
        state = {
            key: value * 1.05 if value.is_floating_point() else value
            for key, value in state.items()
        }
        return write_bundle(out_dir, config, text_features, state, *args)

    monkeypatch.setattr(publish, "write_bundle", nudged)
    _evaluate_registers_nothing(
        project, ServedModelMismatch, "does not predict what evaluation scored"
    )


def test_a_changed_cache_chunk_stops_embed_naming_it(project):
    """The filed case: flipped bytes inside a chunk were used as cached rows (one with norm
    6.9e24), changed 1014 of 1833 metrics and passed the finite-metrics gate."""
    chunk = sorted((project / "data/04_feature/cache").rglob("chunk-*.safetensors"))[0]
    _flip_last_byte(chunk)
    tables = {p: p.read_bytes() for p in (project / "data/04_feature").glob("*.safetensors")}
    with pytest.raises(CorruptFileError, match=rf"{chunk}: its bytes changed.*delete it"):
        run_pipeline(project, "embed")
    assert {p: p.read_bytes() for p in tables} == tables


def test_a_changed_feature_table_or_non_finite_features_are_refused(tmp_path):
    path = FeatureTable(["a", "b"], torch.ones(2, 1, 3)).save(tmp_path / "t.safetensors")
    _flip_last_byte(path)
    with pytest.raises(CorruptFileError, match=rf"{path}: its bytes changed.*rerun the pipeline"):
        FeatureTable.load(path)
    with pytest.raises(ValueError, match=r"1 of 2 rows hold NaN or infinite.*first: 'b'"):
        FeatureTable(["a", "b"], torch.tensor([[[1.0]], [[float("inf")]]]))
