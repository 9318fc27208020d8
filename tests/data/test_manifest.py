"""Manifest: naming, roles, labels, groups, duplicates, and a reported reason for every skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from croft_pipeline.data.manifest import MANIFEST_COLUMNS, SKIPPED_COLUMNS, build_manifest
from croft_pipeline.validation import DataValidationError
from tests.data.image_factory import build_domain_tree, write_bad_inputs, write_image

DATASET = {"id_classes": None, "openset_classes": None, "underscores_to_spaces": True}
MAIN = [{"root": "main", "layout": "domains", "role": "auto"}]


def test_columns_labels_and_every_bad_file_counted(tmp_path):
    build_domain_tree(tmp_path, ["art", "photo"], ["dog", "horse"], per_class=2)
    bad = write_bad_inputs(tmp_path / "photo" / "dog")
    manifest, skipped, id_classes = build_manifest(MAIN, {"main": tmp_path}, DATASET)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(skipped.columns) == SKIPPED_COLUMNS
    assert id_classes == ["dog", "horse"]
    assert len(manifest) == 8
    assert set(manifest["label"]) == {0, 1}
    assert (manifest["group"] == manifest["sha256"]).all()
    assert set(skipped["path"]) == {f"photo/dog/{p.name}" for p in bad.values()}
    assert skipped["reason"].str.len().gt(0).all()


def test_images_outside_the_validated_sides_are_skipped_with_their_size(tmp_path):
    """The sides the validation gate checks (ingest.validation) are the sides the manifest keeps:
    a 1x1 or an over-wide image is a skipped file, not a failed run."""
    build_domain_tree(tmp_path, ["art", "photo"], ["dog"], per_class=2)
    write_image(tmp_path / "art" / "dog" / "dot.png", seed=7, size=(1, 1))
    write_image(tmp_path / "photo" / "dog" / "strip.png", seed=8, size=(80, 20))
    validation = {"min_side": 16, "max_side": 64}
    manifest, skipped, _ = build_manifest(MAIN, {"main": tmp_path}, DATASET, None, validation)
    assert sorted(manifest["path"]) == [
        f"{d}/dog/img_{i}.png" for d in ("art", "photo") for i in (0, 1)
    ]
    rule = "px; its sides must be 16 to 64 px (ingest.validation.min_side, max_side)"
    assert skipped[["path", "reason"]].values.tolist() == [
        ["art/dog/dot.png", f"image is 1x1 {rule}"],
        ["photo/dog/strip.png", f"image is 80x20 {rule}"],
    ]
    _, default_skips, _ = build_manifest(MAIN, {"main": tmp_path}, DATASET)
    assert default_skips["path"].tolist() == ["art/dog/dot.png"]  # 16 to 8192 px by default


def test_id_classes_null_keeps_the_classes_in_every_domain_and_names_what_others_miss(tmp_path):
    """``id_classes: null`` keeps the classes with images in every domain, the held-out one
    included: a class missing from one domain is skipped, and the reason names that domain."""
    build_domain_tree(tmp_path, ["art", "photo", "sketch"], ["dog"], per_class=1)
    write_image(tmp_path / "photo" / "giraffe" / "g.png", seed=99)
    write_image(tmp_path / "art" / "horse" / "h.png", seed=98)
    write_image(tmp_path / "photo" / "horse" / "h.png", seed=97)
    manifest, skipped, id_classes = build_manifest(MAIN, {"main": tmp_path}, DATASET)
    assert id_classes == ["dog"] and set(manifest["class_name"]) == {"dog"}
    keeps = "id_classes: null keeps the classes in every domain"
    assert skipped[["path", "reason"]].values.tolist() == [
        [
            "art/horse/h.png",
            f"class 'horse' has no image in domain(s) sketch; {keeps} (name it in ingest.dataset.id_classes to use it)",
        ],
        [
            "photo/giraffe/g.png",
            f"class 'giraffe' has no image in domain(s) art, sketch; {keeps} (name it in ingest.dataset.id_classes to use it)",
        ],
        [
            "photo/horse/h.png",
            f"class 'horse' has no image in domain(s) sketch; {keeps} (name it in ingest.dataset.id_classes to use it)",
        ],
    ]
    configured = {**DATASET, "id_classes": ["dog", "horse"]}
    manifest, skipped, _ = build_manifest(MAIN, {"main": tmp_path}, configured)
    assert set(manifest["class_name"]) == {"dog", "horse"}  # a listed class needs no domain
    assert skipped["reason"].tolist() == [
        "class 'giraffe' is in none of ingest.dataset.id_classes, openset_classes and "
        "openset_val_classes"
    ]


def test_id_classes_null_with_no_class_in_every_domain_names_each_missing_domain(tmp_path):
    write_image(tmp_path / "art" / "dog" / "d.png", seed=1)
    write_image(tmp_path / "photo" / "cat" / "c.png", seed=2)
    with pytest.raises(ValueError) as error:
        build_manifest(MAIN, {"main": tmp_path}, DATASET)
    assert str(error.value) == (
        "ingest.dataset.id_classes is null, which keeps the classes with images in every domain, "
        "and no class is in all of them: missing 'cat' from art; 'dog' from photo. List the ID "
        "classes in ingest.dataset.id_classes (or add the missing images)"
    )


def test_per_domain_class_names_and_open_set_from_another_root(tmp_path):
    main, dtd = tmp_path / "vlcs", tmp_path / "dtd"
    build_domain_tree(main, ["Caltech101"], ["0", "1"], per_class=1)
    build_domain_tree(main, ["LabelMe"], ["bird", "auto"], per_class=1, seed=50)
    write_image(dtd / "banded" / "b.png", seed=77)
    dataset = {
        **DATASET,
        "id_classes": ["bird", "car"],
        "class_names_by_domain": {"Caltech101": {"0": "bird", "1": "car"}},
        "class_names": {"auto": "car"},
    }
    sources = MAIN + [{"root": "openset", "layout": "classes", "domain": "dtd", "role": "openset"}]
    manifest, skipped, _ = build_manifest(sources, {"main": main, "openset": dtd}, dataset)
    assert skipped.empty
    by_path = manifest.set_index("path")
    assert by_path.loc["Caltech101/0/img_0.png", "class_name"] == "bird"
    assert by_path.loc["LabelMe/auto/img_0.png", ["class_name", "label"]].tolist() == ["car", 1]
    assert by_path.loc["banded/b.png", ["role", "domain", "label"]].tolist() == [
        "openset",
        "dtd",
        -1,
    ]


def test_duplicate_files_keep_one_row_and_list_the_others(tmp_path):
    build_domain_tree(tmp_path, ["art", "photo"], ["dog"], per_class=1)
    shutil.copy(tmp_path / "art" / "dog" / "img_0.png", tmp_path / "photo" / "dog" / "copy.png")
    manifest, skipped, _ = build_manifest(MAIN, {"main": tmp_path}, DATASET)
    assert manifest["sha256"].is_unique
    assert len(manifest) == 2
    (reason,) = skipped["reason"]
    assert "duplicate of main:" in reason


@pytest.mark.parametrize(
    ("root", "copy"), [("main", "photo/horse/copy.jpg"), ("openset", "banded/copy.jpg")]
)
def test_one_file_under_two_classes_is_an_error_naming_both_copies(tmp_path, root, copy):
    main, dtd = tmp_path / "main", tmp_path / "dtd"
    build_domain_tree(main, ["art", "photo"], ["dog", "horse"], per_class=1, fmt="JPEG")
    write_image(dtd / "banded" / "b.png", seed=77)
    target = {"main": main, "openset": dtd}[root] / copy
    shutil.copy(main / "art" / "dog" / "img_0.jpg", target)
    sources = MAIN + [{"root": "openset", "layout": "classes", "domain": "dtd", "role": "openset"}]
    with pytest.raises(DataValidationError, match="different classes") as raised:
        build_manifest(sources, {"main": main, "openset": dtd}, DATASET)
    assert "main:art/dog/img_0.jpg (id class 'dog')" in str(raised.value)
    assert f"{root}:{copy}" in str(raised.value)


def test_a_pretraining_copy_under_another_class_is_a_counted_skip(tmp_path):
    main, pre = tmp_path / "main", tmp_path / "pre"
    build_domain_tree(main, ["art"], ["dog"], per_class=1, fmt="JPEG")
    (pre / "art" / "animal").mkdir(parents=True)
    shutil.copy(main / "art" / "dog" / "img_0.jpg", pre / "art" / "animal" / "copy.jpg")
    sources = MAIN + [{"root": "pre", "layout": "domains", "role": "pretrain"}]
    manifest, skipped, _ = build_manifest(sources, {"main": main, "pre": pre}, DATASET)
    assert manifest[["root", "path", "class_name"]].values.tolist() == [
        ["main", "art/dog/img_0.jpg", "dog"]
    ]
    assert skipped[["root", "path"]].values.tolist() == [["pre", "art/animal/copy.jpg"]]


def test_group_pattern_gives_one_concept_in_every_style_and_pretrain_role(tmp_path):
    for style in ("noto", "openmoji"):
        for variant in range(2):
            write_image(
                tmp_path / style / "bird" / f"U+1F426_v{variant}.png", seed=variant + 9 * len(style)
            )
    dataset = {**DATASET, "group_pattern": r"^(?P<group>U\+[0-9A-F]{4,6})_v[0-9]+$"}
    sources = [{"root": "pre", "layout": "domains", "role": "pretrain"}]
    manifest, _, _ = build_manifest(sources, {"pre": tmp_path}, dataset)
    assert len(manifest) == 4 and set(manifest["group"]) == {"U+1F426"}
    assert set(manifest["role"]) == {"pretrain"}
    assert set(manifest["label"]) == {-1}


@pytest.mark.parametrize(
    ("lists", "message"),
    [
        (
            {"id_classes": ["dog"], "openset_classes": ["dog"]},
            "id_classes and ingest.dataset.openset_classes",
        ),
        (
            {"id_classes": ["dog"], "openset_val_classes": ["dog"]},
            "id_classes and ingest.dataset.openset_val_classes",
        ),
        (
            {"id_classes": ["cat"], "openset_classes": ["dog"], "openset_val_classes": ["dog"]},
            "openset_classes and ingest.dataset.openset_val_classes",
        ),
    ],
)
def test_a_class_in_two_role_lists_is_an_error_naming_both(tmp_path, lists, message):
    build_domain_tree(tmp_path, ["art"], ["dog", "cat"], per_class=1)
    with pytest.raises(ValueError, match=f"class 'dog' is in both ingest.dataset.{message}"):
        build_manifest(MAIN, {"main": tmp_path}, {**DATASET, **lists})


def test_openset_val_classes_get_their_own_role_and_no_label(tmp_path):
    build_domain_tree(tmp_path, ["art", "photo"], ["dog", "cat", "fox"], per_class=2)
    dataset = {**DATASET, "openset_classes": ["cat"], "openset_val_classes": ["fox"]}
    manifest, skipped, id_classes = build_manifest(MAIN, {"main": tmp_path}, dataset)
    assert id_classes == ["dog"] and skipped.empty  # fox is not an inferred ID class
    roles = manifest.groupby("class_name")["role"].unique().map(list).to_dict()
    assert roles == {"cat": ["openset"], "dog": ["id"], "fox": ["openset_val"]}
    assert set(manifest.loc[manifest["role"] == "openset_val", "label"]) == {-1}


MANIFEST_DIGEST = """
import sys
from pathlib import Path

import pandas as pd

from croft_pipeline.data.manifest import build_manifest

sources = [{"root": "main", "layout": "domains", "role": "auto"}]
dataset = {"id_classes": None, "openset_classes": None, "underscores_to_spaces": True}
manifest, skipped, _ = build_manifest(sources, {"main": Path(sys.argv[1])}, dataset)
print(pd.util.hash_pandas_object(manifest).sum(), pd.util.hash_pandas_object(skipped).sum())
"""


def test_manifest_is_deterministic_across_processes(tmp_path):
    """Two fresh interpreters (their own hash seeds, file-system order, imports) agree."""
    build_domain_tree(tmp_path, ["art", "photo"], ["dog", "cat"], per_class=3)
    write_bad_inputs(tmp_path / "art" / "cat")
    digests = {
        subprocess.run(
            [sys.executable, "-c", MANIFEST_DIGEST, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1 and digests != {""}
