"""Zero-shot classification accuracy of a CLIP model, per domain (style)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from croft_pipeline.clip.backend import LoadedClip, encode_class_prompts, encode_pixels
from croft_pipeline.data.images import load_rgb


def zero_shot_accuracy(
    loaded: LoadedClip,
    image_paths: Sequence[Path],
    labels: Sequence[int],
    domains: Sequence[str],
    classnames: Sequence[str],
    templates: str | Sequence[str],
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, float]:
    """Top-1 accuracy per domain (and ``"mean"`` over domains) with prompts from class names only."""
    if not (len(image_paths) == len(labels) == len(domains)) or not image_paths:
        raise ValueError("need one label and one domain per image, and at least one image")
    text = F.normalize(encode_class_prompts(loaded, classnames, templates), dim=-1)
    predictions = []
    bar = tqdm(total=len(image_paths), desc="zero-shot", unit="img", disable=not progress)
    with bar, torch.inference_mode(), loaded.autocast():
        for start in range(0, len(image_paths), batch_size):
            batch = image_paths[start : start + batch_size]
            pixels = torch.stack([loaded.preprocess_eval(load_rgb(path)) for path in batch])
            image = F.normalize(encode_pixels(loaded, pixels), dim=-1)
            predictions.append((image @ text.T).argmax(dim=-1))
            bar.update(len(batch))
    correct = torch.cat(predictions) == torch.as_tensor(list(labels))
    accuracy = {}
    for domain in sorted(set(domains)):
        mask = torch.tensor([d == domain for d in domains])
        accuracy[domain] = float(correct[mask].float().mean())
    accuracy["mean"] = sum(accuracy.values()) / len(accuracy)
    return accuracy
