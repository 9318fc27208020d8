"""Values of a Kedro ``PartitionedDataset``: a loader per partition when read back from disk."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def partition_value(value: Any) -> Any:
    """The partition's data: call its lazy loader if it has one, else the value itself.

    A node that just produced the partitions hands over the data; a node that reads them from
    the catalog gets ``{partition id: loader}``. Both go through here.
    """
    return value() if callable(value) else value


def partition_reader(partitions: Mapping[str, Any]) -> Callable[[str], Any]:
    """``partition id -> data`` over a partitioned dataset's value (loaders or data)."""
    return lambda partition: partition_value(partitions[partition])
