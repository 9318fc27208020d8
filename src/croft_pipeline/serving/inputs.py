"""Validate and decode the serving input: a DataFrame of image paths, image bytes or embeddings."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image

from croft_pipeline.data.images import ImageDecodeError, decode_bytes, load_rgb

INPUT_COLUMNS = ("path", "image", "embedding")


def input_column(frame: object) -> str:
    """The one input column of ``frame`` (``path``, ``image`` or ``embedding``)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"model input must be a pandas DataFrame with one column of {INPUT_COLUMNS}, "
            f"got {type(frame).__name__}"
        )
    present = [column for column in frame.columns if column in INPUT_COLUMNS]
    unknown = [str(column) for column in frame.columns if column not in INPUT_COLUMNS]
    if len(present) != 1 or unknown:
        raise ValueError(
            f"model input must have exactly one of the columns {list(INPUT_COLUMNS)} "
            f"(image paths, image bytes, or embeddings); got columns {list(map(str, frame.columns))} "
            f"(a registered model drops columns outside its signature before this check)"
        )
    return present[0]


def embeddings_from(frame: pd.DataFrame, dim: int) -> torch.Tensor:
    """The ``embedding`` column as a ``[N, dim]`` float32 tensor; bad rows are named."""
    rows = []
    for index, value in zip(frame.index, frame["embedding"], strict=True):
        try:
            row = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"embedding of row {index!r} is not numeric: {error}") from error
        if row.shape != (dim,):
            raise ValueError(
                f"embedding of row {index!r} has shape {row.shape}; the model expects ({dim},)"
            )
        if not np.isfinite(row).all():
            raise ValueError(f"embedding of row {index!r} contains non-finite values (NaN or inf)")
        rows.append(row)
    if not rows:
        return torch.empty(0, dim)
    return torch.as_tensor(np.stack(rows), dtype=torch.float32)


def images_from(frame: pd.DataFrame, column: str) -> Iterator[Image.Image]:
    """Decoded RGB images of the ``path`` or ``image`` (bytes) column, in row order."""
    for index, value in zip(frame.index, frame[column], strict=True):
        yield _decode_path(index, value) if column == "path" else _decode_bytes(index, value)


def _decode_path(index, value) -> Image.Image:
    """Decoded as the embed pipeline decodes (upright RGB, transparency over white)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"path of row {index!r} must be a non-empty string, got {value!r}")
    try:
        return load_rgb(value)
    except ImageDecodeError as error:
        raise ValueError(f"cannot decode image of row {index!r}: {error}") from error


def _decode_bytes(index, value) -> Image.Image:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"image of row {index!r} must be bytes, got {type(value).__name__}")
    try:
        return decode_bytes(bytes(value))[0]
    except ImageDecodeError as error:
        raise ValueError(f"image bytes of row {index!r} cannot be decoded: {error}") from error
