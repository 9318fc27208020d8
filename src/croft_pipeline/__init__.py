"""croft-pipeline: CRoFT fine-tuning of CLIP as Kedro pipelines."""

from croft_pipeline.common.offline import apply_offline_defaults, quiet_library_warnings

apply_offline_defaults()
quiet_library_warnings()

__version__ = "0.1.0"
