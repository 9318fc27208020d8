"""The ingest pipeline through Kedro: EmojiShift in the `test` env, PACS/VLCS-shaped folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from croft_pipeline.data.manifest import MANIFEST_COLUMNS, SKIPPED_COLUMNS
from croft_pipeline.data.splits import SPLIT_COLUMNS, SPLITS
from croft_pipeline.validation import DataValidationError
from tests.data.image_factory import (
    build_domain_tree,
    write_bad_inputs,
    write_exif_rotated_jpeg,
    write_image,
)
from tests.kedro_harness import copy_project, load_params, make_project_copy, run_pipeline

PACS_DOMAINS = ["art_painting", "cartoon", "photo", "sketch"]
PACS_CLASSES = ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]


@pytest.fixture(autouse=True)
def no_active_mlflow_run():
    """kedro-mlflow reuses a run left active in the process; each pipeline run gets its own."""
    while mlflow.active_run():
        mlflow.end_run()
    yield


def run_ingest(project: Path, env: str, extra_params: dict | None = None) -> None:
    while mlflow.active_run():
        mlflow.end_run()
    run_pipeline(project, "ingest", env=env, extra_params=extra_params)


def outputs(project: Path) -> dict:
    data = project / "data"
    return {
        "manifest": pd.read_parquet(data / "02_intermediate" / "manifest.parquet"),
        "splits": pd.read_parquet(data / "03_primary" / "splits.parquet"),
        "pairs": pd.read_parquet(data / "03_primary" / "pretrain_pairs.parquet"),
        "skipped": pd.read_csv(data / "08_reporting" / "ingest_skipped.csv"),
        "id_classes": json.loads((data / "03_primary" / "id_classes.json").read_text()),
        "roots": json.loads((data / "03_primary" / "dataset_roots.json").read_text()),
        "report": json.loads((data / "08_reporting" / "data_validation.json").read_text()),
    }


@pytest.fixture(scope="module")
def emojishift_project(tiny_project, tmp_path_factory) -> Path:
    """The `test` environment's ingest outputs: a copy of the shared tiny run's project."""
    return copy_project(tiny_project, tmp_path_factory.mktemp("ingest") / "project")


@pytest.mark.slow
def test_emojishift_outputs_follow_the_contracts(emojishift_project):
    out = outputs(emojishift_project)
    manifest, splits = out["manifest"], out["splits"]
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(splits.columns) == SPLIT_COLUMNS
    assert list(out["skipped"].columns) == SKIPPED_COLUMNS
    assert out["report"]["success"]
    assert set(manifest["domain"]) == {"openmoji", "noto", "symbola"}
    assert set(manifest["role"]) == {"id", "openset", "openset_val", "pretrain"}
    configured = load_params("test")["ingest"]
    id_names = [c["name"] for c in configured["emojishift"]["id_classes"]]
    assert out["id_classes"] == id_names
    ident = manifest[manifest["role"] == "id"]
    assert (ident["label"] == ident["class_name"].map(id_names.index)).all()
    assert set(splits["seed"]) == {1, 2}
    assert set(splits["split"]) == set(SPLITS)
    val_names = [c["name"] for c in configured["emojishift"]["openset_val_classes"]]
    for _, rows in splits.groupby("seed"):  # every OOD validation image, in every seed
        val = rows[rows["split"] == "val_openset"]
        assert set(val["class_name"]) == set(val_names) and (val["label"] == -1).all()
        assert len(val) == (manifest["role"] == "openset_val").sum()
    # no image used to measure accuracy was seen in pretraining (not even another render of it)
    pretrain = manifest[manifest["role"] == "pretrain"]
    assert not set(pretrain["sha256"]) & set(splits["sha256"])
    codepoint = manifest["group"].str.split("/").str[1]
    assert not set(codepoint[manifest["role"] == "pretrain"]) & set(
        codepoint[manifest["role"] != "pretrain"]
    )
    assert set(out["pairs"]["sha256"]) == set(pretrain["sha256"])
    for name, path in out["roots"].items():
        assert (emojishift_project / path).is_dir(), name


@pytest.mark.slow
def test_rerun_renders_nothing_and_reproduces_the_tables(emojishift_project):
    before = outputs(emojishift_project)
    run_ingest(emojishift_project, "test")
    after = outputs(emojishift_project)
    receipt = json.loads(
        (emojishift_project / "data/08_reporting/emojishift_receipt.json").read_text()
    )
    assert receipt["reused"]
    pd.testing.assert_frame_equal(before["manifest"], after["manifest"])
    pd.testing.assert_frame_equal(before["splits"], after["splits"])


SETUP1_LIKE = {  # conf/setup1 in small: a class split of 5 subgroups, 2 corruptions x 2 severities
    "ingest": {
        "roots": {"corrupted": "data/01_raw/emojishift_corrupted"},
        "emojishift": {
            "openset_val_classes": [],
            "class_split": {
                "pool": [
                    "animal-mammal",
                    "animal-bird",
                    "food-fruit",
                    "food-sweet",
                    "transport-water",
                ],
                "min_emoji": 3,
                "id_share": 0.4,
                "openset_val_share": 0.2,
                "seed": 1,
            },
        },
        "corruptions": {"kinds": ["contrast", "gaussian_noise"], "severities": [1, 5]},
    }
}


@pytest.mark.slow
def test_a_setup1_like_ingest_splits_classes_and_adds_corrupted_covariate_sets(
    emojishift_project, tmp_path
):
    project = copy_project(emojishift_project, tmp_path / "project")
    before = outputs(project)
    run_ingest(project, "test", SETUP1_LIKE)
    out = outputs(project)
    splits = out["splits"]
    assert out["report"]["success"]
    pd.testing.assert_frame_equal(out["pairs"], before["pairs"])  # the same CLIP pretraining
    assert len(out["id_classes"]) == 2
    roles = splits.groupby("class_name")["split"].agg(
        lambda s: set(s) & {"val_openset", "test_openset"}
    )
    assert sorted(map(sorted, roles[roles.map(len) > 0])) == [["test_openset"]] * 2 + [
        ["val_openset"]
    ]
    covariate = splits[splits["split"] == "test_covariate"]
    sets = ["contrast-1", "contrast-5", "gaussian_noise-1", "gaussian_noise-5"]
    assert sorted(covariate["domain"].unique()) == sorted(sets + ["symbola"])
    for _, rows in splits.groupby("seed"):
        tested = rows[rows["split"] == "test_id"]
        copies = rows[(rows["split"] == "test_covariate") & rows["domain"].isin(sets)]
        assert len(copies) == 4 * len(tested) and set(copies["group"]) == set(tested["group"])
        assert (copies["root"] == "corrupted").all()
    run_ingest(project, "test", SETUP1_LIKE)
    pd.testing.assert_frame_equal(outputs(project)["splits"], splits)  # the same bytes again


def build_pacs_tree(base: Path) -> tuple[Path, Path]:
    """A PACS-shaped tree (17 images per class and domain) with every kind of bad input in it."""
    pacs, dtd = base / "PACS", base / "dtd" / "images"
    build_domain_tree(pacs, PACS_DOMAINS, PACS_CLASSES, per_class=17)
    write_bad_inputs(pacs / "photo" / "dog")
    write_image(pacs / "cartoon" / "horse" / "grey.png", seed=5_000_001, mode="L")
    write_image(pacs / "cartoon" / "horse" / "cmyk.jpg", seed=5_000_002, fmt="JPEG", mode="CMYK")
    write_image(pacs / "cartoon" / "horse" / "alpha.png", seed=5_000_003, mode="RGBA")
    write_image(pacs / "cartoon" / "horse" / "palette.png", seed=5_000_004, mode="P")
    write_exif_rotated_jpeg(pacs / "art_painting" / "guitar" / "rotated.jpg", seed=5_000_005)
    write_image(pacs / "art_painting" / "house" / "maison à côté 家.png", seed=5_000_006)
    write_image(base / "outside" / "secret.png", seed=5_000_007)
    os.symlink(base / "outside" / "secret.png", pacs / "sketch" / "dog" / "escape.png")
    (pacs / "sketch" / "person_empty").mkdir()
    write_image(pacs / "photo" / "zebra" / "z.png", seed=5_000_008)  # a class in one domain only
    for c, name in enumerate(["banded", "dotted"]):
        for i in range(3):
            write_image(dtd / name / f"{i}.jpg", seed=5_000_900 + 10 * c + i, fmt="JPEG")
    return pacs, dtd


@pytest.mark.slow
def test_pacs_shaped_folder_goes_through_unchanged_and_bad_data_stops_the_run(tmp_path):
    project = make_project_copy(tmp_path / "project")
    pacs, dtd = build_pacs_tree(tmp_path)
    roots = {"ingest": {"roots": {"main": str(pacs), "openset": str(dtd)}}}
    run_ingest(project, "pacs", roots)

    out = outputs(project)
    manifest, splits, skipped = out["manifest"], out["splits"], out["skipped"]
    assert out["id_classes"] == PACS_CLASSES
    reasons = dict(zip(skipped["path"], skipped["reason"], strict=True))
    for name in ("empty.png", "notes.png", "truncated.png", "corrupt.png"):
        assert f"photo/dog/{name}" in reasons
    assert reasons["sketch/dog/escape.png"] == "symlink points outside the dataset root"
    assert reasons["sketch/person_empty/"] == "empty class folder"
    assert reasons["photo/zebra/z.png"] == (
        "class 'zebra' is in none of ingest.dataset.id_classes, openset_classes and "
        "openset_val_classes"
    )
    modes = manifest.set_index("path")["mode"]
    assert modes["cartoon/horse/grey.png"] == "L" and modes["cartoon/horse/cmyk.jpg"] == "CMYK"
    assert modes["cartoon/horse/alpha.png"] == "RGBA" and modes["cartoon/horse/palette.png"] == "P"
    rotated = manifest.set_index("path").loc["art_painting/guitar/rotated.jpg"]
    assert (rotated["width"], rotated["height"]) == (20, 40)
    assert "art_painting/house/maison à côté 家.png" in set(manifest["path"])
    # Setup II: 16 shots per class from the three source domains, sketch held out, DTD open-set
    train = splits[splits["split"] == "train"]
    assert train.groupby(["seed", "class_name"]).size().eq(16).all()
    assert set(train["domain"]) == {"art_painting", "cartoon", "photo"}
    assert set(splits.loc[splits["split"] == "test_covariate", "domain"]) == {"sketch"}
    assert set(splits.loc[splits["split"] == "test_openset", "domain"]) == {"dtd"}
    assert out["pairs"].empty

    # the same run with a rule broken: GX stops it before anything is published
    published = (project / "data/02_intermediate/manifest.parquet").stat().st_mtime_ns
    broken = {"ingest": {**roots["ingest"], "dataset": {"domains": PACS_DOMAINS[:3]}}}
    with pytest.raises(DataValidationError, match="column='domain'.*sketch"):
        run_ingest(project, "pacs", broken)
    assert outputs(project)["report"]["success"]  # the last good report stays
    assert (project / "data/02_intermediate/manifest.parquet").stat().st_mtime_ns == published


@pytest.mark.slow
def test_vlcs_env_maps_numbered_class_folders(tmp_path):
    project = make_project_copy(tmp_path / "project")
    vlcs, dtd = tmp_path / "VLCS", tmp_path / "dtd"
    named = ["bird", "car", "chair", "dog", "person"]
    build_domain_tree(vlcs, ["Caltech101"], ["0", "1", "2", "3", "4"], per_class=16)
    build_domain_tree(vlcs, ["LabelMe", "SUN09", "VOC2007"], named, per_class=16, seed=50_000_000)
    write_image(dtd / "banded" / "0.png", seed=5_000_003)
    params = {"ingest": {"roots": {"main": str(vlcs), "openset": str(dtd)}}}
    run_ingest(project, "vlcs", params)
    manifest = outputs(project)["manifest"]
    caltech = manifest[manifest["domain"] == "Caltech101"]
    assert set(caltech["class_name"]) == set(named)
    assert (caltech["label"] == caltech["class_name"].map(named.index)).all()


SMALL_DOMAINS = ["art", "photo", "sketch"]


def small_folder_run(base: Path, main: Path, **dataset) -> dict:
    """Runtime parameters of the `pacs` env for a 2-class JPEG folder dataset at ``main``."""
    write_image(base / "dtd" / "banded" / "0.png", seed=5_000_900)
    return {
        "ingest": {
            "roots": {"main": str(main), "openset": str(base / "dtd")},
            "dataset": {"id_classes": ["cat", "dog"], "domains": SMALL_DOMAINS, **dataset},
            "splits": {"shots": None, "val_per_class": None},
        }
    }


def build_small_tree(main: Path) -> Path:
    build_domain_tree(main, SMALL_DOMAINS, ["cat", "dog"], per_class=5, fmt="JPEG")
    return main


@pytest.mark.slow
def test_one_jpeg_in_two_classes_stops_ingest_and_twice_in_one_class_is_a_skip(tmp_path):
    project = make_project_copy(tmp_path / "project")
    main = build_small_tree(tmp_path / "main")
    params = small_folder_run(tmp_path, main)
    original = main / "art" / "cat" / "img_0.jpg"
    shutil.copy(original, main / "photo" / "dog" / "copy.jpg")
    with pytest.raises(DataValidationError, match="different classes") as raised:
        run_ingest(project, "pacs", params)
    assert "art/cat/img_0.jpg" in str(raised.value)
    assert "photo/dog/copy.jpg" in str(raised.value)

    (main / "photo" / "dog" / "copy.jpg").rename(main / "photo" / "cat" / "copy.jpg")
    run_ingest(project, "pacs", params)
    out = outputs(project)
    assert "photo/cat/copy.jpg" not in set(out["manifest"]["path"])
    (reason,) = out["skipped"].loc[out["skipped"]["path"] == "photo/cat/copy.jpg", "reason"]
    assert reason == "duplicate of main:art/cat/img_0.jpg (same sha256)"


def ingest_files(project: Path) -> dict[str, bytes]:
    """Every file the ingest catalog stores, by path, with its bytes (missing ones fail here)."""
    catalog = yaml.safe_load((project / "conf/base/catalog_ingest.yml").read_text())
    paths = [entry["filepath"] for entry in catalog.values() if "filepath" in entry]
    return {path: (project / path).read_bytes() for path in sorted(paths)}


def project_files(project: Path) -> list[str]:
    """Every file in the project copy but MLflow's tracking store (which records failed runs)."""
    tracking = {"mlflow.db", "mlruns"}
    paths = (p.relative_to(project) for p in project.rglob("*") if p.is_file())
    return sorted(p.as_posix() for p in paths if p.parts[0] not in tracking)


@pytest.mark.slow
def test_a_failed_ingest_leaves_every_last_good_output_byte_identical(tmp_path):
    project = make_project_copy(tmp_path / "project")
    main = build_small_tree(tmp_path / "main")
    run_ingest(project, "pacs", small_folder_run(tmp_path, main))
    before, files = ingest_files(project), project_files(project)

    # a changed dataset (another root, one more file to skip) that breaks a GX rule (domains)
    changed = tmp_path / "changed"
    shutil.copytree(main, changed)
    (changed / "art" / "cat" / "notes.jpg").write_text("not an image")
    broken = small_folder_run(tmp_path, changed, domains=SMALL_DOMAINS[:2])
    with pytest.raises(DataValidationError, match="column='domain'.*sketch"):
        run_ingest(project, "pacs", broken)
    assert ingest_files(project) == before
    assert project_files(project) == files  # nothing staged or left beside them (nor GX docs)
