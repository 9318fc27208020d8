"""The MLflow pyfunc wrapper: a thin shell around :class:`CroftPredictor`.

Logged as "models from code" (``model_code.py``) with the ``croft_pipeline`` package in the
model's ``code/`` folder, so loading it needs no checkout or install of the project and never
unpickles anything. Its MLflow model config is the input policy
(``serving.inputs.InputPolicy``): ``allowed_roots`` and ``max_input_bytes``, set when logged and
overridable by whoever loads or serves it (``load_model(..., model_config=...)``, or the
``SERVING_MODEL_CONFIG`` JSON for ``mlflow models serve``), never by a request.
"""

import json
import sys
from collections.abc import Mapping

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

from croft_pipeline.serving.bundle import bundle_tensors, load_predictor, read_config
from croft_pipeline.serving.inputs import InputPolicy, InvalidInputError
from croft_pipeline.serving.predictor import KNN_COLUMN


def load_in_process(model_uri: str, **kwargs) -> mlflow.pyfunc.PyFuncModel:
    """``mlflow.pyfunc.load_model``, leaving ``sys.path`` as it was.

    MLflow prepends the model's ``code/`` folder to ``sys.path`` for good. In this process the
    package is already imported, but a process spawned later would import the bundle's subset of
    ``croft_pipeline`` instead of the installed one (and miss the modules serving needs none of).
    """
    path = list(sys.path)
    try:
        return mlflow.pyfunc.load_model(model_uri, **kwargs)
    finally:
        sys.path[:] = path


class RefusedInput(MlflowException):
    """An input the model refuses: HTTP 400 whose body carries only this one-line message.

    MLflow's scoring server prefixes the message of an exception raised by ``predict`` with the
    whole input (over many lines); the response here keeps the model's own line.
    """

    def __init__(self, reason: str):
        super().__init__(reason, error_code=INVALID_PARAMETER_VALUE)
        self.reason = reason

    def serialize_as_json(self) -> str:
        return json.dumps({"error_code": self.error_code, "message": self.reason})


class CroftClipModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a ``path``, ``image`` (bytes or base64 text) or ``embedding``
    column. Output per row: ``label``, ``class_name``, ``score``, ``energy``, ``knn`` (when the
    model bundles a KNN bank), ``is_unknown``.
    """

    def load_context(self, context) -> None:
        policy = InputPolicy.from_model_config(context.model_config)
        self._predictor = load_predictor(context.artifacts, input_policy=policy)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        try:
            return self._predictor.predict(model_input)
        except InvalidInputError as error:
            raise RefusedInput(str(error)) from None


def model_signature() -> ModelSignature:
    """One of three optional input columns; the output columns (``knn`` optional).

    ``image`` and ``embedding`` are untyped so that MLflow hands them over as sent: the model
    checks base64 text against the size cap before decoding it, and names the row of any
    malformed value itself.
    """
    inputs = Schema(
        [
            ColSpec(DataType.string, "path", required=False),
            ColSpec(AnyType(), "image", required=False),
            ColSpec(AnyType(), "embedding", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec(DataType.long, "label"),
            ColSpec(DataType.string, "class_name"),
            ColSpec(DataType.double, "score"),
            ColSpec(DataType.double, "energy"),
            ColSpec(DataType.double, KNN_COLUMN, required=False),
            ColSpec(DataType.boolean, "is_unknown"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(artifacts: Mapping[str, str]) -> pd.DataFrame:
    """An embedding-input example (the first class text feature: the right dimension)."""
    tensors = bundle_tensors(artifacts, read_config(artifacts), "text_features")
    return pd.DataFrame({"embedding": [tensors["text_features"][0].double().tolist()]})
