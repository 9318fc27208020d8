"""Tables, plots and the report page built from a synthetic evaluation."""

import io
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from croft_pipeline.methods.train_summary import TrainSummary
from croft_pipeline.ood.comparisons import ComparisonConfig, compare_methods
from croft_pipeline.ood.evaluation import (
    EvaluationConfig,
    evaluate_scores,
    score_predictions,
    summarise,
)
from croft_pipeline.ood.metrics import DETECTION_METRICS
from croft_pipeline.publishing.gates import check_gates
from croft_pipeline.reporting.classes import class_accuracy, class_accuracy_table
from croft_pipeline.reporting.report import build_plots, build_report, gates_section
from croft_pipeline.reporting.tables import (
    MEASURES,
    detection_table,
    domain_table,
    format_mean_std,
    shift_rank,
    summary_table,
)
from croft_pipeline.tools import screenshot
from croft_pipeline.tracking.provenance import MlflowRun, Provenance
from tests.ood.synthetic import (
    CLASSES,
    LOGIT_SCALE,
    synthetic_calibration,
    synthetic_predictions,
)
from tests.reporting.browser import chromium_binary, inspect_page

CONFIG = EvaluationConfig(scores={"energy": {}, "msp": {}, "knn": {"k": 2}})


def _evaluate(predictions: pd.DataFrame, config: EvaluationConfig, draws: int):
    """Summary, domain summary, comparisons, per-sample scores and calibration of ``predictions``."""
    calibration = synthetic_calibration(predictions)
    scores = score_predictions(predictions, LOGIT_SCALE, config).samples
    results, domains = evaluate_scores(scores, calibration, config)
    summary = summarise(results)
    domain_summary = summarise(
        domains.rename(columns={"accuracy": "value"}), ("method", "shift", "domain")
    )
    comparisons = compare_methods(scores, summary, config, ComparisonConfig(draws=draws))
    return summary, domain_summary, comparisons, scores, calibration


@pytest.fixture(scope="module")
def evaluation():
    predictions = synthetic_predictions(n_per_split=20)
    summary, domain_summary, comparisons, scores, calibration = _evaluate(predictions, CONFIG, 200)
    plots = build_plots(scores, summary, domain_summary, WISE_CURVES, calibration, CONFIG.splits)
    return summary, domain_summary, plots, comparisons, scores


# a WiSE-FT curve of croft_clean from zero-shot (alpha 0) to fine-tuned (alpha 1)
WISE_CURVES = pd.DataFrame(
    [
        {"method": "croft_clean", "seed": seed, "alpha": a, "split": split, "accuracy": acc + a / 4}
        for seed in (1, 2)
        for a in (0.0, 0.5, 1.0)
        for split, acc in (("val", 0.5), ("test_id", 0.5), ("test_covariate", 0.4))
    ]
)
TRAIN_SUMMARY = TrainSummary.from_dict(
    {
        "logit_scale": 20.0,
        "id_classes": CLASSES,
        "methods": {
            "zero_shot": {
                "seeds": {"1": {"config": {}, "best_epoch": -1, "best_val_accuracy": 0.5}}
            },
            "croft_clean": {
                "grid": {"lr": [0.01, 0.05]},
                "seeds": {
                    "1": {
                        "config": {"lr": 0.05},
                        "best_epoch": 7,
                        "best_val_accuracy": 0.7,
                        "zero_shot_val_accuracy": 0.5,
                        "grid": [
                            {"point": {"lr": 0.01}, "probe": {"test_covariate": 0.61}},
                            {"point": {"lr": 0.05}, "probe": {"test_covariate": 0.55}},
                        ],
                        "oracle": {"point": {"lr": 0.01}, "test_covariate": 0.61},
                    }
                },
            },
            "croft_clean+wise": {
                "base": "croft_clean",
                "space": "weight",
                "seeds": {"1": {"config": {}, "alpha": 0.5, "best_val_accuracy": 0.72}},
            },
        },
    }
)


RUN = MlflowRun("0123456789abcdef0123456789abcdef", "7")
PROVENANCE = Provenance(
    git_commit="a" * 40,
    git_dirty="true",
    kedro_env="test",
    pipeline="__default__",
    data={"manifest": "b" * 64},
    clip_checkpoint_sha256="c" * 64,
    mlflow=RUN,
)


