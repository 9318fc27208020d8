"""A self-contained HTML report: tables inline, plots as base64 PNG data URIs, no external links."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from croft_pipeline.tracking.provenance import Provenance

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table.metrics { border-collapse: separate; border-spacing: 0; border: solid #bbb;
  border-width: 1px 0 0 1px; font-size: 0.85em; margin-bottom: 1.5em; }
table.metrics th, table.metrics td { border: solid #bbb; border-width: 0 1px 1px 0;
  padding: 3px 6px; text-align: right; white-space: nowrap; }
div.scroll { overflow: auto; max-height: 80vh; margin-bottom: 1.5em; }
div.scroll table.metrics { margin-bottom: 0; }
div.scroll thead { position: sticky; top: 0; z-index: 2; }
table.labelled tbody th { position: sticky; left: 0; z-index: 1; }
table.labelled thead th:first-child { position: sticky; left: 0; }
table.metrics th { background: #eee; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 640px; border: 1px solid #ddd; }
.note { color: #555; font-size: 0.9em; }
section.provenance { border: 1px solid #bbb; background: #f6f8fa; padding: 0.5em 1em;
  margin-bottom: 1.5em; }
section.provenance h2 { margin: 0.2em 0 0.5em; font-size: 1.1em; }
table.provenance td { text-align: left; font-family: monospace; white-space: normal;
  word-break: break-all; }
table.provenance th { text-align: left; }
figure.confusion { font-size: 0.8em; }
table.confusion td { min-width: 2.2em; }
nav.contents h2 { font-size: 1.1em; margin-bottom: 0.2em; }
nav.contents ol { margin-top: 0; columns: 2; font-size: 0.9em; }
p.verdict { font-size: 1.15em; border-left: 4px solid #888; padding-left: 0.6em; }
"""
COVARIATE_RGB = (255, 127, 14)  # matplotlib's tab:orange, the covariate shift of the plots


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table_html(table: pd.DataFrame, table_id: str) -> str:
    """``table`` in a box of its own that scrolls both ways (at most 80 % of the window high, so
    its horizontal scroll bar is on screen with it), its header row fixed at the top and, for a
    one-level row index, its row labels fixed at the left."""
    if table.empty:
        return f'<p class="note" id="{html.escape(table_id)}">(no data)</p>'
    classes = ["metrics", "labelled"] if table.index.nlevels == 1 else ["metrics"]
    rendered = header_in_one_row(table).to_html(
        classes=classes, table_id=table_id, border=0, escape=True
    )
    return f'<div class="scroll">{rendered}</div>'


def header_in_one_row(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without the header row pandas gives a named single-level index (a row of empty
    cells under the columns): the name moves to the top-left cell, or goes when the column levels
    have names of their own."""
    name = table.index.name
    if table.index.nlevels != 1 or name is None:
        return table
    if table.columns.nlevels == 1 and table.columns.name is None:
        return table.rename_axis(index=None, columns=name)
    return table.rename_axis(index=None)


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


@dataclass(frozen=True)
class Fragment:
    """A section whose body is HTML built (and escaped) by this module's functions."""

    element_id: str
    heading: str
    body: str
    note: str = ""


def provenance_box(provenance: Provenance | None) -> str:
    """The report's opening box: what made it, and a link to its MLflow run."""
    rows = list(provenance.rows()) if provenance is not None else []
    cells = [f"<th>{html.escape(k)}</th><td>{html.escape(v)}</td>" for k, v in rows]
    run = provenance.mlflow if provenance is not None else None
    if run is not None:
        link = f'<a href="{html.escape(run.url)}">{html.escape(run.run_id)}</a>'
        cells.append(
            f"<th>MLflow run</th><td>{link} (experiment {html.escape(run.experiment_id)})</td>"
        )
    else:
        cells.append("<th>MLflow run</th><td>none (not tracked)</td>")
    note = (
        f"The link assumes <code>mlflow ui</code> started from the project root at "
        f"{html.escape(run.ui_address)} (conf/base/mlflow.yml, ui)."
        if run is not None
        else ""
    )
    if provenance is None:
        note = "Built outside a pipeline run: provenance unknown."
    body = "".join(f"<tr>{cell}</tr>" for cell in cells)
    return (
        '<section class="provenance" id="provenance"><h2>Provenance</h2>'
        f'<table class="metrics provenance" id="provenance-table"><tbody>{body}</tbody></table>'
        f'<p class="note">{note}</p></section>'
    )


def confusion_figure(
    element_id: str, caption: str, classes: Sequence[str], counts: np.ndarray
) -> str:
    """A confusion matrix as a table heatmap: counts, shaded by the share of the true class."""
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    shares = counts / totals
    head = "".join(
        f'<th title="{html.escape(name)}">{index}</th>' for index, name in enumerate(classes)
    )
    body = []
    for true, name in enumerate(classes):
        cells = "".join(
            f'<td style="background: rgba{(*COVARIATE_RGB, round(float(share), 2))}" '
            f'title="{html.escape(name)}: {share:.0%} predicted {html.escape(classes[pred])}">'
            f"{int(count)}</td>"
            for pred, (count, share) in enumerate(zip(counts[true], shares[true], strict=True))
        )
        body.append(f"<tr><th>{true} {html.escape(name)}</th>{cells}</tr>")
    return (
        f'<figure class="confusion"><table class="metrics confusion" id="{html.escape(element_id)}">'
        f"<thead><tr><th>true \\ predicted</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def contents(sections: Sequence[Table | Plot | Fragment]) -> str:
    """The table of contents: a link to every table and fragment, then one to the figures."""
    links = [
        (section.element_id, section.heading)
        for section in sections
        if isinstance(section, Table | Fragment)
    ]
    figures = [section for section in sections if isinstance(section, Plot)]
    if figures:
        links.append((figures[0].element_id, f"Figures ({len(figures)})"))
    items = "".join(
        f'<li><a href="#{html.escape(anchor)}">{html.escape(text)}</a></li>'
        for anchor, text in links
    )
    return f'<nav class="contents" id="contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def html_page(
    title: str,
    notes: Sequence[str],
    sections: Sequence[Table | Plot | Fragment],
    opening: str = "",
) -> str:
    """The report page: ``opening`` (HTML, e.g. the provenance box), the notes, then each
    section in order (a table or fragment with its heading, or a figure with its caption)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        opening,
        contents(sections),
        *(f'<p class="note">{html.escape(note)}</p>' for note in notes),
    ]
    for section in sections:
        if isinstance(section, Fragment):
            parts.append(
                f'<h2 id="{html.escape(section.element_id)}">{html.escape(section.heading)}</h2>'
            )
            if section.note:
                parts.append(f'<p class="note">{html.escape(section.note)}</p>')
            parts.append(section.body)
        elif isinstance(section, Table):
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
