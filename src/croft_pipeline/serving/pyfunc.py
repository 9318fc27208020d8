"""The MLflow pyfunc wrapper: a thin shell around :class:`CroftPredictor`.

Logged as "models from code" (``model_code.py``), so loading it runs code from the installed
package and never unpickles anything.
"""

from collections.abc import Mapping

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema
from safetensors.torch import load_file

from croft_pipeline.serving.bundle import load_predictor


class CroftClipModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a ``path``, ``image`` (bytes) or ``embedding`` column.

    Output per row: ``label``, ``class_name``, ``score``, ``energy``, ``is_unknown``.
    """

    def load_context(self, context) -> None:
        self._predictor = load_predictor(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self._predictor.predict(model_input)


def model_signature() -> ModelSignature:
    """One of three optional input columns; the five output columns."""
    inputs = Schema(
        [
            ColSpec(DataType.string, "path", required=False),
            ColSpec(DataType.binary, "image", required=False),
            ColSpec(Array(DataType.double), "embedding", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec(DataType.long, "label"),
            ColSpec(DataType.string, "class_name"),
            ColSpec(DataType.double, "score"),
            ColSpec(DataType.double, "energy"),
            ColSpec(DataType.boolean, "is_unknown"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(artifacts: Mapping[str, str]) -> pd.DataFrame:
    """An embedding-input example (the first class text feature: the right dimension)."""
    text_features = load_file(artifacts["text_features"])["text_features"]
    return pd.DataFrame({"embedding": [text_features[0].double().tolist()]})