@pytest.fixture(scope="module")
def report_file(evaluation, tmp_path_factory) -> Path:
    summary, domain_summary, plots, comparisons, scores = evaluation
    path = tmp_path_factory.mktemp("report") / "report.html"
    page = build_report(
        summary,
        domain_summary,
        comparisons,
        TRAIN_SUMMARY,
        plots,
        "Synthetic <run>",
        sample_scores=scores,
        splits=CONFIG.splits,
        provenance=PROVENANCE,
    )
    path.write_text(page, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def wide_report_file(tmp_path_factory) -> Path:
    """A report of ten methods and five scores (no plots): the results table is twice as wide
    as a 1400 px window, and the detection table (50 rows) taller than it."""
    methods = {"zero_shot": 0.4, "croft_clean": 0.9, "croft_no_edr": 0.8}
    methods |= {f"baseline_{i}": 0.3 + i / 20 for i in range(7)}
    config = EvaluationConfig(
        scores={"energy": {}, "msp": {}, "max_logit": {}, "mcm": {}, "knn": {"k": 2}}
    )
    predictions = synthetic_predictions(methods, n_per_split=8)
    summary, domain_summary, comparisons, scores, _ = _evaluate(predictions, config, 20)
    page = build_report(
        *(summary, domain_summary, comparisons, TRAIN_SUMMARY, {}, "wide"),
        sample_scores=scores,
        splits=config.splits,
        provenance=PROVENANCE,
    )
    path = tmp_path_factory.mktemp("wide") / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_format_mean_std():
    assert format_mean_std(0.81234, 0.0141, 3) == "0.812 ± 0.014"
    assert format_mean_std(0.81234, 0.0, 1) == "0.812"
    assert format_mean_std(float("nan"), 0.0, 2) == "nan"


def test_tables_have_one_row_per_method_and_the_expected_columns(evaluation):
    summary, domain_summary, *_ = evaluation
    table = summary_table(summary)
    assert list(table.index) == ["croft_clean", "zero_shot"]
    assert ("covariate", "accuracy") in table.columns
    assert ("openset", "energy_auroc") in table.columns and (
        "openset",
        "paper_fpr95_id_positive",
    ) in table.columns
    assert ("openset", "msp_auroc") not in table.columns  # other scores go to the detection table
    shifts = [c[0] for c in table.columns]
    assert shifts == sorted(shifts, key=shift_rank)
    assert shifts.index("fsood_id") > shifts.index("openset")  # full-spectrum after classic
    detection = detection_table(summary)
    assert set(detection.index) == {(m, s) for m in table.index for s in ("energy", "msp", "knn")}
    assert list(detection.columns) == [("openset", m) for m in MEASURES] + [
        ("fsood", m) for m in DETECTION_METRICS
    ]  # the classic column group, then the full-spectrum one (no correct-only ID there)
    assert all(
        re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", cell) for cell in detection.to_numpy().ravel()
    )
    domains = domain_table(domain_summary)
    assert set(domains.columns) == {("id", "photo"), ("id", "sketch"), ("covariate", "cartoon")}


def test_plots_are_png_images(evaluation):
    plots = evaluation[2]
    assert set(plots) == {
        "accuracy_scatter",
        "energy_hist_croft_clean",
        "energy_hist_zero_shot",
        "roc_energy",
        "accuracy_per_domain",
    }
    for png in plots.values():
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_report_is_self_contained_and_escaped(report_file, evaluation):
    page = report_file.read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(evaluation[2])
    # the page opens with its provenance, then the verdict, then the ID-vs-covariate scatter
    first_table, first_figure = (
        page.index('id="verdict-table"'),
        page.index('id="accuracy-scatter"'),
    )
    assert page.index('id="provenance"') < first_table < first_figure
    assert first_figure < page.index('id="class-table"') < page.index('id="confusion-zero_shot"')
    assert page.index('id="confusion-zero_shot"') < page.index('id="summary-table"')
    assert f'href="http://127.0.0.1:5000/#/experiments/7/runs/{RUN.run_id}"' in page
    assert "a" * 40 + " (dirty)" in page and "c" * 64 in page
    assert first_table > page.index("Verdict") and "▲" in page  # croft_clean wins beyond noise
    assert 'id="selection-table"' in page and "oracle (upper bound)" in page
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page, flags=re.I)
    assert "<link" not in page and "<script" not in page
    assert "Synthetic &lt;run&gt;" in page


