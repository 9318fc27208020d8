"""The ingest pipeline."""

from croft_pipeline.pipelines.ingest.pipeline import create_pipeline

__all__ = ["create_pipeline"]
