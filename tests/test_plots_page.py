"""The offline page of ``dvc plots`` (tools.plots_page): Vega inlined in DVC's page template,
which this clone's DVC then uses; Chromium draws the plots with every host unreachable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from croft_pipeline.tools.dvc_stages import PLOTS
from croft_pipeline.tools.plots_page import PAGE, page_template, write_page
from tests.dvc_harness import dvc, git
from tests.reporting.browser import charts_drawn, chromium_binary

ROOT = Path(__file__).resolve().parents[1]


def test_the_template_keeps_dvc_placeholders_and_the_bundle_intact():
    page = page_template("window.vegaEmbed = f; var end = '</script>';", "Vega x")
    assert "{plot_divs}" in page and "{refresh_tag}" in page
    assert "{scripts}" not in page  # DVC would put its CDN script tags there
    assert "'<\\/script>'" in page and page.count("</script>") == 1  # the bundle ends no tag
    with pytest.raises(ValueError, match="plot_divs"):
        page_template("var s = '{plot_divs}';", "Vega x")


def test_dvc_plots_show_draws_offline_with_the_page(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    dvc(project, "init", "-q")
    shutil.copytree(ROOT / ".dvc" / "plots", project / ".dvc" / "plots", dirs_exist_ok=True)
    rows = ["method,fpr,tpr"] + [f"{m},{x / 4},{min(1.0, x / 3)}" for m in "ab" for x in range(5)]
    (project / "roc.csv").write_text("\n".join(rows) + "\n")
    plot = {"roc_curve": {**PLOTS["roc_curve"], "y": {"roc.csv": PLOTS["roc_curve"]["y"]}}}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"plots": [plot]}))

    write_page(project / ".dvc")
    assert (project / ".dvc" / PAGE).is_file()
    assert PAGE in dvc(project, "config", "--local", "plots.html_template")
    dvc(project, "plots", "show", "-o", str(tmp_path / "plots"))
    page = tmp_path / "plots" / "index.html"
    assert "<script src=" not in page.read_text(encoding="utf-8")  # nothing to fetch
    if chromium_binary() is None:
        pytest.skip("no chromium binary on PATH")
    assert charts_drawn(page, 1) == {"charts": 1, "errors": []}
