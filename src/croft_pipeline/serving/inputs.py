"""Validate and decode the serving input: a DataFrame of image paths, image bytes or embeddings.

What a request may make the model read is an :class:`InputPolicy`, set by whoever loads the
model (its MLflow model config), never by the request: image bytes up to ``max_input_bytes``,
checked before anything is decoded, and files only under ``allowed_roots`` (none by default).
A refusal never echoes the input: it names a path or a column by at most ``SHOWN_CHARACTERS``
characters, and never shows image bytes or embedding values.
"""

from __future__ import annotations

import binascii
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from croft_pipeline.data.images import ImageDecodeError, decode_bytes

INPUT_COLUMNS = ("path", "image", "embedding")
DEFAULT_MAX_INPUT_BYTES = 20 * 2**20  # one image's bytes (a file, or base64 once decoded)
SHOWN_CHARACTERS = 256  # of a path or column name in a message (a real path is shorter)
SHOWN_COLUMNS = 8  # column names listed in a message
REQUEST_FORMATS = (
    'send one record per image, e.g. {"dataframe_records": [{"image": "<base64>"}]}, '
    '{"dataframe_split": {"columns": ["embedding"], "data": [[[...]]]}} or '
    '{"inputs": [{"path": "/allowed/root/a.png"}]}'
)


class InvalidInputError(ValueError):
    """A request the model refuses; the message is one line naming the row and the rule."""


class InputPolicyError(ValueError):
    """A model config whose input policy is unusable; the message names the key."""


@dataclass(frozen=True)
class InputPolicy:
    """What requests may make the model read (``allowed_roots`` empty: no paths at all)."""

    allowed_roots: tuple[Path, ...] = ()
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any] | None) -> InputPolicy:
        """The policy of an MLflow model config (``allowed_roots``, ``max_input_bytes``)."""
        config = dict(config or {})
        unknown = sorted(set(config) - {"allowed_roots", "max_input_bytes"})
        if unknown:
            raise InputPolicyError(
                f"model config keys {unknown} are unknown; it takes allowed_roots, max_input_bytes"
            )
        roots = config.get("allowed_roots") or []
        if isinstance(roots, str) or not all(
            isinstance(r, str) and os.path.isabs(r) for r in roots
        ):
            raise InputPolicyError(
                f"model config allowed_roots must be a list of absolute folders, got {roots!r}"
            )
        cap = config.get("max_input_bytes", DEFAULT_MAX_INPUT_BYTES)
        if isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0:
            raise InputPolicyError(
                f"model config max_input_bytes must be a positive integer, got {cap!r}"
            )
        return cls(tuple(Path(root).resolve() for root in roots), cap)

    def as_model_config(self) -> dict[str, Any]:
        """The MLflow model config that reads back as this policy."""
        return {
            "allowed_roots": [str(root) for root in self.allowed_roots],
            "max_input_bytes": self.max_input_bytes,
        }


def input_column(frame: object) -> str:
    """The one input column of ``frame`` (``path``, ``image`` or ``embedding``)."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(
            f"model input must be a pandas DataFrame with one column of {INPUT_COLUMNS}, "
            f"got {type(frame).__name__}"
        )
    present = [column for column in frame.columns if column in INPUT_COLUMNS]
    unknown = [str(column) for column in frame.columns if column not in INPUT_COLUMNS]
    if len(present) != 1 or unknown:
        raise InvalidInputError(
            f"model input must have exactly one of the columns {list(INPUT_COLUMNS)} "
            f"(image paths, image bytes, or embeddings); got columns {_columns(frame)} "
            f"(a registered model drops columns outside its signature before this check); "
            f"{REQUEST_FORMATS}"
        )
    return present[0]


def embeddings_from(frame: pd.DataFrame, dim: int) -> torch.Tensor:
    """The ``embedding`` column as a ``[N, dim]`` float32 tensor; bad rows are named."""
    rows = []
    for index, value in zip(frame.index, frame["embedding"], strict=True):
        try:
            row = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):  # numpy's message quotes the value: not echoed
            raise InvalidInputError(
                f"{_row(index)}: embedding is not numeric (send a list of {dim} numbers)"
            ) from None
        if row.shape != (dim,):
            raise InvalidInputError(
                f"{_row(index)}: embedding has shape {row.shape}; the model expects ({dim},)"
            )
        if not np.isfinite(row).all():
            raise InvalidInputError(
                f"{_row(index)}: embedding contains non-finite values (NaN or inf)"
            )
        rows.append(row)
    if not rows:
        return torch.empty(0, dim)
    return torch.as_tensor(np.stack(rows), dtype=torch.float32)


def images_from(frame: pd.DataFrame, column: str, policy: InputPolicy) -> Iterator[Image.Image]:
    """Decoded RGB images of the ``path`` or ``image`` column, in row order, within ``policy``.

    Decoded as the embed pipeline decodes (upright RGB, transparency over white).
    """
    read = _path_bytes if column == "path" else _image_bytes
    for index, value in zip(frame.index, frame[column], strict=True):
        data = read(index, value, policy)
        what = f"path {_shown(value)}" if column == "path" else column
        try:
            yield decode_bytes(data)[0]
        except ImageDecodeError as error:
            raise InvalidInputError(
                f"{_row(index)}: {what} is not a usable image: {error}"
            ) from None


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut to :data:`SHOWN_CHARACTERS` (a request's text is never
    echoed whole)."""
    if len(text) <= SHOWN_CHARACTERS:
        return repr(text)
    return f"{text[:SHOWN_CHARACTERS]!r}... ({len(text)} characters)"


