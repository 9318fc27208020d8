"""The project's Kedro datasets (thin wrappers over the Kedro-free savers), in one place."""

from croft_pipeline.datasets.bytes import BytesDataset
from croft_pipeline.datasets.feature_table import FeatureTableDataset
from croft_pipeline.datasets.partitions import partition_reader, partition_value
from croft_pipeline.datasets.project_dir import ProjectDirDataset
from croft_pipeline.datasets.provenance import ProvenanceDataset
from croft_pipeline.datasets.recorded_json import RecordedJSONDataset
from croft_pipeline.datasets.safetensors_dict import SafetensorsDictDataset
from croft_pipeline.datasets.train_summary import TrainSummaryDataset

__all__ = [
    "BytesDataset",
    "FeatureTableDataset",
    "ProjectDirDataset",
    "ProvenanceDataset",
    "RecordedJSONDataset",
    "SafetensorsDictDataset",
    "TrainSummaryDataset",
    "partition_reader",
    "partition_value",
]
