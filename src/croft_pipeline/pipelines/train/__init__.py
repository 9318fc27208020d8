"""train: CRoFT and the baselines on cached features, then the open-set threshold."""

from croft_pipeline.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
