"""Kedro-free CLIP core over open_clip, reused by the pretrain and embed pipelines and by serving.

- :mod:`backend`: ``load_clip`` (model name + hub tag / local checkpoint) -> ``LoadedClip``;
  ``encode_images``, ``encode_texts``, ``encode_class_prompts`` (single template or ensemble).
- :mod:`views`: the center view and seeded augmented views (RandomResizedCrop + flip).
- :mod:`cache` / :mod:`embedding`: the content-addressed feature cache and the cached embedder.
- :mod:`pretrain`, :mod:`checkpoint`, :mod:`default_model`: the offline default CLIP.
- :mod:`zeroshot`: zero-shot accuracy per domain.
- :mod:`model_configs`: the project's open_clip model configs (``src/croft_pipeline/clip/model_configs``).
"""
