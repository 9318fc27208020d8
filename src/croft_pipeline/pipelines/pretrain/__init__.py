"""pretrain: the offline default CLIP (trained once on EmojiShift captions), or a configured one."""

from croft_pipeline.pipelines.pretrain.pipeline import create_pipeline

__all__ = ["create_pipeline"]
