"""Synthetic `predictions` tables (docs/architecture.md) with a known structure, for tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASSES = ["cat", "dog", "fish"]
SPLIT_DOMAINS = {
    "train": ["photo", "sketch"],
    "val": ["photo", "sketch"],
    "test_id": ["photo", "sketch"],
    "test_covariate": ["cartoon"],
    "test_openset": ["photo", "cartoon"],
}
LOGIT_SCALE = 10.0


def synthetic_predictions(
    methods: dict[str, float] | None = None, seeds=(1, 2), n_per_split: int = 30, dim: int = 4
) -> pd.DataFrame:
    """Rows for each (method, seed, split); ``methods`` maps a name to its class-signal strength.

    ID samples get cosine logits peaked at their label (stronger signal = more accurate and
    higher energy); open-set samples get near-flat logits.
    """
    methods = methods or {"zero_shot": 0.4, "croft_clean": 0.9}
    rng = np.random.default_rng(0)
    prototypes = np.eye(len(CLASSES), dim)
    rows = []
    for method, signal in methods.items():
        for seed in seeds:
            for split, domains in SPLIT_DOMAINS.items():
                for index in range(n_per_split):
                    rows.append(_row(rng, method, seed, split, domains, index, signal, prototypes))
    return pd.DataFrame(rows)


def _row(rng, method, seed, split, domains, index, signal, prototypes):
    openset = split == "test_openset"
    label = -1 if openset else index % len(CLASSES)
    strength = 0.05 if openset else signal * (0.6 if split == "test_covariate" else 1.0)
    feature = rng.normal(scale=0.5, size=prototypes.shape[1])
    if not openset:
        feature = feature + strength * 3 * prototypes[label]
    feature = feature / np.linalg.norm(feature)
    cosine = prototypes @ feature
    return {
        "method": method,
        "seed": seed,
        "split": split,
        "sha256": f"{split}-{index:04d}",
        "domain": domains[index % len(domains)],
        "class_name": "unknown" if openset else CLASSES[label],
        "group": f"{'o' if openset else CLASSES[label]}{index // 2}",  # concepts of two images
        "label": label,
        "logits": (LOGIT_SCALE * cosine).astype(np.float32).tolist(),
        "embedding": feature.astype(np.float32).tolist(),
    }


def synthetic_calibration(predictions: pd.DataFrame, scores: dict | None = None) -> dict:
    """Thresholds at 95 % TPR on each method/seed's val energies, as `calibrate` writes them."""
    from croft_pipeline.ood.calibration import calibrate_thresholds

    return calibrate_thresholds(
        predictions, LOGIT_SCALE, "energy", 0.95, scores or {"energy": {}}, "train"
    )
