"""Serving input validation: clear errors for wrong columns, dimensions, values and bytes; what a
request may make the model read (allowed roots, the size cap)."""

import base64
import io
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from croft_pipeline.serving.inputs import (
    DEFAULT_MAX_INPUT_BYTES,
    InputPolicy,
    InputPolicyError,
    InvalidInputError,
    embeddings_from,
    images_from,
    input_column,
)


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (8, 6), (10, 20, 30, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode(column: str, value, policy: InputPolicy | None = None) -> list[Image.Image]:
    frame = pd.DataFrame({column: [value]})
    return list(images_from(frame, column, policy or InputPolicy()))


def test_input_column():
    assert input_column(pd.DataFrame({"path": ["a.png"]})) == "path"
    assert input_column(pd.DataFrame({"embedding": [[1.0]]})) == "embedding"
    with pytest.raises(ValueError, match=r"exactly one of the columns.*got columns \['foo'\]"):
        input_column(pd.DataFrame({"foo": [1]}))
    with pytest.raises(ValueError, match=r"got columns \['path', 'image'\]"):
        input_column(pd.DataFrame({"path": ["a"], "image": [b""]}))
    with pytest.raises(ValueError, match=r"got columns \['path', 'extra'\]"):
        input_column(pd.DataFrame({"path": ["a"], "extra": [1]}))
    with pytest.raises(InvalidInputError, match="must be a pandas DataFrame"):
        input_column(np.zeros((2, 3)))


def test_embeddings_are_checked_row_by_row():
    frame = pd.DataFrame({"embedding": [[1.0, 2.0, 3.0], np.array([4.0, 5.0, 6.0])]})
    assert embeddings_from(frame, 3).tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    with pytest.raises(
        ValueError, match=r"row 1: embedding has shape \(2,\); the model expects \(3,\)"
    ):
        embeddings_from(pd.DataFrame({"embedding": [[1.0, 2.0, 3.0], [1.0, 2.0]]}), 3)
    with pytest.raises(ValueError, match="row 0: embedding contains non-finite values"):
        embeddings_from(pd.DataFrame({"embedding": [[1.0, np.nan, 3.0]]}), 3)
    with pytest.raises(ValueError, match="row 0: embedding contains non-finite"):
        embeddings_from(pd.DataFrame({"embedding": [[1.0, np.inf, 3.0]]}), 3)
    with pytest.raises(InvalidInputError, match="row 0: embedding is not numeric"):
        embeddings_from(pd.DataFrame({"embedding": [["a", "b", "c"]]}), 3)


def test_images_decode_from_bytes_base64_and_allowed_paths(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(_png_bytes())
    decoded = (
        _decode("image", _png_bytes())
        + _decode("image", base64.b64encode(_png_bytes()).decode())
        + _decode("image", base64.encodebytes(_png_bytes()).decode())  # MLflow's client: MIME lines
        + _decode("path", str(path), InputPolicy(allowed_roots=(tmp_path.resolve(),)))
    )
    for image in decoded:
        assert image.mode == "RGB" and image.size == (8, 6)
        # Half-transparent (10, 20, 30) over white, as the embed pipeline decodes it.
        assert all(
            abs(a - b) <= 1 for a, b in zip(image.getpixel((0, 0)), (132, 137, 142), strict=True)
        )


def test_bad_images_raise_clear_errors(tmp_path):
    allowed = InputPolicy(allowed_roots=(tmp_path.resolve(),))
    with pytest.raises(InvalidInputError, match="row 0: image is not a usable image: not an image"):
        _decode("image", b"not an image")
    with pytest.raises(InvalidInputError, match="row 0: image is not valid base64"):
        _decode("image", "!!!not base64")
    with pytest.raises(
        InvalidInputError, match="row 0: image must be bytes or base64 text, got int"
    ):
        _decode("image", 3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    with pytest.raises(
        InvalidInputError, match=r"row 0: path '.*broken\.png' is not a usable image: not an image"
    ):
        _decode("path", str(broken), allowed)
    with pytest.raises(InvalidInputError, match=r"row 0: path '.*missing\.png' cannot be read"):
        _decode("path", str(tmp_path / "missing.png"), allowed)
    with pytest.raises(
        InvalidInputError, match=r"row 0: path .* cannot be read \(Is a directory\)"
    ):
        _decode("path", str(tmp_path), allowed)
    os.mkfifo(tmp_path / "fifo.png")  # opened without blocking, refused from its type
    with pytest.raises(InvalidInputError, match=r"row 0: path .*fifo\.png' is not a regular file"):
        _decode("path", str(tmp_path / "fifo.png"), allowed)
    with pytest.raises(
        InvalidInputError, match="row 0: path must be a non-empty string, got NoneType"
    ):
        _decode("path", None, allowed)


def test_paths_are_refused_unless_under_an_allowed_root(tmp_path):
    """No roots: no path is read. With roots, a path that leaves them (``..``, a link) is refused
    in the same words whether or not it exists."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.png").write_bytes(_png_bytes())
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "ok.png").write_bytes(_png_bytes())
    with pytest.raises(
        InvalidInputError, match=r"row 0: path input is off .*allowed_roots is empty"
    ):
        _decode("path", str(root / "ok.png"))
    policy = InputPolicy.from_model_config({"allowed_roots": [str(root)]})
    assert len(_decode("path", str(root / "ok.png"), policy)) == 1
    refused = {}
    for name in ["../outside/secret.png", "link.png", "../outside/missing.png", "/etc/shadow"]:
        with pytest.raises(InvalidInputError) as error:
            _decode("path", os.path.join(root, name), policy)
        refused[name] = str(error.value).replace(repr(os.path.join(root, name)), "<path>")
    assert set(refused.values()) == {
        "row 0: path <path> is outside the allowed roots (model config allowed_roots)"
    }


def test_bytes_are_capped_before_decoding(tmp_path):
    cap = 1000
    policy = InputPolicy(allowed_roots=(tmp_path.resolve(),), max_input_bytes=cap)
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (cap + 1))
    with pytest.raises(
        InvalidInputError,
        match=r"row 0: path .* is 1001 bytes, over the cap of 1000 bytes \(model config max_input_bytes\)",
    ):
        _decode("path", str(big), policy)
    with pytest.raises(InvalidInputError, match="row 0: image is 1001 bytes, over the cap"):
        _decode("image", b"\0" * (cap + 1), policy)
    # Base64 text is refused by its length alone: this text is not even valid base64.
    with pytest.raises(
        InvalidInputError,
        match=r"row 0: image is 5000 base64 characters, more than the \d+ that encode the cap of 1000 bytes",
    ):
        _decode("image", "!" * 5000, policy)
    # Text within the length bound that decodes to more than the cap is refused after decoding.
    with pytest.raises(InvalidInputError, match="row 0: image is 1002 bytes, over the cap"):
        _decode("image", base64.b64encode(b"\0" * (cap + 2)).decode(), policy)


def test_input_policy_from_model_config():
    assert InputPolicy.from_model_config(None) == InputPolicy((), DEFAULT_MAX_INPUT_BYTES)
    policy = InputPolicy.from_model_config(
        {"allowed_roots": ["/srv/x/../images"], "max_input_bytes": 5}
    )
    assert policy.allowed_roots[0].as_posix() == "/srv/images" and policy.max_input_bytes == 5
    assert InputPolicy.from_model_config(policy.as_model_config()) == policy
    with pytest.raises(InputPolicyError, match="allowed_roots must be a list of absolute folders"):
        InputPolicy.from_model_config({"allowed_roots": ["relative/dir"]})
    with pytest.raises(InputPolicyError, match="allowed_roots must be a list"):
        InputPolicy.from_model_config({"allowed_roots": "/srv"})
    with pytest.raises(InputPolicyError, match="max_input_bytes must be a positive integer"):
        InputPolicy.from_model_config({"max_input_bytes": 0})
    with pytest.raises(InputPolicyError, match=r"keys \['roots'\] are unknown"):
        InputPolicy.from_model_config({"roots": []})
