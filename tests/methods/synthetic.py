"""Synthetic cached features: class-clustered Gaussians with a per-domain shift."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.methods import EvalSet, TrainSet

CLASSES = ["cat", "dog", "owl"]  # synthetic_tables: ID classes (+ one open-set class)
DIM, VIEWS = 12, 3

COMMON = {
    "device": "cpu",
    "lr": 0.002,
    "momentum": 0.9,
    "weight_decay": 0.1,
    "epochs": 2,
    "warmup_epochs": 1,
    "warmup_lr": 1e-5,
    "batch_size": 8,
}
CROFT = {
    **COMMON,
    "ratio": 0.2,
    "ratio_text": 0.5,
    "lambda1": 15.0,
    "lambda2": 10.0,
    "gen_step": 1,
    "edr_setup": "setup2",
    "edr_branch": "auto",
    "edr_grad": "closed_form",
    "edr_delta": 1e-4,
}
CONFIGS = {
    "zero_shot": {"device": "cpu"},
    "linear_probe": COMMON,
    "clip_adapter": {**COMMON, "ratio": 0.2, "reduction": 4},
    "tip_adapter_f": {**COMMON, "alpha": 1.0, "beta": 10.0},
    "croft_faithful": CROFT,
    "croft_clean": {**CROFT, "edr_delta": 0.0},
    "croft_no_edr": {**CROFT, "lambda2": 0.0},
}


@dataclass
class Synthetic:
    text: torch.Tensor  # [K, D] raw text features
    logit_scale: float
    train: TrainSet
    val: EvalSet
    shifted: EvalSet  # another domain


def make_synthetic(
    classes: int = 4, dim: int = 16, n_train: int = 24, views: int = 3, seed: int = 0
) -> Synthetic:
    gen = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(classes, dim, generator=gen)
    text = centers + torch.randn(classes, dim, generator=gen)
    shift = torch.randn(dim, generator=gen)

    def sample(n: int, extra: tuple[int, ...], domain: float) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % classes
        noise = 2.0 * torch.randn(n, *extra, dim, generator=gen)
        center = centers[labels].view(n, *([1] * len(extra)), dim)
        return center + noise + domain * shift, labels

    train_x, train_y = sample(n_train, (views,), 0.0)
    val_x, val_y = sample(2 * classes, (), 0.0)
    shifted_x, shifted_y = sample(2 * classes, (), 1.5)
    return Synthetic(
        text, 20.0, TrainSet(train_x, train_y), EvalSet(val_x, val_y), EvalSet(shifted_x, shifted_y)
    )


def synthetic_tables(seeds=(1, 2)):
    """Two source domains, one shifted domain, an open-set class; splits per seed."""
    gen = torch.Generator().manual_seed(0)
    centers = 3.0 * torch.randn(len(CLASSES) + 1, DIM, generator=gen)
    shift = {"a": 0.0, "b": 0.5, "c": 2.0}
    rows, center, views = [], [], []
    for domain in ("a", "b", "c"):
        for label in range(len(CLASSES) + 1):
            for i in range(8):
                key = f"{domain}{label}{i}"
                base = centers[label] + shift[domain]
                center.append(base + torch.randn(DIM, generator=gen))
                views.append(base + torch.randn(VIEWS, DIM, generator=gen))
                known = label < len(CLASSES)
                rows.append(
                    {
                        "sha256": key,
                        "domain": domain,
                        "class_name": CLASSES[label] if known else "kite",
                        "label": label if known else -1,
                        "group": f"{label}-{i}",  # concept i of the class, in every domain
                        "index": i,
                    }
                )
    table = pd.DataFrame(rows)
    splits = []
    for seed in seeds:
        frame = table.copy()
        frame["seed"] = seed
        rotated = (frame["index"] + seed) % 8
        frame["split"] = np.where(
            frame["label"] < 0,
            "test_openset",
            np.where(
                frame["domain"] == "c",
                "test_covariate",
                np.where(rotated < 5, "train", np.where(rotated < 6, "val", "test_id")),
            ),
        )
        splits.append(frame.drop(columns="index"))
    keys = table["sha256"].tolist()
    meta = {"model_name": "synthetic"}
    text = FeatureTable(CLASSES, centers[: len(CLASSES), None] + 0.5, {**meta, "logit_scale": 20.0})
    return (
        pd.concat(splits, ignore_index=True),
        FeatureTable(keys, torch.stack(center)[:, None], meta),
        FeatureTable(keys, torch.stack(views), meta),
        text,
    )
