"""The served model: bundle round trip, MLflow pyfunc from the registry, folder prediction."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from croft_pipeline.serving.bundle import load_predictor, write_bundle
from croft_pipeline.serving.inputs import InputPolicy
from croft_pipeline.serving.predict_folder import list_images, main
from croft_pipeline.serving.registry import alias_version, log_and_register
from tests.fixtures.served_model import CLASSES


@pytest.fixture
def artifacts(tiny_model, tmp_path):
    return write_bundle(
        tmp_path / "bundle",
        tiny_model.bundle_config(),
        tiny_model.text_features,
        tiny_model.method.state_dict(),
        tiny_model.checkpoint,
    )


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
        mlflow.pyfunc.load_model("models:/croft-clip-test@candidate").predict(
            pd.DataFrame({"path": [str(tiny_model.images[0])]})
        )
    model = mlflow.pyfunc.load_model(
        "models:/croft-clip-test@candidate", model_config={"allowed_roots": [folder]}
    )
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


def test_predict_folder_cli_writes_a_csv(tiny_model, artifacts, mlflow_store, tmp_path, capsys):
    log_and_register(artifacts, "croft-clip-test", aliases=["candidate", "champion"])
    out = tmp_path / "preds.csv"
    folder = tiny_model.images[0].parent
    code = main(
        [
            "--model",
            "models:/croft-clip-test@champion",
            "--images",
            str(folder),
            "--out",
            str(out),
            "--tracking-uri",
            mlflow_store,
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert table["path"].tolist() == [p.name for p in sorted(tiny_model.images)]
    _check(table.drop(columns="path"), _expected(tiny_model))
    assert f"{len(tiny_model.images)} images" in capsys.readouterr().out


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
