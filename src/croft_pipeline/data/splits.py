"""Splits as data, per seed: k-shot train, ID val and test, covariate-shift and open-set tests.

Every split takes whole ``group``s (all render variants of one glyph, or one image elsewhere), so
per seed no group and no sha256 is in two splits. Pretraining images never appear.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import numpy as np
import pandas as pd

from croft_pipeline.data.manifest import MANIFEST_COLUMNS

SPLITS = ("train", "val", "test_id", "test_covariate", "test_openset")
SPLIT_COLUMNS = ["seed", "split", *MANIFEST_COLUMNS]


def resolve_domains(
    manifest: pd.DataFrame, heldout_domain: str, source_domains: list[str] | None = None
) -> list[str]:
    """The source domains (all ID domains but the held-out one, unless configured)."""
    id_domains = sorted(manifest.loc[manifest["role"] == "id", "domain"].unique())
    if heldout_domain not in id_domains:
        raise ValueError(
            f"held-out domain {heldout_domain!r} has no ID images; domains found: {id_domains}"
        )
    sources = (
        list(source_domains) if source_domains else [d for d in id_domains if d != heldout_domain]
    )
    missing = sorted(set(sources) - set(id_domains))
    if missing:
        raise ValueError(f"source domains {missing} have no ID images; domains found: {id_domains}")
    if heldout_domain in sources:
        raise ValueError(f"domain {heldout_domain!r} is both a source and the held-out domain")
    return sources


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _quotas(total: int, domains: list[str], rng: np.random.Generator) -> dict[str, int]:
    """``total`` spread round-robin over ``domains`` (remainder to a seeded choice of domains)."""
    order = [domains[i] for i in rng.permutation(len(domains))]
    return {
        d: total // len(domains) + (1 if i < total % len(domains) else 0)
        for i, d in enumerate(order)
    }


def _split_class(
    rows: pd.DataFrame, sources: list[str], shots: int, val_per_class: int, rng: np.random.Generator
) -> dict[str, list[int]]:
    """Row indices of one ID class's source-domain images for train, val and test_id."""
    groups_by_domain: dict[str, list[str]] = {}
    for domain in sources:
        names = sorted(rows.loc[rows["domain"] == domain, "group"].unique())
        groups_by_domain[domain] = [names[i] for i in rng.permutation(len(names))]
    used: set[str] = set()
    out: dict[str, list[int]] = {"train": [], "val": [], "test_id": []}

    # train: one image from each of k groups, the k spread over the source domains
    quotas = _quotas(shots, sources, rng)
    shortfall = 0
    for domain in sources:
        taken = _take_groups(groups_by_domain[domain], used, quotas[domain])
        shortfall += quotas[domain] - len(taken)
        out["train"] += [_one_row(rows, g, domain, rng) for g in taken]
    for domain in sources:  # a domain short of groups: fill from the others
        taken = _take_groups(groups_by_domain[domain], used, shortfall)
        shortfall -= len(taken)
        out["train"] += [_one_row(rows, g, domain, rng) for g in taken]

    # val: whole groups, round-robin over the source domains, until val_per_class images
    pending = {d: [g for g in groups_by_domain[d] if g not in used] for d in sources}
    while len(out["val"]) < val_per_class and any(pending.values()):
        for domain in sources:
            if pending[domain] and len(out["val"]) < val_per_class:
                group = pending[domain].pop(0)
                used.add(group)
                out["val"] += rows.index[rows["group"] == group].tolist()
        pending = {d: [g for g in groups if g not in used] for d, groups in pending.items()}
    out["test_id"] = rows.index[~rows["group"].isin(used)].tolist()
    return out


def _take_groups(ordered: list[str], used: set[str], count: int) -> list[str]:
    taken = [g for g in ordered if g not in used][: max(count, 0)]
    used.update(taken)
    return taken


def _one_row(rows: pd.DataFrame, group: str, domain: str, rng: np.random.Generator) -> int:
    members = rows.index[(rows["group"] == group) & (rows["domain"] == domain)]
    return int(members[rng.integers(len(members))])


def _cap_per_class(rows: pd.DataFrame, cap: int | None, seed: int) -> list[int]:
    if not cap:
        return rows.index.tolist()
    keep: list[int] = []
    for name, members in rows.groupby("class_name", sort=True):
        groups = sorted(members["group"].unique())
        rng = _rng(seed, "openset", str(name))
        count = 0
        for i in rng.permutation(len(groups)):
            if count >= cap:
                break
            idx = members.index[members["group"] == groups[i]].tolist()
            keep += idx
            count += len(idx)
    return keep


def make_splits(
    manifest: pd.DataFrame,
    seeds: list[int],
    heldout_domain: str,
    shots: int,
    val_per_class: int,
    source_domains: list[str] | None = None,
    openset_max_per_class: int | None = None,
) -> pd.DataFrame:
    """The ``splits`` table (docs/architecture.md) for every seed."""
    sources = resolve_domains(manifest, heldout_domain, source_domains)
    table = manifest.sort_values(["root", "path"], ignore_index=True)
    ident = table[table["role"] == "id"]
    covariate = ident[ident["domain"] == heldout_domain]
    # a group that also has held-out images stays in test_covariate (never in a source split)
    covariate_groups = set(covariate["group"])
    source_rows = ident[ident["domain"].isin(sources) & ~ident["group"].isin(covariate_groups)]
    openset = table[table["role"] == "openset"]

    frames = []
    for seed in seeds:
        chosen: dict[str, list[int]] = defaultdict(list)
        for name, rows in source_rows.groupby("class_name", sort=True):
            parts = _split_class(rows, sources, shots, val_per_class, _rng(seed, str(name)))
            for split, idx in parts.items():
                chosen[split] += idx
        chosen["test_covariate"] = covariate.index.tolist()
        chosen["test_openset"] = _cap_per_class(openset, openset_max_per_class, seed)
        for split in SPLITS:
            part = table.loc[sorted(chosen[split])]
            frames.append(part.assign(seed=int(seed), split=split))
    splits = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return splits.reindex(columns=SPLIT_COLUMNS).astype({"seed": "int64"})
