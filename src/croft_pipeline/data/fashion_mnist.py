"""Fashion-MNIST as a folder dataset with two domains, from Debian's ``dataset-fashion-mnist``.

Zalando's article photos (Xiao et al. 2017, MIT licence): 28x28 grayscale, 10 classes. Debian
ships the four idx files gzipped under ``/usr/share/datasets/fashion-mnist/``. This module reads
them (numpy + gzip, magic numbers and sizes checked) and writes the layout ``ingest.source:
folder`` reads with ``layout: domains``::

    <out>/dark/<class_folder>/t10k_00042.png    the image as shipped: light garment on black
    <out>/light/<class_folder>/t10k_00042.png   the same image inverted: dark garment on white,
                                                as the product photos originally looked

One image is the same file name (stem) in both domains, so ``ingest.dataset.group_pattern``
(:data:`GROUP_PATTERN`) puts an image and its inverse in one group, hence one split. A bounded,
seeded number of images per class is chosen (a prefix of one fixed per-class shuffle: 100 per
class are the first 100 of the 200). Writing is idempotent (a stamp of the settings and the
source files; a rerun with the same settings rewrites nothing) and atomic per file (a temporary
file and a rename; the stamp last). Kedro-free; ``python -m croft_pipeline.data.fashion_mnist``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
SPLITS = {"t10k": 10_000, "train": 60_000}  # the official sizes (images per file)
IMAGE_SIDE = 28
STAMP_FILE = ".fashion_mnist_stamp.json"
EXPORT_VERSION = 1
DOMAINS = ("dark", "light")  # as shipped; inverted
# the official label order (0..9) and each class's folder (ingest maps the folder to a prompt
# name with ingest.dataset.class_names; underscores become spaces)
CLASSES = (
    ("T-shirt/top", "t-shirt_top"),
    ("Trouser", "trouser"),
    ("Pullover", "pullover"),
    ("Dress", "dress"),
    ("Coat", "coat"),
    ("Sandal", "sandal"),
    ("Shirt", "shirt"),
    ("Sneaker", "sneaker"),
    ("Bag", "bag"),
    ("Ankle boot", "ankle_boot"),
)
FOLDERS = tuple(folder for _, folder in CLASSES)
# the file stem (``t10k_00042``) is the concept, shared by an image and its inverse
GROUP_PATTERN = r"^(?P<group>(?:t10k|train)_[0-9]{5})$"

# idx: 2 zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
# big-endian uint32 per dimension, then the data
IDX_UBYTE = 0x08
IMAGES_MAGIC = 0x00000803  # ubyte, 3 dimensions (n, rows, cols)
LABELS_MAGIC = 0x00000801  # ubyte, 1 dimension (n)
IDX_MAX_BYTES = 64 * 2**20  # more than the 47 MB of train-images; a bound on a bad header


class IdxFormatError(ValueError):
    """An idx file that is not what Fashion-MNIST ships; the message names the file."""


class FashionMnistNotFound(FileNotFoundError):
    """The Debian package's files are not there; the message says how to install them."""


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """The array in one gzipped (or plain) idx file, its header and size checked.

    ``magic``: the expected magic number (:data:`IMAGES_MAGIC`, :data:`LABELS_MAGIC`); any
    unsigned-byte idx file when None. Raises :class:`IdxFormatError` naming the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path}: not an idx file ({len(data)} bytes, no header)")
    (found,) = np.frombuffer(data[:4], ">u4")
    zeros, dtype, ndim = data[0:2], data[2], data[3]
    if zeros != b"\0\0" or dtype != IDX_UBYTE or ndim == 0:
        raise IdxFormatError(
            f"{path}: bad magic number 0x{int(found):08x} (an unsigned-byte idx file starts "
            f"with 0x000008<ndim>)"
        )
    if magic is not None and found != magic:
        raise IdxFormatError(
            f"{path}: magic number 0x{int(found):08x}, expected 0x{magic:08x} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{path}: truncated header ({len(data)} bytes, {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], ">u4"))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise IdxFormatError(
            f"{path}: {len(data) - header} data bytes, the header's shape {shape} needs {expected}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by its magic bytes), at most IDX_MAX_BYTES."""
    try:
        with open(path, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as handle:
            data = handle.read(IDX_MAX_BYTES + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise IdxFormatError(f"{path}: corrupt or truncated gzip ({error})") from None
    except OSError as error:
        raise IdxFormatError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) > IDX_MAX_BYTES:
        raise IdxFormatError(f"{path}: larger than {IDX_MAX_BYTES} bytes uncompressed")
    return data


def split_files(source: str | Path, split: str) -> tuple[Path, Path]:
    """(images, labels) of one split under ``source``, as Debian names them."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {sorted(SPLITS)}")
    source = Path(source)
    return (
        source / f"{split}-images-idx3-ubyte.gz",
        source / f"{split}-labels-idx1-ubyte.gz",
    )


def require_source(source: str | Path, split: str) -> tuple[Path, Path]:
    """The split's two files, or :class:`FashionMnistNotFound` saying how to install them."""
    files = split_files(source, split)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        where = "" if Path(source) == DEFAULT_SOURCE else " (or point --source at the idx files)"
        raise FashionMnistNotFound(
            f"Fashion-MNIST not found: missing {', '.join(missing)}. Install Debian's package: "
            f"apt-get install {DEBIAN_PACKAGE}{where}"
        )
    return files


def load_split(source: str | Path, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 28, 28], labels uint8 [n]) of one split, every size checked."""
    images_path, labels_path = require_source(source, split)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise IdxFormatError(
            f"{images_path}: images of {images.shape[1]}x{images.shape[2]} pixels, "
            f"Fashion-MNIST's are {IMAGE_SIDE}x{IMAGE_SIDE}"
        )
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path}: {len(images)} images but {labels_path}: {len(labels)} labels"
        )
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise IdxFormatError(
            f"{labels_path}: label {int(labels.max())}, Fashion-MNIST's are 0..{len(CLASSES) - 1}"
        )
    return images, labels


def invert(images: np.ndarray) -> np.ndarray:
    """Dark garment on white from light garment on black (and back): ``255 - x``."""
    return np.subtract(255, images, dtype=np.uint8)


def select(labels: np.ndarray, per_class: int, seed: int, usable: np.ndarray) -> list[int]:
    """The indices to export, sorted: per class the first ``per_class`` of a shuffle seeded by
    (seed, class) over its ``usable`` images (so a smaller count is a prefix of a larger)."""
    chosen: list[int] = []
    for label, (name, _) in enumerate(CLASSES):
        candidates = np.flatnonzero((labels == label) & usable)
        if len(candidates) < per_class:
            raise ValueError(
                f"class {name!r} has {len(candidates)} usable images, fewer than "
                f"per_class={per_class}"
            )
        order = np.random.default_rng([seed, label]).permutation(len(candidates))
        chosen += candidates[order[:per_class]].tolist()
    return sorted(chosen)


def unique_images(images: np.ndarray) -> np.ndarray:
    """True for images whose pixels no other image repeats, in either domain: the manifest keeps
    one file per sha256 and refuses copies under two classes, so exact copies are left out."""
    keys = [a.tobytes() for a in images] + [a.tobytes() for a in invert(images)]
    counts: dict[bytes, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    n = len(images)
    return np.array([counts[keys[i]] == 1 and counts[keys[n + i]] == 1 for i in range(n)], bool)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A grayscale PNG of one image (Pillow, deterministic for given pixels)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` through a temporary file and a rename, unless ``path`` holds it already.
    Returns whether it wrote. No fsync per file; the caller syncs once before its stamp."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _atomic_text(path: Path, text: str) -> bool:
    """``write_if_changed`` with an fsync: the small files at the root (stamp, attribution)."""
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_stamp(out: Path) -> dict:
    try:
        return json.loads((out / STAMP_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def relpath(domain: str, label: int, split: str, index: int) -> str:
    return f"{domain}/{FOLDERS[label]}/{split}_{index:05d}.png"


ATTRIBUTION = """\
# Fashion-MNIST: attribution and licence