def test_the_gate_box_opens_the_report_and_the_text_follows_the_run_s_parameters(evaluation):
    summary, domain_summary, plots, comparisons, scores = evaluation
    gates = {
        "comparisons": [
            {"shift": "covariate", "metric": "accuracy", "baseline": "zero_shot", "interval": True},
            {"shift": "openset", "metric": "energy_auroc", "op": ">=", "value": 2.0},
        ]
    }
    results = check_gates(summary, comparisons, gates, "croft_clean")
    assert [r.passed for r in results] == [True, True, False]  # finite, beyond noise, 2.0
    calibration = {"croft_clean": {"1": {"score": "msp", "tpr": 0.9, "threshold": 0.1}}}
    page = build_report(
        *(summary, domain_summary, comparisons, TRAIN_SUMMARY, plots, "t"),
        gates=gates_section("croft_clean", results, "champion"),
        calibration=calibration,
        served="croft_clean",
        sample_scores=scores,
        splits=CONFIG.splits,
    )
    verdict = re.search(r'<p class="verdict">([^<]*)</p>', page)
    assert verdict and verdict.start() < page.index('id="provenance"') < page.index('id="contents"')
    assert verdict.group(1).startswith(
        "Verdict: croft_clean, the served method, against zero-shot CLIP: covariate accuracy +"
    )
    assert "(better beyond noise)" in verdict.group(1) and "openset energy_auroc" in verdict.group(
        1
    )
    links = re.findall(r'<li><a href="#([^"]+)">', page)
    assert links[:2] == ["gates-table", "verdict-table"] and "confusion-matrices" in links
    assert set(links) <= set(re.findall(r'id="([^"]+)"', page))  # every link has its target
    # the served method's confusion matrix first, then zero-shot's; nothing else to fold here
    assert page.index('id="confusion-croft_clean"') < page.index('id="confusion-zero_shot"')
    assert "<details>" not in page
    assert page.index('id="gates-table"') < page.index('id="verdict-table"')
    assert "Quality gates of croft_clean: 1 of 3 gates failed (croft_clean openset/" in page
    assert "champion stays where it was" in page and page.count(">FAIL<") == 1
    assert "the msp threshold calibrated at 90% TPR" in page and "95% TPR" not in page
    # no header row of empty cells (pandas' row for a named index)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S)
    assert rows and not [r for r in rows if re.fullmatch(r"\s*<th>[^<]*</th>(\s*<th></th>)+\s*", r)]


def test_a_report_built_outside_a_run_says_its_provenance_is_unknown(evaluation):
    summary, domain_summary, plots, comparisons, _ = evaluation
    page = build_report(summary, domain_summary, comparisons, TRAIN_SUMMARY, plots, "t")
    assert "provenance unknown" in page and 'id="class-table"' not in page


def test_class_accuracy_matches_the_samples_and_puts_the_largest_drop_first(evaluation):
    scores = evaluation[4]
    table = class_accuracy_table(class_accuracy(scores, "test_id", "test_covariate", CLASSES))
    assert list(table.columns) == ["mean drop", "croft_clean", "zero_shot"]
    drops = [float(v) for v in table["mean drop"]]
    assert drops == sorted(drops, reverse=True)
    for name in CLASSES:
        label = CLASSES.index(name)
        for method in ("croft_clean", "zero_shot"):
            rows = scores[(scores["method"] == method) & (scores["label"] == label)]
            by_split = rows.groupby("split")["correct"].mean()
            expected = f"{by_split['test_id']:.3f} → {by_split['test_covariate']:.3f}"
            assert table.loc[name, method] == expected


