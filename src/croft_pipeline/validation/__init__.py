"""Data validation with great-expectations (GX Core 1.x).

Public entry points:
- ``validate_ingest(manifest, splits, id_classes, dataset, params, root_dirs) -> report`` runs the
  manifest, splits and candidate-coverage suites; ``report["success"]``, ``report["failure_message"]``
  (the rule and the first offending rows), ``report["suites"]`` (full GX results as JSON).
- ``run_suites({name: (Suite, DataFrame)})``: the generic runner, for other tables (features,
  metrics); ``DataValidationError``: what a gate raises when a report failed (and the manifest, when
  copies of one file carry different classes).
"""

from croft_pipeline.data.errors import DataValidationError
from croft_pipeline.validation.gx_runner import Suite, failure_messages, run_suites
from croft_pipeline.validation.ingest_checks import validate_ingest

__all__ = ["DataValidationError", "Suite", "failure_messages", "run_suites", "validate_ingest"]
