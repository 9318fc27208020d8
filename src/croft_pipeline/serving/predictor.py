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
KNN_COLUMN = "knn"  # after ``energy``, when the model has a KNN bank


@dataclass
class CroftPredictor:
    """A fitted method plus its calibrated threshold.

    ``method`` maps raw CLIP image features ``[N, D]`` to logits ``[N, K]`` (the Method contract);
    ``encode_images`` (optional, loaded lazily by the caller) maps PIL images to raw features;
    ``input_policy`` bounds what image input may read (by default: no paths); ``knn_bank``
    (``[M, D]`` embeddings of ID features, as evaluation's bank) adds the ``knn`` column.
    """

    method: object
    class_names: Sequence[str]
    logit_scale: float
    threshold: float
    embed_dim: int
    score: str = "energy"
    score_params: dict = field(default_factory=dict)  # the calibrated score's parameters
    knn_bank: torch.Tensor | None = None
    knn_params: dict = field(default_factory=dict)  # the knn score's parameters (k)
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

    @property
    def output_columns(self) -> list[str]:
        if self.knn_bank is None:
            return list(OUTPUT_COLUMNS)
        at = OUTPUT_COLUMNS.index("energy") + 1
        return [*OUTPUT_COLUMNS[:at], KNN_COLUMN, *OUTPUT_COLUMNS[at:]]

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One output row per input row: :attr:`output_columns` (``score``: the calibrated one)."""
        features = self.features(frame)
        if len(features) == 0:
            return pd.DataFrame({column: [] for column in self.output_columns})
        inputs = self.score_inputs(features)
        score = compute_score(self.score, inputs, **self.score_params)
        labels = inputs.logits.argmax(axis=1)
        columns = {
            "label": labels.astype(np.int64),
            "class_name": [self.class_names[label] for label in labels],
            "score": score,
            "energy": compute_score("energy", inputs),
            "is_unknown": ~apply_threshold(score, self.threshold),
        }
        if self.knn_bank is not None:
            columns[KNN_COLUMN] = compute_score("knn", inputs, **self.knn_params)
        return pd.DataFrame(columns, index=frame.index)[self.output_columns]

    def score_inputs(self, features: torch.Tensor) -> ScoreInputs:
        """What the scores look at, as evaluation builds it: logits, and with a KNN bank the
        method's embeddings of the features and the bank."""
        with torch.inference_mode():
            logits = self.method.logits(features).double().cpu().numpy()
        if self.knn_bank is None:
            return ScoreInputs(logits, self.logit_scale)
        with torch.inference_mode():
            embeddings = self.method.embed(features).double().cpu().numpy()
        return ScoreInputs(logits, self.logit_scale, embeddings, self.knn_bank.double().numpy())
