"""score: every OOD score of every evaluated sample, threshold-free metrics and intervals."""

from croft_pipeline.pipelines.score.pipeline import create_pipeline

__all__ = ["create_pipeline"]
