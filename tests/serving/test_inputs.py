"""Serving input validation: clear errors for wrong columns, dimensions, values and bytes."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from croft_pipeline.serving.inputs import embeddings_from, images_from, input_column


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (8, 6), (10, 20, 30, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_input_column():
    assert input_column(pd.DataFrame({"path": ["a.png"]})) == "path"
    assert input_column(pd.DataFrame({"embedding": [[1.0]]})) == "embedding"
    with pytest.raises(ValueError, match=r"exactly one of the columns.*got columns \['foo'\]"):
        input_column(pd.DataFrame({"foo": [1]}))
    with pytest.raises(ValueError, match=r"got columns \['path', 'image'\]"):
        input_column(pd.DataFrame({"path": ["a"], "image": [b""]}))
    with pytest.raises(ValueError, match=r"got columns \['path', 'extra'\]"):
        input_column(pd.DataFrame({"path": ["a"], "extra": [1]}))
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        input_column(np.zeros((2, 3)))


def test_embeddings_are_checked_row_by_row():
    frame = pd.DataFrame({"embedding": [[1.0, 2.0, 3.0], np.array([4.0, 5.0, 6.0])]})
    assert embeddings_from(frame, 3).tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    with pytest.raises(ValueError, match=r"row 1 has shape \(2,\); the model expects \(3,\)"):
        embeddings_from(pd.DataFrame({"embedding": [[1.0, 2.0, 3.0], [1.0, 2.0]]}), 3)
    with pytest.raises(ValueError, match="row 0 contains non-finite values"):
        embeddings_from(pd.DataFrame({"embedding": [[1.0, np.nan, 3.0]]}), 3)
    with pytest.raises(ValueError, match="row 0 contains non-finite"):
        embeddings_from(pd.DataFrame({"embedding": [[1.0, np.inf, 3.0]]}), 3)
    with pytest.raises(ValueError, match="row 0 is not numeric"):
        embeddings_from(pd.DataFrame({"embedding": [["a", "b", "c"]]}), 3)


def test_images_decode_from_bytes_and_paths(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(_png_bytes())
    from_bytes = list(images_from(pd.DataFrame({"image": [_png_bytes()]}), "image"))
    from_path = list(images_from(pd.DataFrame({"path": [str(path)]}), "path"))
    for image in from_bytes + from_path:
        assert image.mode == "RGB" and image.size == (8, 6)
        # Half-transparent (10, 20, 30) over white, as the embed pipeline decodes it.
        assert all(
            abs(a - b) <= 1 for a, b in zip(image.getpixel((0, 0)), (132, 137, 142), strict=True)
        )


def test_bad_images_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="image bytes of row 0 cannot be decoded"):
        list(images_from(pd.DataFrame({"image": [b"not an image"]}), "image"))
    with pytest.raises(ValueError, match="image of row 0 must be bytes"):
        list(images_from(pd.DataFrame({"image": ["a string"]}), "image"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    with pytest.raises(
        ValueError, match=r"cannot decode image of row 0: .*broken\.png: not an image"
    ):
        list(images_from(pd.DataFrame({"path": [str(broken)]}), "path"))
    with pytest.raises(ValueError, match=r"cannot decode image of row 0: .*missing\.png"):
        list(images_from(pd.DataFrame({"path": [str(tmp_path / "missing.png")]}), "path"))
