"""Predict every image of a folder with a served model, in batches, and write a CSV.

The command line is ``croft-pipeline predict`` (:mod:`croft_pipeline.tools.console`). A file the
model refuses (not an image, unreadable) becomes a row with its ``error`` and empty prediction
columns, or with ``strict`` stops the run before anything is written. Rows are numbered in the
sorted file list, in the CSV and in every message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

import croft_pipeline  # noqa: F401  (offline defaults before MLflow loads)
from croft_pipeline.common.files import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_BATCH_SIZE = 64
ERROR_COLUMN = "error"  # why the model refused the file; empty for a predicted row
NULLABLE = {"label": "Int64", "is_unknown": "boolean"}  # empty, not NaN, in an error row

Predict = Callable[[pd.DataFrame], pd.DataFrame]


class BadImageError(ValueError):
    """``strict``: the first file the model refused; the message names its row, path and why."""


@dataclass(frozen=True)
class FolderPredictions:
    """The written table (``path`` relative to the folder, the model's columns, ``error``) and
    the seconds the predictions took (the MLflow load excluded; CLIP loads in the first batch)."""

    table: pd.DataFrame
    seconds: float

    @property
    def errors(self) -> pd.DataFrame:
        """The rows of the files the model refused."""
        return self.table[self.table[ERROR_COLUMN].notna()]

    def summary(self, out: str | os.PathLike) -> str:
        """One line: predicted (known / unknown), errors, throughput, the CSV."""
        errors = len(self.errors)
        count = len(self.table) - errors
        unknown = int(self.table["is_unknown"].sum()) if "is_unknown" in self.table else 0
        share = f" ({unknown / count:.1%})" if count else ""
        rate = count / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"{count} predicted: {count - unknown} known, {unknown} unknown{share}; "
            f"{errors} error{'' if errors == 1 else 's'}; {rate:.1f} images/s; written to {out}"
        )


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); links that leave the folder are skipped."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"--images {folder}: not a folder")
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and path.resolve().is_relative_to(root)
    ]


def refusal_reason(error: Exception) -> str | None:
    """The model's one-line reason when ``error`` is it refusing its input (a bad file), else
    None (a failure of the model itself).

    Told by MLflow error code and the ``reason`` field of ``serving.pyfunc.RefusedInput``, not
    by class: the loaded model's ``croft_pipeline`` is the copy in its ``code/`` folder.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

    reason = getattr(error, "reason", None)
    code = ErrorCode.Name(INVALID_PARAMETER_VALUE)  # RefusedInput's
    refused = isinstance(error, MlflowException) and error.error_code == code
    return reason if refused and isinstance(reason, str) else None


def predict_rows(predict: Predict, batch: pd.DataFrame, strict: bool = False) -> pd.DataFrame:
    """``predict(batch)`` with an ``error`` column; when the model refuses the batch, its halves
    are predicted in turn until each refused row stands alone with the model's reason.

    ``strict``: the first refusal raises :class:`BadImageError` instead.
    """
    try:
        predicted = predict(batch)
    except Exception as error:
        reason = refusal_reason(error)
        if reason is None:
            raise
        if strict:
            raise BadImageError(
                f"{reason} (--strict: stopped at the first bad file, nothing written)"
            ) from None
        if len(batch) == 1:
            return pd.DataFrame({ERROR_COLUMN: [reason]}, index=batch.index)
        middle = len(batch) // 2
        halves = (batch.iloc[:middle], batch.iloc[middle:])
        return pd.concat([predict_rows(predict, half) for half in halves])
    return predicted.set_axis(batch.index).assign(**{ERROR_COLUMN: None})


def predict_files(
    predict: Predict,
    files: list[Path],
    batch_size: int = DEFAULT_BATCH_SIZE,
    strict: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """Every file's row (index: its position in ``files``), ``batch_size`` files per call."""
    frame = pd.DataFrame({"path": [str(path) for path in files]})
    parts = []
    with tqdm(total=len(files), unit="img", desc="predict", disable=not progress) as bar:
        for first in range(0, len(files), batch_size):
            batch = frame.iloc[first : first + batch_size]
            parts.append(predict_rows(predict, batch, strict))
            bar.update(len(batch))
    table = pd.concat(parts)
    columns = [c for c in table.columns if c != ERROR_COLUMN] + [ERROR_COLUMN]
    nullable = {c: t for c, t in NULLABLE.items() if c in table}
    return table[columns].astype(nullable)


def predict_folder(
    model_uri: str,
    images: str | os.PathLike,
    out: str | os.PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    strict: bool = False,
) -> FolderPredictions:
    """Predict every image under ``images`` with ``model_uri``, ``batch_size`` at a time; write
    the table to ``out`` (atomically, once all are predicted) and return it.

    ``strict``: the first refused file raises :class:`BadImageError` and nothing is written.
    """
    from croft_pipeline.serving.pyfunc import load_in_process

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    files = list_images(images)
    if not files:
        raise FileNotFoundError(f"no image files ({sorted(IMAGE_SUFFIXES)}) under {images}")
    root = Path(images).resolve()
    # The operator named this folder: its files, and only they, may be read by path.
    model = load_in_process(model_uri, model_config={"allowed_roots": [str(root)]})
    start = time.perf_counter()
    rows = predict_files(model.predict, files, batch_size, strict, progress)
    seconds = time.perf_counter() - start
    table = rows.reset_index(drop=True)
    table.insert(0, "path", [p.relative_to(root).as_posix() for p in files])
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    return FolderPredictions(table, seconds)
