"""Fashion-MNIST export: the idx reader (on tiny idx files written here), the two-domain folder
layout the ingest pipeline reads, idempotence, the inversion, and the shipped env's settings.
Only the last test reads Debian's package (skipped without it, except under CI=true)."""

from __future__ import annotations

import gzip
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from croft_pipeline.config.loader import parameters
from croft_pipeline.config.schema import check_parameters
from croft_pipeline.data import fashion_mnist as fm
from croft_pipeline.data.manifest import ClassNaming, build_manifest
from croft_pipeline.data.splits import SOURCE_SPLITS, make_splits

ROOT = Path(__file__).resolve().parents[2]
ENV = "fashion_mnist"


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An idx file: 0x0000, type 0x08 (ubyte), ndim, the dimensions (big-endian), the data."""
    array = np.ascontiguousarray(array, np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, data: bytes, gz: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def fake_source(root: Path, per_class: int = 5, split: str = "t10k", seed: int = 0) -> Path:
    """A split of ``per_class`` distinct noise images per class, labels interleaved."""
    rng = np.random.default_rng(seed)
    n = per_class * len(fm.CLASSES)
    images = rng.integers(0, 256, (n, fm.IMAGE_SIDE, fm.IMAGE_SIDE), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % len(fm.CLASSES)
    images_path, labels_path = fm.split_files(root, split)
    write_idx(images_path, idx_bytes(images))
    write_idx(labels_path, idx_bytes(labels))
    return root


def pngs(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert (image.mode, image.size) == ("L", (fm.IMAGE_SIDE, fm.IMAGE_SIDE))
        return np.asarray(image)


def file_states(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of every file, hidden ones included: a rewrite changes one."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


# --- the idx reader ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_images_and_labels_round_trip(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 9], np.uint8)
    got = fm.read_idx(write_idx(tmp_path / "i.gz", idx_bytes(images), gz), fm.IMAGES_MAGIC)
    assert got.shape == (2, 3, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)
    got = fm.read_idx(write_idx(tmp_path / "l.gz", idx_bytes(labels), gz), fm.LABELS_MAGIC)
    np.testing.assert_array_equal(got, labels)


BAD_FILES = [  # (name, the file's uncompressed bytes, the expected magic, start of the reason)
    ("empty", b"", fm.IMAGES_MAGIC, "not an idx file (0 bytes"),
    (
        "labels_as_images",
        idx_bytes(np.zeros(3)),
        fm.IMAGES_MAGIC,
        "magic number 0x00000801, expected 0x00000803",
    ),
    (
        "images_as_labels",
        idx_bytes(np.zeros((1, 2, 2))),
        fm.LABELS_MAGIC,
        "magic number 0x00000803, expected 0x00000801",
    ),
    (
        "not_ubyte",
        b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\0\0\0\0",
        None,
        "bad magic number 0x00000d01",
    ),
    (
        "not_zero_lead",
        b"PK\x08\x01" + struct.pack(">I", 1) + b"\0",
        None,
        "bad magic number 0x504b0801",
    ),
    ("no_dimensions", b"\x00\x00\x08\x00", None, "bad magic number 0x00000800"),
    (
        "short_header",
        b"\x00\x00\x08\x03" + struct.pack(">I", 2),
        fm.IMAGES_MAGIC,
        "truncated header",
    ),
    (
        "truncated_data",
        idx_bytes(np.zeros((2, 2, 2)))[:-1],
        fm.IMAGES_MAGIC,
        "7 data bytes, the header's shape (2, 2, 2) needs 8",
    ),
    (
        "trailing_data",
        idx_bytes(np.zeros(3)) + b"\0",
        fm.LABELS_MAGIC,
        "4 data bytes, the header's shape (3,) needs 3",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "magic", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_bad_idx_files_are_rejected_naming_the_file(tmp_path, name, data, magic, reason):
    path = write_idx(tmp_path / f"{name}-idx-ubyte.gz", data)
    with pytest.raises(fm.IdxFormatError) as error:
        fm.read_idx(path, magic)
    assert str(error.value).startswith(f"{path}: ")
    assert reason in str(error.value)


def test_corrupt_gzip_and_unreadable_files_name_the_file(tmp_path):
    whole = gzip.compress(idx_bytes(np.zeros((4, 28, 28))), mtime=0)
    cut = tmp_path / "cut-images-idx3-ubyte.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(fm.IdxFormatError, match=re.escape(f"{cut}: corrupt or truncated gzip")):
        fm.read_idx(cut)
    folder = tmp_path / "a-folder.gz"
    folder.mkdir()
    with pytest.raises(fm.IdxFormatError, match=re.escape(f"{folder}: cannot read")):
        fm.read_idx(folder)


def test_load_split_checks_the_pair_of_files(tmp_path):
    images_path, labels_path = fm.split_files(tmp_path, "t10k")
    write_idx(images_path, idx_bytes(np.zeros((3, 28, 28))))
    write_idx(labels_path, idx_bytes(np.array([0, 1], np.uint8)))
    with pytest.raises(
        fm.IdxFormatError, match=rf"{re.escape(str(images_path))}: 3 images but .*2 labels"
    ):
        fm.load_split(tmp_path, "t10k")
    write_idx(labels_path, idx_bytes(np.array([0, 1, 10], np.uint8)))
    with pytest.raises(fm.IdxFormatError, match=rf"{re.escape(str(labels_path))}: label 10"):
        fm.load_split(tmp_path, "t10k")
    write_idx(images_path, idx_bytes(np.zeros((3, 32, 32))))
    with pytest.raises(fm.IdxFormatError, match=rf"{re.escape(str(images_path))}: images of 32x32"):
        fm.load_split(tmp_path, "t10k")


def test_missing_package_says_how_to_install_it(tmp_path, capsys):
    with pytest.raises(fm.FashionMnistNotFound) as error:
        fm.export_folder(tmp_path / "out", source=tmp_path / "nowhere")
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path / "nowhere" / "t10k-images-idx3-ubyte.gz") in message
    assert not (tmp_path / "out").exists()
    assert fm.main(["--out", str(tmp_path / "out"), "--source", str(tmp_path / "nowhere")]) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


# --- the export ----------------------------------------------------------------------------


def test_export_layout_inversion_and_notes(tmp_path):
    source = fake_source(tmp_path / "src", per_class=5)
    out = tmp_path / "out"
    receipt = fm.export_folder(out, source, per_class=3, seed=0)
    assert (receipt["reused"], receipt["images"]) == (False, 2 * 3 * len(fm.CLASSES))
    assert receipt["images_per_domain"] == {"dark": 30, "light": 30}
    files = pngs(out)
    dark = [f.removeprefix("dark/") for f in files if f.startswith("dark/")]
    light = [f.removeprefix("light/") for f in files if f.startswith("light/")]
    assert dark == light and len(dark) == 30  # the same images in both domains
    assert {f.split("/")[0] for f in dark} == set(fm.FOLDERS)
    for folder in fm.FOLDERS:
        assert len([f for f in dark if f.startswith(f"{folder}/")]) == 3
    images, labels = fm.load_split(source, "t10k")
    for rel in dark:
        folder, name = rel.split("/")
        index = int(re.fullmatch(r"t10k_(\d{5})\.png", name).group(1))
        assert fm.FOLDERS[labels[index]] == folder  # the file sits in its label's folder
        np.testing.assert_array_equal(pixels(out / "dark" / rel), images[index])
        np.testing.assert_array_equal(pixels(out / "light" / rel), 255 - images[index])
    attribution = (out / "ATTRIBUTION.md").read_text()
    assert (
        "Zalando" in attribution and "MIT" in attribution and "dataset-fashion-mnist" in attribution
    )
    assert "MIT License" in (out / "LICENSE.txt").read_text()
    assert not list(out.rglob("*.tmp"))


def test_invert_is_its_own_inverse_and_keeps_uint8():
    images = np.array([[[0, 1, 128, 254, 255]]], np.uint8)
    inverted = fm.invert(images)
    assert inverted.dtype == np.uint8
    np.testing.assert_array_equal(inverted, [[[255, 254, 127, 1, 0]]])
    np.testing.assert_array_equal(fm.invert(inverted), images)


def test_a_rerun_with_the_same_settings_rewrites_nothing(tmp_path, capsys):
    source = fake_source(tmp_path / "src", per_class=4)
    out = tmp_path / "out"
    fm.export_folder(out, source, per_class=2)
    before = file_states(out)
    receipt = fm.export_folder(out, source, per_class=2)
    assert (receipt["reused"], receipt["files_written"]) == (True, 0)
    assert file_states(out) == before
    # without its stamp (an export cut short before it) the files are compared, not rewritten
    (out / fm.STAMP_FILE).unlink()
    receipt = fm.export_folder(out, source, per_class=2)
    assert (receipt["reused"], receipt["files_written"]) == (False, 0)
    after = file_states(out)
    assert {k: v for k, v in after.items() if k != fm.STAMP_FILE} == {
        k: v for k, v in before.items() if k != fm.STAMP_FILE
    }
    assert fm.main(["--out", str(out), "--source", str(source), "--per-class", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith(": up to date")


def test_selection_is_seeded_and_a_smaller_count_is_a_prefix(tmp_path):
    source = fake_source(tmp_path / "src", per_class=8)
    out = tmp_path / "out"
    fm.export_folder(out, source, per_class=4, seed=0)
    four = pngs(out)
    fm.export_folder(tmp_path / "again", source, per_class=4, seed=0)
    assert pngs(tmp_path / "again") == four
    fm.export_folder(tmp_path / "other", source, per_class=4, seed=1)
    assert pngs(tmp_path / "other") != four
    kept = file_states(out)
    fm.export_folder(out, source, per_class=2, seed=0)  # fewer: the stale images are removed
    two = pngs(out)
    assert len(two) == 2 * 2 * len(fm.CLASSES) and set(two) < set(four)
    assert all(file_states(out)[f] == kept[f] for f in two)  # the kept ones untouched
    with pytest.raises(ValueError, match="has 8 usable images, fewer than per_class=9"):
        fm.export_folder(out, source, per_class=9)
    with pytest.raises(ValueError, match="per_class must be an integer >= 1"):
        fm.export_folder(out, source, per_class=0)


def test_images_repeated_in_either_domain_are_left_out(tmp_path):
    """The manifest keeps one file per sha256 and refuses one file under two classes, so exact
    copies (and an image equal to another's inverse) never reach the folder."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    images[10] = images[0]  # a copy under the same class (label 0)
    images[11] = images[2]  # a copy under another class (1 vs 2)
    images[13] = 255 - images[4]  # one image is the other's inverse
    usable = fm.unique_images(images)
    assert sorted(np.flatnonzero(~usable)) == [0, 2, 4, 10, 11, 13]
    images_path, labels_path = fm.split_files(tmp_path / "src", "t10k")
    write_idx(images_path, idx_bytes(images))
    write_idx(labels_path, idx_bytes(labels))
    with pytest.raises(ValueError, match="'T-shirt/top' has 0 usable images"):
        fm.export_folder(tmp_path / "out", tmp_path / "src", per_class=1)


# --- the env that reads it -----------------------------------------------------------------


def test_the_export_is_what_the_fashion_mnist_env_ingests(tmp_path):
    """The manifest of an export under conf/fashion_mnist's dataset settings: every file used
    (the notes and the stamp are metadata), classes named for prompts, an image and its inverse
    one group, and so in one split for every seed."""
    source = fake_source(tmp_path / "src", per_class=6)
    out = tmp_path / "out"
    fm.export_folder(out, source, per_class=6)
    ingest = parameters(ROOT, ENV)["ingest"]
    manifest, skipped, id_classes = build_manifest(
        ingest["sources"], {"main": out}, ingest["dataset"], ingest["decode"]
    )
    assert skipped.empty, skipped.to_dict("records")
    assert id_classes == ingest["dataset"]["id_classes"]
    assert len(manifest) == 2 * 6 * len(fm.CLASSES)
    assert set(manifest["domain"]) == set(fm.DOMAINS) == set(ingest["dataset"]["domains"])
    roles = manifest.groupby("class_name")["role"].first().to_dict()
    assert {c for c, r in roles.items() if r == "openset"} == set(
        ingest["dataset"]["openset_classes"]
    )
    groups = manifest.groupby("group")
    assert (groups.size() == 2).all() and (groups["domain"].nunique() == 2).all()
    assert (groups["class_name"].nunique() == 1).all()
    splits = make_splits(manifest, [1, 2], ingest["dataset"]["heldout_domain"])
    source_rows = splits[splits["split"].isin(SOURCE_SPLITS)]
    assert (source_rows.groupby(["seed", "group"])["split"].nunique() == 1).all()
    covariate = splits[splits["split"] == "test_covariate"]
    assert set(covariate["domain"]) == {ingest["dataset"]["heldout_domain"]}


def test_the_env_keeps_the_default_clip():
    """(tests/test_project_config.py checks that it sets only keys it changes.)"""
    base, merged = parameters(ROOT), parameters(ROOT, ENV)
    check_parameters(merged)
    # the embedded CLIP and its checkpoint (reused by the folder run), and its pretraining
    for key in ("model_name", "pretrained"):
        assert merged["clip"][key] == base["clip"][key]
    assert merged["pretrain"] == base["pretrain"]
    assert merged["ingest"]["emojishift"] == base["ingest"]["emojishift"]
    assert merged["clip"]["templates"] == ["a photo of a {}."]
    dataset = merged["ingest"]["dataset"]
    assert dataset["group_pattern"] == fm.GROUP_PATTERN
    naming = ClassNaming(dataset["class_names"], {}, dataset["underscores_to_spaces"])
    named = [naming("dark", folder) for folder in fm.FOLDERS]
    assert sorted(named) == sorted(dataset["id_classes"] + dataset["openset_classes"])
    assert set(dataset["openset_kinds"]) == set(dataset["openset_classes"])


# --- Debian's package ----------------------------------------------------------------------


def test_debian_package_reads_and_exports(tmp_path):
    files = fm.split_files(fm.DEFAULT_SOURCE, "t10k")
    if not all(f.is_file() for f in files) and os.environ.get("CI") != "true":
        pytest.skip(
            "Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)"
        )
    images, labels = fm.load_split(fm.DEFAULT_SOURCE, "t10k")
    assert images.shape == (fm.SPLITS["t10k"], 28, 28)
    assert np.bincount(labels).tolist() == [1000] * len(fm.CLASSES)
    assert fm.unique_images(images).all()
    receipt = fm.export_folder(tmp_path / "out", per_class=2)
    assert receipt["images_per_domain"] == {"dark": 20, "light": 20}
    dark = sorted((tmp_path / "out" / "dark").rglob("*.png"))
    shipped = pixels(dark[0])
    assert shipped.mean() < 128  # as shipped: light garment on black (mostly black)
    np.testing.assert_array_equal(
        pixels(Path(str(dark[0]).replace("/dark/", "/light/"))), 255 - shipped
    )
