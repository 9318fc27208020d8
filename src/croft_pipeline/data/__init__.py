"""Kedro-free data layer: EmojiShift rendering, safe discovery and decoding, manifest, splits.

Public entry points (contracts in docs/architecture.md):
- ``emojishift.render_emojishift(config, downstream_root, pretrain_root) -> receipt``: render the
  benchmark (``config`` = the ``ingest.emojishift`` parameters); idempotent, deterministic.
  ``emojishift.build_pretrain_pairs(manifest, templates)``: image-caption pairs;
  ``emojishift.codepoint_of(path)``, ``emoji_catalog.load_catalog()``: names of emoji.
- ``manifest.build_manifest(sources, root_dirs, dataset, decode) -> (manifest, skipped, id_classes)``.
- ``splits.make_splits(manifest, seeds, heldout_domain, shots, val_per_class, ...) -> splits``.
- ``images.load_rgb(path)``: decode an image as the models should see it (EXIF-upright RGB,
  transparency over white, decompression-bomb limit); ``images.ImageDecodeError`` on bad files.
- ``discovery.image_file(dataset_roots, project_dir, root, path) -> Path``: the file of a manifest
  row, refusing paths that leave their root (``resolve_root``/``resolve_in_root`` underneath).
  Kedro nodes get the project directory from the ``project_dir`` catalog entry
  (conf/base/catalog_ingest.yml): root paths in ``dataset_roots`` are relative to it.
"""
