"""A refused request never comes back in the answer: the model's messages name a path, a column
or a row by a bounded excerpt and never quote image bytes or embedding values, in process and
behind MLflow's REST server."""

from __future__ import annotations

import pandas as pd
import pytest

from croft_pipeline.serving.inputs import (
    SHOWN_CHARACTERS,
    InputPolicy,
    InvalidInputError,
    embeddings_from,
    images_from,
    input_column,
)
from tests.serving.test_rest_server import _refused, server  # noqa: F401  (the fixture)

HUGE = 1_000_000  # characters a client sends where the model expects a short value
BOUND = 2 * SHOWN_CHARACTERS + 1000  # a message's most characters, whatever was sent


def _message(call) -> str:
    with pytest.raises(InvalidInputError) as error:
        call()
    return str(error.value)


def test_messages_never_quote_the_input_whole(tmp_path):
    policy = InputPolicy(allowed_roots=(tmp_path.resolve(),))
    long_path = str(tmp_path / ("x" * HUGE))
    long_text = "7" * HUGE + "a"
    messages = {
        "embedding text": _message(
            lambda: embeddings_from(pd.DataFrame({"embedding": [[long_text, 1.0]]}), 2)
        ),
        "path outside": _message(
            lambda: list(images_from(pd.DataFrame({"path": ["/" + "y" * HUGE]}), "path", policy))
        ),
        "path inside": _message(
            lambda: list(images_from(pd.DataFrame({"path": [long_path]}), "path", policy))
        ),
        "columns": _message(
            lambda: input_column(pd.DataFrame({f"c{i}" * 50: [1] for i in range(10_000)}))
        ),
        "index": _message(
            lambda: embeddings_from(pd.DataFrame({"embedding": [[1.0]]}, index=["z" * HUGE]), 2)
        ),
    }
    assert {name: len(text) < BOUND for name, text in messages.items()} == dict.fromkeys(
        messages, True
    )
    assert (
        messages["embedding text"] == "row 0: embedding is not numeric (send a list of 2 numbers)"
    )
    assert f"({HUGE + len(str(tmp_path)) + 1} characters)" in messages["path inside"]
    assert "... 9992 more]" in messages["columns"]


@pytest.mark.slow
def test_rest_answers_to_huge_bad_values_are_one_short_line(server):  # noqa: F811
    for body in (
        {"dataframe_records": [{"embedding": ["a" * HUGE]}]},
        {"dataframe_records": [{"path": "/" + "p" * HUGE}]},
    ):
        assert len(_refused(server, body)) < BOUND
