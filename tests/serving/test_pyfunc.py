"""The served model: bundle round trip, MLflow pyfunc from the registry, the KNN score."""

import json
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from croft_pipeline.config.rules import ParameterError
from croft_pipeline.ood.scores import ScoreInputs, knn
from croft_pipeline.publishing.registry import alias_version, log_and_register
from croft_pipeline.serving.bundle import load_predictor
from croft_pipeline.serving.inputs import InputPolicy
from croft_pipeline.serving.predict_folder import list_images
from croft_pipeline.serving.pyfunc import load_in_process
from tests.fixtures.served_model import CLASSES


@pytest.fixture
def artifacts(tiny_model, tmp_path):
    return tiny_model.write_bundle(tmp_path / "bundle")


def _expected(tiny_model) -> pd.DataFrame:
    logits = tiny_model.method.logits(tiny_model.features).double().numpy()
    labels = logits.argmax(axis=1)
    return pd.DataFrame(
        {
            "label": labels,
            "class_name": [CLASSES[i] for i in labels],
            "energy": tiny_model.energy.numpy(),
            "is_unknown": tiny_model.energy.numpy() < tiny_model.threshold,
        }
    )


def _check(predicted: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(predicted.columns) == ["label", "class_name", "score", "energy", "is_unknown"]
    assert predicted["label"].tolist() == expected["label"].tolist()
    assert predicted["class_name"].tolist() == expected["class_name"].tolist()
    np.testing.assert_allclose(predicted["energy"], expected["energy"], rtol=1e-5)
    np.testing.assert_allclose(predicted["score"], predicted["energy"])
    assert predicted["is_unknown"].tolist() == expected["is_unknown"].tolist()


def test_bundle_files_are_pickle_free_and_round_trip(tiny_model, artifacts):
    assert set(artifacts) == {"config", "text_features", "adapter", "clip_checkpoint"}
    config = json.loads(Path(artifacts["config"]).read_text())
    assert config["class_names"] == CLASSES and config["embed_dim"] == tiny_model.features.shape[1]
    folder = tiny_model.images[0].parent
    predictor = load_predictor(artifacts, input_policy=InputPolicy((folder.resolve(),)))
    paths = pd.DataFrame({"path": [str(p) for p in tiny_model.images]})
    _check(predictor.predict(paths), _expected(tiny_model))
    # The threshold splits the images (the median energy), so both outcomes are exercised.
    assert 0 < predictor.predict(paths)["is_unknown"].sum() < len(tiny_model.images)


def test_registered_pyfunc_predicts_paths_bytes_and_embeddings(tiny_model, artifacts, mlflow_store):
    registered = log_and_register(artifacts, "croft-clip-test", aliases=["candidate"])
    assert registered["version"] == "1"
    assert alias_version("croft-clip-test", "candidate") == "1"
    assert alias_version("croft-clip-test", "champion") is None
    model_dir = mlflow.artifacts.download_artifacts(
        f"models:/croft-clip-test/{registered['version']}"
    )
    assert not list(Path(model_dir).rglob("*.pkl"))  # models from code: nothing to unpickle
    requirements = (Path(model_dir) / "requirements.txt").read_text()
    assert "mlflow==" in requirements and "torch==" in requirements
    assert yaml.safe_load((Path(model_dir) / "MLmodel").read_text())["signature"]["inputs"]

    folder = str(tiny_model.images[0].parent)
    with pytest.raises(Exception, match="row 0: path input is off for this model"):
        load_in_process("models:/croft-clip-test@candidate").predict(
            pd.DataFrame({"path": [str(tiny_model.images[0])]})
        )
    path = list(sys.path)
    model = load_in_process(
        "models:/croft-clip-test@candidate", model_config={"allowed_roots": [folder]}
    )
    # MLflow prepended the bundle's code/ (its subset of the package); a process spawned later
    # would import that instead of the installed package.
    assert sys.path == path
    expected = _expected(tiny_model)
    _check(model.predict(pd.DataFrame({"path": [str(p) for p in tiny_model.images]})), expected)
    _check(
        model.predict(pd.DataFrame({"image": [p.read_bytes() for p in tiny_model.images]})),
        expected,
    )
    embeddings = pd.DataFrame({"embedding": [row.tolist() for row in tiny_model.features.numpy()]})
    _check(model.predict(embeddings), expected)

    dim = tiny_model.features.shape[1]
    with pytest.raises(
        Exception, match=rf"row 0: embedding has shape \({dim - 1},\); the model expects \({dim},\)"
    ):
        model.predict(pd.DataFrame({"embedding": [[0.5] * (dim - 1)]}))
    with pytest.raises(Exception, match="non-finite"):
        model.predict(pd.DataFrame({"embedding": [[float("nan")] * dim]}))
    with pytest.raises(Exception, match="row 0: image is not a usable image"):
        model.predict(pd.DataFrame({"image": [b"definitely not a png"]}))
    with pytest.raises(Exception, match="exactly one of the columns"):
        model.predict(pd.DataFrame({"pixels": [1.0]}))


def test_list_images_skips_links_out_of_the_folder(tmp_path):
    inside, outside = tmp_path / "in", tmp_path / "out"
    (inside / "sub").mkdir(parents=True)
    outside.mkdir()
    (inside / "sub" / "a.PNG").write_bytes(b"x")
    (inside / "notes.txt").write_text("x")
    (outside / "b.png").write_bytes(b"x")
    (inside / "link.png").symlink_to(outside / "b.png")
    assert [p.name for p in list_images(inside)] == ["a.PNG"]
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "nope")


