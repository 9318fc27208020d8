"""Splits by concept: no concept in two of train/val/test_id, the full-source and k-shot train
parts, the held-out domain whole in test_covariate, novel glyphs, determinism per seed."""

from __future__ import annotations

import pandas as pd
import pytest

from croft_pipeline.data.splits import (
    SOURCE_SPLITS,
    SPLIT_COLUMNS,
    group_counts,
    make_splits,
    novel_groups,
)


def synthetic_manifest(domains=("a", "b", "c"), classes=("x", "y"), glyphs=10, variants=3):
    """Concepts ``<class><g>`` rendered in every domain with ``variants`` variants; glyph 0 of
    each class exists only in the held-out domain ``c`` (a concept no source image shows)."""
    rows = []
    for domain in domains:
        for label, name in enumerate(classes):
            for g in range(glyphs):
                if g == 0 and domain != "c":
                    continue
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
                            "group": f"{name}{g}",
                            "width": 8,
                            "height": 8,
                            "mode": "RGB",
                        }
                    )
    ident = pd.DataFrame(rows)
    openset = ident[ident["class_name"] == "x"].assign(
        class_name="z",
        label=-1,
        role="openset",
        sha256=lambda f: "o" + f["sha256"],
        group=lambda f: "o" + f["group"],
        path=lambda f: "o" + f["path"],
    )
    pretrain = openset.assign(
        role="pretrain", sha256=lambda f: "p" + f["sha256"], path=lambda f: "p" + f["path"]
    )
    return pd.concat([ident, openset, pretrain], ignore_index=True)


def run(manifest, seeds=(1, 2), **kwargs):
    return make_splits(manifest, list(seeds), **({"heldout_domain": "c"} | kwargs))


def test_no_concept_in_two_of_train_val_test_id_in_any_style():
    splits = run(synthetic_manifest())
    assert list(splits.columns) == SPLIT_COLUMNS
    source = splits[splits["split"].isin(SOURCE_SPLITS)]
    assert source.groupby(["seed", "group"])["split"].nunique().max() == 1
    assert splits.groupby(["seed", "sha256"])["split"].nunique().max() == 1
    assert "pretrain" not in set(splits["role"])
    # the covariate test shares concepts with train: the same emoji in the held-out style
    for seed in (1, 2):
        rows = splits[splits["seed"] == seed]
        train = set(rows.loc[rows["split"] == "train", "group"])
        covariate = set(rows.loc[rows["split"] == "test_covariate", "group"])
        assert train & covariate and covariate - train


def test_full_source_train_takes_every_image_of_its_concepts_in_both_styles():
    manifest = synthetic_manifest()
    splits = run(manifest, seeds=(1,))
    source = manifest[(manifest["role"] == "id") & manifest["domain"].isin(["a", "b"])]
    for split in SOURCE_SPLITS:
        part = splits[splits["split"] == split]
        expected = source[source["group"].isin(set(part["group"]))]
        assert set(part["sha256"]) == set(expected["sha256"]), split  # every variant, both styles
    counts = splits[splits["split"].isin(SOURCE_SPLITS)].groupby(["class_name", "split"])["group"]
    n_val, n_test, n_train = group_counts(9, 0.2, 0.2)  # 9 source concepts per class
    assert counts.nunique().unstack().to_dict("index") == {
        c: {"test_id": n_test, "train": n_train, "val": n_val} for c in ("x", "y")
    }


def test_k_shots_per_class_balanced_over_source_domains_one_per_concept():
    splits = run(synthetic_manifest(), shots=4)
    train = splits[splits["split"] == "train"]
    assert train.groupby(["seed", "class_name"]).size().eq(4).all()
    assert train.groupby(["seed", "class_name", "domain"]).size().eq(2).all()
    assert train.groupby(["seed", "group"]).size().eq(1).all()
    # a concept partly used for a shot is in no other split (its other images are left out)
    source = splits[splits["split"].isin(SOURCE_SPLITS)]
    assert source.groupby(["seed", "group"])["split"].nunique().max() == 1


