"""croft-pipeline: CRoFT fine-tuning of CLIP as Kedro pipelines."""

from croft_pipeline.common.offline import apply_offline_defaults

apply_offline_defaults()

__version__ = "0.1.0"