def _row(index) -> str:
    """``row <index>`` (the request's own index, cut like any text of the request)."""
    return (
        f"row {int(index)}" if isinstance(index, int | np.integer) else f"row {_shown(str(index))}"
    )


def _columns(frame: pd.DataFrame) -> str:
    """The frame's column names for a message: the first :data:`SHOWN_COLUMNS`, each cut."""
    names = [_shown(str(column)) for column in frame.columns[:SHOWN_COLUMNS]]
    more = len(frame.columns) - SHOWN_COLUMNS
    return "[" + ", ".join(names) + (f", ... {more} more" if more > 0 else "") + "]"


def _path_bytes(index, value, policy: InputPolicy) -> bytes:
    """The file's bytes if it lies under an allowed root (after resolving links and ``..``)."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(
            f"{_row(index)}: path must be a non-empty string, got {type(value).__name__}; "
            f"{REQUEST_FORMATS}"
        )
    if not policy.allowed_roots:
        raise InvalidInputError(
            f"{_row(index)}: path input is off for this model (model config allowed_roots is "
            "empty); send the image bytes as base64 in the image column"
        )
    try:
        resolved = Path(value).resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        resolved = None
    if resolved is None or not any(resolved.is_relative_to(r) for r in policy.allowed_roots):
        raise InvalidInputError(  # the same words whether or not the file exists
            f"{_row(index)}: path {_shown(value)} is outside the allowed roots "
            "(model config allowed_roots)"
        )
    what = f"{_row(index)}: path {_shown(value)}"
    try:
        return _read_capped(resolved, policy.max_input_bytes, what)
    except OSError as error:
        raise InvalidInputError(f"{what} cannot be read ({error.strerror or error})") from None


def _read_capped(path: Path, cap: int, what: str) -> bytes:
    """A regular file's bytes, refused by its size before reading; never more than cap + 1 read."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not block
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(f"{what} is not a regular file")
        if info.st_size > cap:
            raise _over_cap(what, str(info.st_size), cap)
        data = file.read(cap + 1)
    if len(data) > cap:  # the file grew after its size was read
        raise _over_cap(what, f"more than {cap}", cap)
    return data


def _image_bytes(index, value, policy: InputPolicy) -> bytes:
    """Bytes as given, or decoded from base64 text (REST), each checked against the cap first."""
    cap, what = policy.max_input_bytes, f"{_row(index)}: image"
    if isinstance(value, str):
        if len(value) > _base64_length(cap):
            raise InvalidInputError(
                f"{what} is {len(value)} base64 characters, more than the {_base64_length(cap)} "
                f"that encode the cap of {cap} bytes (model config max_input_bytes)"
            )
        try:
            value = binascii.a2b_base64(value.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError) as error:
            raise InvalidInputError(f"{what} is not valid base64 ({error})") from None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidInputError(
            f"{what} must be bytes or base64 text, got {type(value).__name__}; {REQUEST_FORMATS}"
        )
    if len(value) > cap:
        raise _over_cap(what, str(len(value)), cap)
    return bytes(value)


def _over_cap(what: str, size: str, cap: int) -> InvalidInputError:
    return InvalidInputError(
        f"{what} is {size} bytes, over the cap of {cap} bytes (model config max_input_bytes)"
    )


def _base64_length(cap: int) -> int:
    """The most characters base64 of ``cap`` bytes takes, with MIME line breaks (76 per line)."""
    encoded = 4 * -(-cap // 3)
    return encoded + encoded // 76 + 1