def test_val_per_class_caps_val_and_leaves_the_rest_to_test_id():
    manifest = synthetic_manifest(glyphs=16)
    splits = run(manifest, seeds=(1,), val_per_class=3)
    val = splits[splits["split"] == "val"]
    assert val.groupby("class_name").size().eq(6).all()  # one whole concept reaches 3
    assert val.groupby("group").size().eq(6).all()  # every variant in both source styles
    used = set(splits.loc[splits["split"].isin(["train", "val"]), "group"])
    source = manifest[(manifest["role"] == "id") & manifest["domain"].isin(["a", "b"])]
    rest = source[~source["group"].isin(used)]
    assert set(splits.loc[splits["split"] == "test_id", "sha256"]) == set(rest["sha256"])


def test_novel_glyphs_are_the_covariate_concepts_no_training_image_shows():
    splits = run(synthetic_manifest())
    for seed in (1, 2):
        rows = splits[splits["seed"] == seed]
        train = set(rows.loc[rows["split"] == "train", "group"])
        covariate = set(rows.loc[rows["split"] == "test_covariate", "group"])
        novel = novel_groups(rows)
        assert novel == covariate - train
        assert {"x0", "y0"} <= novel  # held-out-only concepts are always novel
        val_and_test = set(rows.loc[rows["split"].isin(["val", "test_id"]), "group"])
        assert novel - {"x0", "y0"} == val_and_test & covariate


def test_held_out_domain_only_in_covariate_test_and_open_set_everywhere():
    splits = run(synthetic_manifest())
    assert set(splits.loc[splits["domain"] == "c", "split"]) == {"test_covariate", "test_openset"}
    assert set(splits.loc[splits["split"] == "test_covariate", "domain"]) == {"c"}
    assert set(splits.loc[splits["split"] == "test_openset", "domain"]) == {"a", "b", "c"}
    assert set(splits.loc[splits["split"] == "test_openset", "label"]) == {-1}


def test_deterministic_per_seed_and_different_across_seeds():
    manifest = synthetic_manifest()
    first, again = run(manifest), run(manifest.sample(frac=1, random_state=0))
    pd.testing.assert_frame_equal(first, again)
    train = first[first["split"] == "train"]
    assert set(train.loc[train["seed"] == 1, "group"]) != set(
        train.loc[train["seed"] == 2, "group"]
    )


def test_group_counts_leave_val_and_test_a_group_and_train_the_rest():
    assert group_counts(10, 0.2, 0.2) == (2, 2, 6)
    assert group_counts(3, 0.2, 0.2) == (1, 1, 1)
    assert group_counts(2, 0.2, 0.2) == (1, 1, 0)  # the data check then names the class
    assert group_counts(1, 0.2, 0.2) == (1, 0, 0)


def test_open_set_cap_per_class():
    splits = run(synthetic_manifest(), openset_max_per_class=5)
    counts = splits[splits["split"] == "test_openset"].groupby(["seed", "class_name"]).size()
    assert counts.between(5, 13).all()  # whole concepts: 3 domains x 3 variants


def test_unknown_held_out_domain_is_a_clear_error():
    with pytest.raises(ValueError, match="held-out domain 'nope' has no ID images"):
        run(synthetic_manifest(), heldout_domain="nope")


def test_novel_glyphs_need_the_training_rows():
    splits = run(synthetic_manifest(), seeds=(1,))
    with pytest.raises(ValueError, match="need the seed's train rows"):
        novel_groups(splits[splits["split"] != "train"])


def test_openset_val_images_are_val_openset_in_every_seed_and_move_no_other_row():
    manifest = synthetic_manifest()
    openset = manifest[manifest["role"] == "openset"]
    val = openset.assign(
        class_name="w",
        role="openset_val",
        sha256=lambda f: "v" + f["sha256"],
        group=lambda f: "v" + f["group"],
        path=lambda f: "a" + f["path"],  # sorts before every other path
    )
    before = run(manifest, seeds=(1, 2, 3))
    after = run(pd.concat([manifest, val], ignore_index=True), seeds=(1, 2, 3))
    kept = after[after["split"] != "val_openset"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before)
    for _, rows in after[after["split"] == "val_openset"].groupby("seed"):
        assert sorted(rows["sha256"]) == sorted(val["sha256"])
    assert set(after.loc[after["split"] == "val_openset", "class_name"]) == {"w"}
    assert before[before["split"] == "val_openset"].empty
