"""Predict class, OOD score and ``is_unknown`` for images or embeddings (MLflow-free)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from croft_pipeline.ood import ScoreInputs, apply_threshold, compute_score
from croft_pipeline.serving.inputs import InputPolicy, embeddings_from, images_from, input_column

OUTPUT_COLUMNS = ["label", "class_name", "score", "energy", "is_unknown"]


@dataclass
class CroftPredictor:
    """A fitted method plus its calibrated threshold.

    ``method`` maps raw CLIP image features ``[N, D]`` to logits ``[N, K]`` (the Method contract);
    ``encode_images`` (optional, loaded lazily by the caller) maps PIL images to raw features;
    ``input_policy`` bounds what image input may read (by default: no paths).
    """

    method: object
    class_names: Sequence[str]
    logit_scale: float
    threshold: float
    embed_dim: int
    score: str = "energy"
    score_params: dict = field(default_factory=dict)  # the calibrated score's parameters
    encode_images: Callable[[list], torch.Tensor] | None = None
    batch_size: int = 64
    input_policy: InputPolicy = field(default_factory=InputPolicy)

    def features(self, frame: pd.DataFrame) -> torch.Tensor:
        """Raw CLIP image features of every input row."""
        column = input_column(frame)
        if column == "embedding":
            return embeddings_from(frame, self.embed_dim)
        if self.encode_images is None:
            raise RuntimeError("this predictor has no CLIP image encoder; pass embeddings")
        images = images_from(frame, column, self.input_policy)
        chunks = []
        with tqdm(total=len(frame), unit="img", desc="encode", disable=len(frame) < 256) as bar:
            while batch := [
                image for _, image in zip(range(self.batch_size), images, strict=False)
            ]:
                chunks.append(self.encode_images(batch))
                bar.update(len(batch))
        return torch.cat(chunks) if chunks else torch.empty(0, self.embed_dim)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One output row per input row: OUTPUT_COLUMNS (``score`` is the calibrated score)."""
        features = self.features(frame)
        if len(features) == 0:
            return pd.DataFrame({column: [] for column in OUTPUT_COLUMNS})
        with torch.inference_mode():
            logits = self.method.logits(features).double().cpu().numpy()
        inputs = ScoreInputs(logits, self.logit_scale)
        energy = compute_score("energy", inputs)
        score = compute_score(self.score, inputs, **self.score_params)
        labels = logits.argmax(axis=1)
        return pd.DataFrame(
            {
                "label": labels.astype(np.int64),
                "class_name": [self.class_names[label] for label in labels],
                "score": score,
                "energy": energy,
                "is_unknown": ~apply_threshold(score, self.threshold),
            },
            index=frame.index,
        )
