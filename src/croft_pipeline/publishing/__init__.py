"""Publishing a trained model: the quality gates (:mod:`gates`), the served bundle and its
registration in the MLflow registry with aliases (:mod:`publish`, :mod:`registry`). What ships
inside the MLflow model is :mod:`croft_pipeline.serving`."""
