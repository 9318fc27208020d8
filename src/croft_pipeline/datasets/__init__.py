"""Kedro datasets of the project (thin wrappers over the Kedro-free savers)."""

from croft_pipeline.datasets.feature_table import FeatureTableDataset
from croft_pipeline.datasets.safetensors_dict import SafetensorsDictDataset

__all__ = ["FeatureTableDataset", "SafetensorsDictDataset"]
