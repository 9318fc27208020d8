"""calibrate: the deploy threshold of every method and seed, on ID validation only."""

from croft_pipeline.pipelines.calibrate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
