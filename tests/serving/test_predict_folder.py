"""``croft-pipeline predict`` on a folder with a bad file among good ones: the bad file gets a row
with its error and the others are predicted, or with ``--strict`` the run stops naming it and
writes nothing; rows are numbered in the whole folder, never within a batch; the CSV appears
whole or not at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from croft_pipeline.serving.predict_folder import (
    ERROR_COLUMN,
    BadImageError,
    predict_files,
    predict_folder,
)
from croft_pipeline.serving.pyfunc import RefusedInput, load_in_process
from tests.serving.test_cli import MODEL, _cli, _register

BAD = "shape_3x.png"  # sorts 5th among the tiny model's shape_0..shape_5.png


class FakeModel:
    """Predicts a file's size as its energy; refuses, as the served model does, the first file
    that is not a PNG, naming its row (the frame's index) and path."""

    def __init__(self):
        self.calls: list[list[int]] = []

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.calls.append(list(frame.index))
        for index, path in frame["path"].items():
            if not Path(path).read_bytes().startswith(b"\x89PNG"):
                raise RefusedInput(f"row {index}: path {path!r} is not a usable image: not one")
        sizes = [float(Path(path).stat().st_size) for path in frame["path"]]
        return pd.DataFrame(
            {"label": 1, "class_name": "circle", "energy": sizes, "is_unknown": False},
            index=range(len(frame)),  # MLflow may hand back another index: rows align by order
        )


def _folder(tmp_path: Path, good: int, bad: tuple[int, ...]) -> list[Path]:
    """``good + len(bad)`` files, sorted by name, the ones at positions ``bad`` not images."""
    files = []
    for position in range(good + len(bad)):
        path = tmp_path / "images" / f"img_{position:02d}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"text" if position in bad else b"\x89PNG" + b"\0" * position)
        files.append(path)
    return files


def test_refused_files_become_error_rows_numbered_in_the_whole_folder(tmp_path):
    files = _folder(tmp_path, good=8, bad=(4, 7))
    model = FakeModel()
    table = predict_files(model.predict, files, batch_size=4)
    assert table.index.tolist() == list(range(10))
    errors = table[ERROR_COLUMN]
    assert errors.notna().tolist() == [i in (4, 7) for i in range(10)]
    for row in (4, 7):
        assert errors[row] == f"row {row}: path {str(files[row])!r} is not a usable image: not one"
    good = table[errors.isna()]
    assert good["energy"].tolist() == [4 + i for i in good.index]  # each file its own row
    assert table.loc[[4, 7], ["label", "class_name", "energy", "is_unknown"]].isna().all().all()
    assert (str(table["label"].dtype), str(table["is_unknown"].dtype)) == ("Int64", "boolean")
    assert list(table.columns)[-1] == ERROR_COLUMN
    # Only the batch that held the bad files was split, in halves down to each bad file.
    assert model.calls == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [4, 5],
        [4],
        [5],
        [6, 7],
        [6],
        [7],
        [8, 9],
    ]


def test_strict_stops_at_the_first_refused_file_naming_its_row_and_path(tmp_path):
    files = _folder(tmp_path, good=8, bad=(6, 7))
    with pytest.raises(BadImageError) as error:
        predict_files(FakeModel().predict, files, batch_size=4, strict=True)
    assert str(error.value).startswith(f"row 6: path {str(files[6])!r} is not a usable image")
    assert "--strict" in str(error.value)


def test_a_failure_of_the_model_itself_is_not_an_error_row(tmp_path):
    def broken(frame):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        predict_files(broken, _folder(tmp_path, good=2, bad=()), batch_size=4)