The images in this folder are Fashion-MNIST, Zalando's article images (Han Xiao, Kashif Rasul,
Roland Vollgraf: "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms", arXiv:1708.07747, 2017; https://github.com/zalandoresearch/fashion-mnist),
Copyright (c) 2017 Zalando SE, under the MIT licence (LICENSE.txt). They were read from Debian's
package `{package}` ({source}) and written by croft-pipeline
(`python -m croft_pipeline.data.fashion_mnist`) as PNG files in two domains:

- `dark/`: the images as shipped (light garment on black);
- `light/`: the same images inverted, 255 - x (dark garment on white).

Split `{split}`, {per_class} images per class (seed {seed}), the same images in both domains;
a file's name is its index in the split (`{split}_00042.png`). Classes (label: folder):
{classes}

Export stamp: {stamp}
"""

LICENSE = """\
The MIT License (MIT)

Copyright (c) 2017 Zalando SE

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def export_folder(
    out: str | Path,
    source: str | Path = DEFAULT_SOURCE,
    split: str = "t10k",
    per_class: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Write (or reuse) the two-domain folder dataset under ``out``; a JSON-able receipt."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    out = Path(out)
    files = require_source(source, split)
    settings = {"split": split, "per_class": per_class, "seed": seed, "version": EXPORT_VERSION}
    sources = {f.name: _sha256(f) for f in files}
    stamp = hashlib.sha256(
        json.dumps({"settings": settings, "sources": sources}, sort_keys=True).encode()
    ).hexdigest()
    previous = _read_stamp(out)
    listed = previous.get("files", [])
    if previous.get("stamp") == stamp and listed and all((out / r).is_file() for r in listed):
        return _receipt(out, stamp, settings, listed, reused=True, written=0)

    images, labels = load_split(source, split)
    indices = select(labels, per_class, seed, unique_images(images))
    written, relpaths = 0, []
    for domain in DOMAINS:
        pixels = images if domain == "dark" else invert(images)
        for index in indices:
            rel = relpath(domain, int(labels[index]), split, index)
            written += write_if_changed(out / rel, png_bytes(pixels[index]))
            relpaths.append(rel)
    _remove_stale(out, listed, relpaths)
    os.sync()  # every image on disk before the stamp declares the export complete
    classes = "\n".join(f"- {i}: {name} -> `{folder}/`" for i, (name, folder) in enumerate(CLASSES))
    notes = {
        "ATTRIBUTION.md": ATTRIBUTION.format(
            package=DEBIAN_PACKAGE,
            source=Path(source),
            split=split,
            per_class=per_class,
            seed=seed,
            classes=classes,
            stamp=stamp,
        ),
        "LICENSE.txt": LICENSE,
    }
    for name, text in notes.items():
        written += _atomic_text(out / name, text)
    record = {"stamp": stamp, "settings": settings, "sources": sources, "files": relpaths}
    _atomic_text(out / STAMP_FILE, json.dumps(record, indent=1))
    return _receipt(out, stamp, settings, relpaths, reused=False, written=written)


def _remove_stale(out: Path, old: list[str], new: list[str]) -> None:
    """Delete images an earlier export wrote that this one does not (never other files), and
    the class and domain folders that leaves empty."""
    root = out.resolve()
    folders: set[Path] = set()
    for rel in set(old) - set(new):
        target = (out / rel).resolve()
        if target.is_relative_to(root):
            target.unlink(missing_ok=True)
            folders |= {target.parent, target.parent.parent}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        inside = folder != root and folder.is_relative_to(root)
        if inside and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _receipt(out, stamp, settings, relpaths, reused, written) -> dict[str, Any]:
    per_domain = {d: sum(r.startswith(f"{d}/") for r in relpaths) for d in DOMAINS}
    return {
        "dataset": "fashion_mnist",
        "out": str(out),
        "stamp": stamp,
        "reused": reused,
        "files_written": written,
        "images": len(relpaths),
        "images_per_domain": per_domain,
        **settings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m croft_pipeline.data.fashion_mnist",
        description="Export Fashion-MNIST (Debian's dataset-fashion-mnist) as a two-domain "
        "folder dataset (dark = as shipped, light = inverted) for `kedro run --env=fashion_mnist`.",
    )
    parser.add_argument("--out", type=Path, default=Path("data/01_raw/fashion_mnist"))
    parser.add_argument("--per-class", type=int, default=200, help="images per class (200)")
    parser.add_argument("--seed", type=int, default=0, help="which images per class (0)")
    parser.add_argument("--split", choices=sorted(SPLITS), default="t10k")
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help=f"the idx files ({DEFAULT_SOURCE})"
    )
    args = parser.parse_args(argv)
    try:
        receipt = export_folder(args.out, args.source, args.split, args.per_class, args.seed)
    except (FashionMnistNotFound, IdxFormatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    verb = "up to date" if receipt["reused"] else f"{receipt['files_written']} files written"
    print(
        f"Fashion-MNIST {args.split}: {receipt['images']} images "
        f"({', '.join(f'{d} {n}' for d, n in receipt['images_per_domain'].items())}; "
        f"{args.per_class} per class) in {args.out}: {verb}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
