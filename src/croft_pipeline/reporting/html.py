"""A self-contained HTML report: tables inline, plots as base64 PNG data URIs, no external links."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Table:
    element_id: str
    heading: str
    table: pd.DataFrame
    note: str = ""


@dataclass(frozen=True)
class Plot:
    element_id: str
    caption: str
    png: bytes


def html_page(title: str, notes: Sequence[str], sections: Sequence[Table | Plot]) -> str:
    """The report page: the notes, then each section in order (a table with its heading, or a
    figure with its caption)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="note">{html.escape(note)}</p>' for note in notes),
    ]
    for section in sections:
        if isinstance(section, Table):
            parts.append(f"<h2>{html.escape(section.heading)}</h2>")
            if section.note:
                parts.append(f'<p class="note">{html.escape(section.note)}</p>')
            parts.append(table_html(section.table, section.element_id))
        else:
            parts.append(
                f'<figure id="{html.escape(section.element_id)}"><img class="plot" '
                f'alt="{html.escape(section.caption)}" src="{png_data_uri(section.png)}">'
                f"<figcaption>{html.escape(section.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
