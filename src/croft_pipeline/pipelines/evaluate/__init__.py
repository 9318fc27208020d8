"""The evaluate pipeline."""

from croft_pipeline.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