def test_knn_is_served_from_the_bundled_bank(tiny_model, tmp_path):
    """With a bank, the ``knn`` column is ood.scores.knn of the method's embeddings against it;
    calibrated on knn, ``score`` and ``is_unknown`` follow it."""
    embeddings = pd.DataFrame({"embedding": [row.tolist() for row in tiny_model.features.numpy()]})
    inputs = ScoreInputs(
        tiny_model.method.logits(tiny_model.features).double().numpy(),
        tiny_model.logit_scale,
        tiny_model.method.embed(tiny_model.features).double().numpy(),
        tiny_model.knn_bank.double().numpy(),
    )
    expected = knn(inputs, k=2)
    assert len(np.unique(expected)) == len(expected)  # distinct: a wrong bank or k would show

    with_bank = load_predictor(tiny_model.write_bundle(tmp_path / "energy", knn_k=2))
    predicted = with_bank.predict(embeddings)
    assert list(predicted.columns) == [
        "label",
        "class_name",
        "score",
        "energy",
        "knn",
        "is_unknown",
    ]
    np.testing.assert_allclose(predicted["knn"], expected, rtol=1e-6)
    np.testing.assert_allclose(predicted["score"], predicted["energy"])  # calibrated on energy

    threshold = float(np.median(expected))
    on_knn = load_predictor(
        tiny_model.write_bundle(
            tmp_path / "knn", knn_k=2, score="knn", score_params={"k": 2}, threshold=threshold
        )
    ).predict(embeddings)
    np.testing.assert_allclose(on_knn["score"], expected, rtol=1e-6)
    assert on_knn["is_unknown"].tolist() == (expected < threshold).tolist()
    assert 0 < on_knn["is_unknown"].sum() < len(expected)

    without = load_predictor(tiny_model.write_bundle(tmp_path / "plain")).predict(embeddings)
    assert "knn" not in without.columns


def test_bundle_refuses_knn_without_a_usable_bank(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="knn score needs its ID feature bank"):
        tiny_model.write_bundle(tmp_path / "a", score="knn", score_params={"k": 1})
    rows = len(tiny_model.knn_bank)
    with pytest.raises(ParameterError, match=rf"knn_params.k.*<= the KNN bank size \({rows} "):
        tiny_model.write_bundle(tmp_path / "b", knn_k=rows + 1)
