"""Splits: k-shot, disjoint by sha256 and group, per seed, held-out domain only in test_covariate."""

from __future__ import annotations

import pandas as pd
import pytest

from croft_pipeline.data.splits import SPLIT_COLUMNS, make_splits


def synthetic_manifest(domains=("a", "b", "c"), classes=("x", "y"), glyphs=6, variants=3):
    rows = []
    for domain in domains:
        for label, name in enumerate(classes):
            for g in range(glyphs):
                for v in range(variants):
                    rows.append(
                        {
                            "root": "main",
                            "path": f"{domain}/{name}/{g}_v{v}.png",
                            "sha256": f"{domain}-{name}-{g}-{v}",
                            "domain": domain,
                            "class_name": name,
                            "label": label,
                            "role": "id",
                            "group": f"{domain}/{name}{g}",
                            "width": 8,
                            "height": 8,
                            "mode": "RGB",
                        }
                    )
    ident = pd.DataFrame(rows)
    openset = ident[ident["class_name"] == "x"].assign(
        class_name="z", label=-1, role="openset",
        sha256=lambda f: "o" + f["sha256"], group=lambda f: "o" + f["group"], path=lambda f: "o" + f["path"],
    )  # fmt: skip
    pretrain = openset.assign(
        role="pretrain", sha256=lambda f: "p" + f["sha256"], path=lambda f: "p" + f["path"]
    )
    return pd.concat([ident, openset, pretrain], ignore_index=True)


def run(manifest, seeds=(1, 2), **kwargs):
    args = {"heldout_domain": "c", "shots": 4, "val_per_class": 3} | kwargs
    return make_splits(manifest, list(seeds), **args)


def test_columns_and_no_sha_or_group_in_two_splits():
    splits = run(synthetic_manifest())
    assert list(splits.columns) == SPLIT_COLUMNS
    for key in ("sha256", "group"):
        assert splits.groupby(["seed", key])["split"].nunique().max() == 1
    assert "pretrain" not in set(splits["role"])


def test_k_shots_per_class_balanced_over_source_domains_one_per_group():
    splits = run(synthetic_manifest(), shots=4)
    train = splits[splits["split"] == "train"]
    assert train.groupby(["seed", "class_name"]).size().eq(4).all()
    assert train.groupby(["seed", "class_name", "domain"]).size().eq(2).all()
    assert train.groupby(["seed", "group"]).size().eq(1).all()
    assert set(train["domain"]) == {"a", "b"}


def test_held_out_domain_only_in_covariate_test_and_open_set_everywhere():
    splits = run(synthetic_manifest())
    assert set(splits.loc[splits["domain"] == "c", "split"]) == {"test_covariate", "test_openset"}
    assert set(splits.loc[splits["split"] == "test_covariate", "domain"]) == {"c"}
    assert set(splits.loc[splits["split"] == "test_openset", "domain"]) == {"a", "b", "c"}
    assert set(splits.loc[splits["split"] == "test_openset", "label"]) == {-1}


def test_val_takes_whole_groups_and_test_id_gets_the_rest():
    manifest = synthetic_manifest()
    splits = run(manifest, seeds=(1,), val_per_class=3)
    val = splits[splits["split"] == "val"]
    assert val.groupby("class_name").size().ge(3).all()
    assert val.groupby("group").size().eq(3).all()  # every variant of a val glyph
    used = set(splits.loc[splits["split"].isin(["train", "val"]), "group"])
    source = manifest[(manifest["role"] == "id") & manifest["domain"].isin(["a", "b"])]
    rest = source[~source["group"].isin(used)]
    test_id = splits[splits["split"] == "test_id"]
    assert set(test_id["sha256"]) == set(rest["sha256"])


def test_deterministic_per_seed_and_different_across_seeds():
    manifest = synthetic_manifest()
    first, again = run(manifest), run(manifest.sample(frac=1, random_state=0))
    pd.testing.assert_frame_equal(first, again)
    train = first[first["split"] == "train"]
    assert set(train.loc[train["seed"] == 1, "sha256"]) != set(
        train.loc[train["seed"] == 2, "sha256"]
    )


def test_open_set_cap_per_class():
    splits = run(synthetic_manifest(), openset_max_per_class=5)
    counts = splits[splits["split"] == "test_openset"].groupby(["seed", "class_name"]).size()
    assert counts.between(5, 7).all()  # whole groups of 3 variants


def test_unknown_held_out_domain_is_a_clear_error():
    with pytest.raises(ValueError, match="held-out domain 'nope' has no ID images"):
        run(synthetic_manifest(), heldout_domain="nope")
