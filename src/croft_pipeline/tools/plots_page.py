"""An offline page for ``dvc plots show`` and ``dvc plots diff``.

DVC's own page loads Vega, Vega-Lite and vega-embed from a CDN, so offline it stays blank. This
writes a page template (DVC's ``plots.html_template``) that inlines vl-convert-python's bundle of
the three, and sets that option in ``.dvc/config.local``: this clone only, and git ignores both
(without them DVC falls back to its CDN page). ``make run`` and ``make install`` run it; by hand:
``python -m croft_pipeline.tools.plots_page [project root]``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import vl_convert
from dvc.config import Config

from croft_pipeline.common.files import atomic_write_bytes

PAGE = "plots/offline.html"  # under .dvc/, where DVC resolves a relative plots.html_template
VEGA_LITE_MAJOR = "5"  # the specs' $schema: .dvc/plots/*.json and DVC's own templates
PLACEHOLDERS = ("{scripts}", "{plot_divs}", "{refresh_tag}")  # what DVC fills in a template
HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <style>table { border-spacing: 15px; }</style>
"""
BODY = """</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page_template(bundle: str, versions: str) -> str:
    """DVC's page with ``bundle`` (JavaScript that sets ``window.vegaEmbed``) inlined in place of
    the CDN's script tags (no ``{scripts}``, so DVC adds none); its globals stay in a closure."""
    if found := [p for p in PLACEHOLDERS if p in bundle]:
        raise ValueError(f"the Vega bundle holds {found}, which DVC would replace")
    script = re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)
    return f"{HEAD}    <script>\n// {versions}\n(function () {{\n{script}\n}})();\n    </script>\n{BODY}"


def write_page(dvc_dir: Path) -> Path:
    """Write the page under ``dvc_dir`` and point this clone's DVC at it."""
    vega_lite = max(
        (v for v in vl_convert.get_vegalite_versions() if v.split(".")[0] == VEGA_LITE_MAJOR),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    versions = (
        f"Vega {vl_convert.get_vega_version()}, Vega-Lite {vega_lite}, vega-embed "
        f"{vl_convert.get_vega_embed_version()}: vl-convert-python's bundle"
    )
    bundle = vl_convert.javascript_bundle(vl_version=vega_lite)
    path = atomic_write_bytes(dvc_dir / PAGE, page_template(bundle, versions).encode("utf-8"))
    with Config(dvc_dir=str(dvc_dir)).edit("local") as config:
        config.setdefault("plots", {})["html_template"] = PAGE
    return path


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    path = write_page(root / ".dvc")
    print(f"wrote {path} (plots.html_template in .dvc/config.local): dvc plots works offline")


if __name__ == "__main__":
    main()
