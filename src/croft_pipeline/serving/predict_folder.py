"""Predict every image of a folder with a served model, in batches, and write a CSV.

The command line is ``croft-pipeline predict`` (:mod:`croft_pipeline.tools.console`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

import croft_pipeline  # noqa: F401  (offline defaults before MLflow loads)
from croft_pipeline.common.files import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class FolderPredictions:
    """The written table (``path`` relative to the folder, then the model's columns) and the
    seconds the predictions took (the MLflow load excluded; CLIP loads in the first batch)."""

    table: pd.DataFrame
    seconds: float

    def summary(self) -> str:
        """One line: images, known / unknown counts, throughput."""
        count, unknown = len(self.table), int(self.table["is_unknown"].sum())
        rate = count / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"{count} images: {count - unknown} known, {unknown} unknown "
            f"({unknown / count:.1%}); {rate:.1f} images/s"
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


def predict_folder(
    model_uri: str,
    images: str | os.PathLike,
    out: str | os.PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> FolderPredictions:
    """Predict every image under ``images`` with ``model_uri``, ``batch_size`` at a time; write
    the table to ``out`` (atomically, once all are predicted) and return it."""
    import mlflow.pyfunc

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    files = list_images(images)
    if not files:
        raise FileNotFoundError(f"no image files ({sorted(IMAGE_SUFFIXES)}) under {images}")
    root = Path(images).resolve()
    # The operator named this folder: its files, and only they, may be read by path.
    model = mlflow.pyfunc.load_model(model_uri, model_config={"allowed_roots": [str(root)]})
    parts, start = [], time.perf_counter()
    with tqdm(total=len(files), unit="img", desc="predict", disable=not progress) as bar:
        for first in range(0, len(files), batch_size):
            batch = files[first : first + batch_size]
            parts.append(model.predict(pd.DataFrame({"path": [str(path) for path in batch]})))
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    table = pd.concat(
        [
            pd.DataFrame({"path": [p.relative_to(root).as_posix() for p in files]}),
            pd.concat(parts, ignore_index=True),
        ],
        axis=1,
    )
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    return FolderPredictions(table, seconds)
