"""Predict every image of a folder with a registered model and write a CSV.

    python -m croft_pipeline.serving.predict_folder \\
        --model models:/croft-clip@champion --images DIR --out preds.csv
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

import croft_pipeline  # noqa: F401  (offline defaults before MLflow loads)
from croft_pipeline.io_utils import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


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
    model_uri: str, images: str | os.PathLike, out: str | os.PathLike
) -> pd.DataFrame:
    """Predict every image under ``images`` with ``model_uri``; write and return the table."""
    import mlflow.pyfunc

    files = list_images(images)
    if not files:
        raise FileNotFoundError(f"no image files ({sorted(IMAGE_SUFFIXES)}) under {images}")
    root = Path(images).resolve()
    # The operator named this folder: its files, and only they, may be read by path.
    model = mlflow.pyfunc.load_model(model_uri, model_config={"allowed_roots": [str(root)]})
    predictions = model.predict(pd.DataFrame({"path": [str(path) for path in files]}))
    table = pd.concat(
        [
            pd.DataFrame({"path": [p.relative_to(root).as_posix() for p in files]}),
            predictions.reset_index(drop=True),
        ],
        axis=1,
    )
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/croft-clip@champion", help="MLflow model URI")
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
        help=f"MLflow tracking and registry URI (default: $MLFLOW_TRACKING_URI or {DEFAULT_TRACKING_URI})",
    )
    args = parser.parse_args(argv)
    import mlflow

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_registry_uri(args.tracking_uri)
    table = predict_folder(args.model, args.images, args.out)
    print(
        f"{len(table)} images -> {args.out}; "
        f"{int(table['is_unknown'].sum())} flagged unknown ({table['is_unknown'].mean():.1%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