def test_a_crash_while_writing_leaves_the_last_csv_whole(tmp_path, monkeypatch):
    files = _folder(tmp_path, good=3, bad=(1,))
    out = tmp_path / "out" / "predictions.csv"
    out.parent.mkdir()
    out.write_text("the last good CSV\n")
    monkeypatch.setattr(mlflow.pyfunc, "load_model", lambda uri, model_config: FakeModel())
    written = predict_folder("models:/fake@champion", files[0].parent, out, batch_size=2)
    assert written.summary(out).startswith("3 predicted: 3 known, 0 unknown (0.0%); 1 error; ")
    on_disk = pd.read_csv(out, keep_default_na=False)
    assert on_disk["path"].tolist() == [f.name for f in files]
    assert on_disk.loc[1, ["label", "class_name", "energy", "is_unknown"]].tolist() == [""] * 4
    assert on_disk.loc[0, ["label", "is_unknown", ERROR_COLUMN]].tolist() == ["1", "False", ""]

    out.write_text("the last good CSV\n")

    def half_then_crash(frame, path, **kwargs):
        Path(path).write_text("path,label\nimg_00.png,")
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_crash)
    with pytest.raises(OSError, match="No space left"):
        predict_folder("models:/fake@champion", files[0].parent, out, batch_size=2)
    assert out.read_text() == "the last good CSV\n"
    assert [p.name for p in out.parent.iterdir()] == ["predictions.csv"]  # no temp file left


@pytest.fixture
def folder_with_a_bad_file(tiny_model, tmp_path) -> Path:
    """The tiny model's 6 images and, 5th in sorted order, a file that is not an image."""
    folder = tmp_path / "images"
    shutil.copytree(tiny_model.images[0].parent, folder)
    (folder / BAD).write_text("not an image")
    return folder


def _predict(folder: Path, out: Path, store: str, *extra: str):
    model = f"models:/{MODEL}@champion"
    command = ["predict", "--model", model, "--images", str(folder), "--out", str(out)]
    return _cli(*command, "--batch-size", "4", *extra, store=store)


@pytest.mark.slow
def test_cli_writes_an_error_row_for_a_bad_file_and_predicts_the_rest(
    tiny_model, mlflow_store, tmp_path, folder_with_a_bad_file
):
    registered = _register(tiny_model, tmp_path)
    folder, out = folder_with_a_bad_file, tmp_path / "predictions.csv"
    run = _predict(folder, out, mlflow_store)
    assert run.returncode == 0, run.stderr[-3000:]

    table = pd.read_csv(out)
    names = sorted(p.name for p in folder.iterdir())
    assert table["path"].tolist() == names and names.index(BAD) == 4
    reason = f"row 4: path {str((folder / BAD).resolve())!r} is not a usable image: not an image"
    assert table.loc[4, ERROR_COLUMN].startswith(reason)
    assert table.drop(index=4)[ERROR_COLUMN].isna().all()
    assert table.loc[4].drop(["path", ERROR_COLUMN]).isna().all()  # empty predictions

    good = [folder / name for name in names if name != BAD]
    expected = load_in_process(
        registered["model_uri"], model_config={"allowed_roots": [str(folder.resolve())]}
    ).predict(pd.DataFrame({"path": [str(p.resolve()) for p in good]}))
    predicted = table.drop(index=4).reset_index(drop=True)
    assert list(table.columns) == ["path", *expected.columns, ERROR_COLUMN]
    assert predicted["class_name"].tolist() == expected["class_name"].tolist()
    np.testing.assert_allclose(predicted["energy"], expected["energy"], rtol=1e-5)

    unknown = int(expected["is_unknown"].sum())
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith(f"6 predicted: {6 - unknown} known, {unknown} unknown (")
    assert last.endswith(f"; 1 error; {last.split('; ')[2]}; written to {out}")
    assert f"croft-pipeline predict: {BAD}: {reason}" in run.stderr
    assert "7/7" in run.stderr  # the progress bar went on past the bad file to the end


@pytest.mark.slow
def test_cli_strict_stops_at_the_bad_file_and_writes_nothing(
    tiny_model, mlflow_store, tmp_path, folder_with_a_bad_file
):
    _register(tiny_model, tmp_path)
    out = tmp_path / "out" / "predictions.csv"
    out.parent.mkdir()
    out.write_text("the last good CSV\n")
    run = _predict(folder_with_a_bad_file, out, mlflow_store, "--strict")
    assert run.returncode == 1, run.stderr[-3000:]
    path = str((folder_with_a_bad_file / BAD).resolve())
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith(f"croft-pipeline predict: row 4: path {path!r} is not a usable")
    assert message.endswith("(--strict: stopped at the first bad file, nothing written)")
    assert out.read_text() == "the last good CSV\n" and len(list(out.parent.iterdir())) == 1
