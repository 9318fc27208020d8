"""Serving: the CRoFT model as an MLflow pyfunc, its registration, and folder prediction."""
