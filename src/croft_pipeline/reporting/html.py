"""A self-contained HTML report: tables inline, plots as base64 PNG data URIs, no external links."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

import pandas as pd

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table.metrics { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
table.metrics th, table.metrics td { border: 1px solid #bbb; padding: 3px 6px; text-align: right;
  white-space: nowrap; }
div.scroll { overflow-x: auto; }
table.metrics th { background: #eee; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 640px; border: 1px solid #ddd; }
.note { color: #555; font-size: 0.9em; }
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table_html(table: pd.DataFrame, table_id: str) -> str:
    if table.empty:
        return '<p class="note">(no data)</p>'
    rendered = table.to_html(classes="metrics", table_id=table_id, border=0, escape=True)
    return f'<div class="scroll">{rendered}</div>'


def html_page(
    title: str,
    notes: Sequence[str],
    tables: Mapping[str, tuple[str, pd.DataFrame]],
    plots: Mapping[str, tuple[str, bytes]],
) -> str:
    """The report page.

    ``tables`` maps an element id to ``(heading, table)``; ``plots`` maps an element id to
    ``(caption, png bytes)``.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="note">{html.escape(note)}</p>' for note in notes),
    ]
    for table_id, (heading, table) in tables.items():
        parts += [f"<h2>{html.escape(heading)}</h2>", table_html(table, table_id)]
    parts.append("<h2>Plots</h2>")
    for plot_id, (caption, png) in plots.items():
        parts.append(
            f'<figure id="{html.escape(plot_id)}"><img class="plot" alt="{html.escape(caption)}" '
            f'src="{png_data_uri(png)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )
    parts.append("</body></html>")
    return "\n".join(parts)
