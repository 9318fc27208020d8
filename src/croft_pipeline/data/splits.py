"""Splits as data, per seed: train, ID validation and ID test by concept, the held-out domain
(covariate shift), the open-set classes (semantic shift) and the open-set validation classes
(``val_openset``: OOD classes disjoint from the open-set test ones, for tuning OOD scores on
validation data only; every image of theirs, in every seed).

DomainBed's training-domain validation: per ID class, the *groups* (concepts: an emoji code
point shared by all its styles and render variants; one image elsewhere) that have source-domain
images are shuffled per seed and cut into train / val / test_id by fraction, so no group is in
two of them. ``train`` takes every source-domain image of its groups (``shots: null``) or k per
class (``shots: k``, round-robin over the source domains, one image per group); ``val`` every
image of its groups, or whole groups up to ``val_per_class``; ``test_id`` every source image of
a group that neither train nor val touched. The held-out domain is the covariate test, whole;
groups shared with ``train`` are the same concept in a new style, the others are novel glyphs.
Pretraining images never appear.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import numpy as np
import pandas as pd

from croft_pipeline.data.manifest import MANIFEST_COLUMNS

# val_openset last: adding it leaves every other split's rows, and their order, as they were
SPLITS = ("train", "val", "test_id", "test_covariate", "test_openset", "val_openset")
SOURCE_SPLITS = ("train", "val", "test_id")  # no group is in two of these
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


def group_counts(n_groups: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """How many of a class's ``n_groups`` go to val, test_id and train: val and test_id get at
    least one each (while there are groups), train the rest (possibly none: the data check
    ``id_groups_per_class`` then names the class)."""
    n_val = min(n_groups, max(1, round(n_groups * val_fraction)))
    n_test = min(n_groups - n_val, max(1, round(n_groups * test_fraction)))
    return n_val, n_test, n_groups - n_val - n_test


def _round_robin(groups_by_domain: dict[str, list[str]], rng: np.random.Generator):
    """Groups alternating over the domains (a seeded domain order), each group once."""
    domains = sorted(groups_by_domain)
    order = [domains[i] for i in rng.permutation(len(domains))]
    queues = {d: list(groups_by_domain[d]) for d in order}
    seen: set[str] = set()
    while any(queues.values()):
        for domain in order:
            while queues[domain]:
                group = queues[domain].pop(0)
                if group not in seen:
                    seen.add(group)
                    yield domain, group
                    break


def _split_class(
    rows: pd.DataFrame,
    shots: int | None,
    val_per_class: int | None,
    fractions: tuple[float, float],
    rng: np.random.Generator,
) -> dict[str, list[int]]:
    """Row indices of one ID class's source-domain images for train, val and test_id."""
    groups = sorted(rows["group"].unique())
    groups = [groups[i] for i in rng.permutation(len(groups))]
    n_val, n_test, _ = group_counts(len(groups), *fractions)
    pools = {"val": groups[:n_val], "train": groups[n_val + n_test :]}
    members = {group: rows.index[rows["group"] == group].tolist() for group in groups}
    out: dict[str, list[int]] = {"train": [], "val": [], "test_id": []}
    used: set[str] = set()

    if shots is None:
        for group in pools["train"]:
            out["train"] += members[group]
            used.add(group)
    else:
        by_domain = _groups_by_domain(rows, pools["train"])
        for domain, group in _round_robin(by_domain, rng):
            if len(out["train"]) >= shots:
                break
            candidates = rows.index[(rows["group"] == group) & (rows["domain"] == domain)]
            out["train"].append(int(candidates[rng.integers(len(candidates))]))
            used.add(group)

    if val_per_class is None:
        for group in pools["val"]:
            out["val"] += members[group]
            used.add(group)
    else:
        for _, group in _round_robin(_groups_by_domain(rows, pools["val"]), rng):
            if len(out["val"]) >= val_per_class:
                break
            out["val"] += members[group]
            used.add(group)
    out["test_id"] = [i for group in groups if group not in used for i in members[group]]
    return out


def _groups_by_domain(rows: pd.DataFrame, groups: list[str]) -> dict[str, list[str]]:
    """The groups (in the given order) that have images in each domain."""
    chosen = rows[rows["group"].isin(groups)]
    rank = {group: i for i, group in enumerate(groups)}
    return {
        str(domain): sorted(part["group"].unique(), key=rank.__getitem__)
        for domain, part in chosen.groupby("domain", sort=True)
    }


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
    shots: int | None = None,
    val_per_class: int | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    source_domains: list[str] | None = None,
    openset_max_per_class: int | None = None,
) -> pd.DataFrame:
    """The ``splits`` table (docs/architecture.md) for every seed (module docstring)."""
    sources = resolve_domains(manifest, heldout_domain, source_domains)
    table = manifest.sort_values(["root", "path"], ignore_index=True)
    ident = table[table["role"] == "id"]
    covariate = ident[ident["domain"] == heldout_domain]
    source_rows = ident[ident["domain"].isin(sources)]
    openset = table[table["role"] == "openset"]
    openset_val = table[table["role"] == "openset_val"]

    frames = []
    for seed in seeds:
        chosen: dict[str, list[int]] = defaultdict(list)
        for name, rows in source_rows.groupby("class_name", sort=True):
            parts = _split_class(
                rows, shots, val_per_class, (val_fraction, test_fraction), _rng(seed, str(name))
            )
            for split, idx in parts.items():
                chosen[split] += idx
        chosen["test_covariate"] = covariate.index.tolist()
        chosen["test_openset"] = _cap_per_class(openset, openset_max_per_class, seed)
        chosen["val_openset"] = openset_val.index.tolist()
        for split in SPLITS:
            part = table.loc[sorted(chosen[split])]
            frames.append(part.assign(seed=int(seed), split=split))
    splits = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return splits.reindex(columns=SPLIT_COLUMNS).astype({"seed": "int64"})


def novel_groups(rows: pd.DataFrame, covariate_split: str = "test_covariate") -> set[str]:
    """The concepts of one seed's covariate test that no training image shows (novel glyphs).

    ``rows``: one seed's rows with ``split`` and ``group`` (the splits table or predictions).
    Without its ``train`` rows nothing could be called novel, so that is an error.
    """
    trained = set(rows.loc[rows["split"] == "train", "group"])
    if not trained:
        raise ValueError("novel glyphs need the seed's train rows (none given)")
    return set(rows.loc[rows["split"] == covariate_split, "group"]) - trained
