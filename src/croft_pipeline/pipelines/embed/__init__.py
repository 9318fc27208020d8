"""embed: image features (center view, A augmented train views) and class text features."""

from croft_pipeline.pipelines.embed.pipeline import create_pipeline

__all__ = ["create_pipeline"]
