"""train: CRoFT and the baselines on cached features, and their predictions."""

from croft_pipeline.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
