"""MLflow "models from code" entry point of the served CRoFT model (see pyfunc.py)."""

import mlflow.models

from croft_pipeline.serving.pyfunc import CroftClipModel

mlflow.models.set_model(CroftClipModel())