@pytest.mark.skipif(
    chromium_binary() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(report_file, evaluation):
    seen = inspect_page(report_file)
    assert seen["images"] == len(evaluation[2])
    assert seen["loaded"] == seen["images"], seen["widths"]
    tables = {table["id"]: table for table in seen["tables"]}
    rows = {name: table["rows"] for name, table in tables.items()}
    assert rows["summary-table"] == 2 and rows["domain-table"] == 3  # photo, sketch, cartoon
    assert rows["verdict-table"] == 1 and rows["selection-table"] == 3
    assert rows["detection-table"] == 6
    assert seen["title"] == "Synthetic <run>"
    # the provenance box comes first and links the MLflow run
    assert seen["first_heading"] == "Provenance" and list(tables)[0] == "provenance-table"
    # one link out of the page, the MLflow run; the others are the table of contents
    assert [link for link in seen["links"] if not link.startswith("#")] == [RUN.url]
    facts = dict(tables["provenance-table"]["cells"])
    assert facts["Kedro environment"] == "test" and facts["manifest sha256"] == "b" * 64
    # per-class accuracy and a confusion matrix per method, read back as the browser shows them
    assert rows["class-table"] == len(CLASSES) and all(t["visible"] for t in tables.values())
    _check_confusion_matrices(tables, evaluation[4], evaluation[0])


def _check_confusion_matrices(tables: dict, scores: pd.DataFrame, summary: pd.DataFrame) -> None:
    """Each matrix against an independent count of the samples: row sums are the covariate
    samples of each true class, the diagonal's share is the covariate accuracy."""
    covariate = scores[scores["split"] == "test_covariate"]
    for method, samples in covariate.groupby("method"):
        cells = tables[f"confusion-{method}"]["cells"]  # each row: its class, then the counts
        counts = np.array([[int(c) for c in row[1:]] for row in cells])
        assert counts.shape == (len(CLASSES), len(CLASSES))
        per_class = samples["label"].value_counts().reindex(range(len(CLASSES)), fill_value=0)
        assert counts.sum(axis=1).tolist() == per_class.tolist()
        assert np.trace(counts) == int(samples["correct"].sum())
        mean = summary[
            (summary["method"] == method)
            & (summary["shift"] == "covariate")
            & (summary["metric"] == "accuracy")
        ]["mean"].iloc[0]
        assert np.trace(counts) / counts.sum() == pytest.approx(mean)  # equal samples per seed


@pytest.mark.skipif(
    chromium_binary() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_the_browser_check_sees_a_broken_image(report_file, tmp_path):
    broken = tmp_path / "broken.html"
    page = report_file.read_text(encoding="utf-8")
    broken.write_text(page.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1))
    seen = inspect_page(broken)
    assert seen["loaded"] == seen["images"] - 1


# Each table's nearest ancestor that scrolls sideways (its box), and what that box shows once
# scrolled to its far right and bottom: the last column, the header, the row labels.
WIDTH_CHECK = """
<script>
window.addEventListener("load", function () {
  function scroller(element) {
    for (var e = element.parentElement; e && e !== document.body; e = e.parentElement) {
      var overflow = getComputedStyle(e).overflowX;
      if (overflow === "auto" || overflow === "scroll") return e;
    }
    return null;
  }
  function inView(cell, box) {
    var c = cell.getBoundingClientRect(), b = box.getBoundingClientRect();
    return c.left >= b.left - 1 && c.right <= b.left + box.clientWidth + 1;
  }
  var tables = Array.from(document.querySelectorAll("table")).map(function (table) {
    var rect = table.getBoundingClientRect(), box = scroller(table);
    var seen = {id: table.id, labelled: table.classList.contains("labelled"), width: rect.width,
                height: rect.height, right: rect.right, box: null};
    if (box === null) return seen;
    var first = table.tBodies[0].rows[0], label = table.tBodies[0].querySelector("th");
    box.scrollLeft = box.scrollWidth;
    box.scrollTop = box.scrollHeight;
    var b = box.getBoundingClientRect();
    seen.box = {
      overflow: getComputedStyle(box).overflowX, scroll_width: box.scrollWidth,
      right: b.right, height: b.height,
      last_column_in_view: inView(first.cells[first.cells.length - 1], box),
      header_at_top: table.tHead === null ||
        Math.abs(table.tHead.getBoundingClientRect().top - b.top) <= 1,
      label_in_view: label !== null && inView(label, box)
    };
    box.scrollLeft = 0;
    box.scrollTop = 0;
    return seen;
  });
  var out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({
    inner_width: window.innerWidth, inner_height: window.innerHeight,
    page_width: document.documentElement.scrollWidth, tables: tables
  });
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.skipif(
    chromium_binary() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_wide_tables_scroll_in_their_own_box_in_a_1400_px_window(wide_report_file):
    """The page is never wider than the window; a table wider than it scrolls in a box whose
    horizontal scroll bar is on screen with it (the box fits the window's height), and at the
    box's far right and bottom the last column, the header and the row labels are in view."""
    seen = inspect_page(wide_report_file, script=WIDTH_CHECK, window=(1400, 900))
    width, height = seen["inner_width"], seen["inner_height"]
    assert width == 1400 and seen["page_width"] <= width
    tables = {table["id"]: table for table in seen["tables"]}
    assert {t for t, table in tables.items() if table["width"] > width} >= {
        "summary-table",
        "detection-table",
    }
    assert tables["detection-table"]["height"] > height
    for name, table in tables.items():
        box = table["box"]
        if box is None:  # the provenance box and the confusion matrices: narrow
            assert table["right"] <= width, name
            continue
        assert box["overflow"] in ("auto", "scroll") and box["right"] <= width, name
        assert box["scroll_width"] >= int(table["width"]), name
        assert box["height"] <= height, f"{name}: its scroll bar is below the window"
        assert box["last_column_in_view"] and box["header_at_top"], name
        assert box["label_in_view"] or not table["labelled"], name
    assert tables["summary-table"]["labelled"]


@pytest.mark.skipif(
    chromium_binary() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_the_screenshot_tool_writes_a_png_of_the_top_of_the_report(report_file, tmp_path):
    out = tmp_path / "images" / "report.png"  # a folder that does not exist yet
    assert screenshot.main([str(report_file), str(out), "--width", "900", "--height", "600"]) == 0
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    assert struct.unpack(">II", head[16:24]) == (900, 600)
    with Image.open(out) as image:
        darkest, lightest = image.convert("L").getextrema()
    assert darkest < 100 < lightest  # the title's text on the white page, not a blank picture


def test_the_screenshot_tool_names_what_is_missing(report_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report.png"
    assert screenshot.main([str(tmp_path / "absent.html"), str(out)]) == 1
    assert f"no such file: {tmp_path / 'absent.html'}" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no browser on it
    assert screenshot.main([str(report_file), str(out)]) == 1
    assert "apt-get install chromium" in capsys.readouterr().err and not out.exists()
