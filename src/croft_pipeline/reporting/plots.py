"""Matplotlib figures (Agg backend) rendered to PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from croft_pipeline.methods.wise import is_wise, wise_base  # noqa: E402
from croft_pipeline.reporting.curves import HISTOGRAM_BINS, histogram_edges  # noqa: E402

SHIFT_STYLE = {
    "id": ("ID test", "tab:blue"),
    "covariate": ("covariate shift", "tab:orange"),
    "openset": ("open-set (semantic shift)", "tab:red"),
}


ZERO_SHOT_COLOUR = "black"  # the baseline every figure compares against
PALETTE = [*plt.get_cmap("tab20").colors[::2], *plt.get_cmap("tab20").colors[1::2]]


def method_colours(methods: Iterable[str]) -> dict[str, tuple[float, ...] | str]:
    """A distinct colour per method (up to 20; then they repeat), zero-shot always black; a
    WiSE-FT point takes its base method's colour. The same method has the same colour in every
    figure of a report."""
    names = sorted({wise_base(m) for m in methods} - {"zero_shot"})
    colours: dict[str, tuple[float, ...] | str] = {
        name: PALETTE[index % len(PALETTE)] for index, name in enumerate(names)
    }
    colours["zero_shot"] = ZERO_SHOT_COLOUR
    return {m: colours[wise_base(m)] for m in {*methods, "zero_shot"}}


def to_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def score_histograms(
    scores_by_method: Mapping[str, Mapping[str, np.ndarray]],
    score: str = "energy",
    thresholds: Mapping[str, float] | None = None,
    bins: int = HISTOGRAM_BINS,
) -> dict[str, bytes]:
    """Per method, the score histograms of ID, covariate-shifted and open-set samples.

    ``scores_by_method[method][shift]`` holds the scores (seeds pooled); a calibrated threshold
    (mean over seeds) is drawn as a dashed line when given.
    """
    pngs = {}
    for method, by_shift in scores_by_method.items():
        figure, axes = plt.subplots(figsize=(6, 3.6))
        edges = histogram_edges(by_shift, bins) if any(len(v) for v in by_shift.values()) else bins
        for shift, values in by_shift.items():
            label, colour = SHIFT_STYLE.get(shift, (shift, None))
            axes.hist(values, bins=edges, alpha=0.45, density=True, label=label, color=colour)
        if thresholds and method in thresholds:
            axes.axvline(thresholds[method], color="black", linestyle="--", label="threshold")
        axes.set(title=f"{method}: {score} (higher = more ID)", xlabel=score, ylabel="density")
        axes.legend(fontsize=8)
        pngs[f"{score}_hist_{method}"] = to_png(figure)
    return pngs


def roc_curve_plot(roc: pd.DataFrame, score: str = "energy") -> bytes:
    """ROC curves (ID positive) of every method for one score (:func:`curves.roc_table`)."""
    figure, axes = plt.subplots(figsize=(5, 5))
    colours = method_colours(roc["method"].unique())
    for method, points in roc.groupby("method", sort=True):
        axes.plot(points["fpr"], points["tpr"], label=method, color=colours[method])
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    axes.set(
        title=f"ROC, {score}: ID test (positive) vs open-set",
        xlabel="false positive rate (open-set accepted)",
        ylabel="true positive rate (ID accepted)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(fontsize=8, loc="lower right")
    return to_png(figure)


def domain_accuracy_plot(domain_summary: pd.DataFrame) -> bytes:
    """Grouped bars: accuracy per domain (x) and method (colour), error bars = std over seeds."""
    labels = [f"{d}\n({s})" for s, d in _ordered_domains(domain_summary)]
    methods = sorted(domain_summary["method"].unique())
    colours = method_colours(methods)
    width = 0.8 / max(len(methods), 1)
    figure, axes = plt.subplots(figsize=(max(5, 1.3 * len(labels) + 2), 3.8))
    positions = np.arange(len(labels))
    for index, method in enumerate(methods):
        rows = domain_summary[domain_summary["method"] == method].set_index(["shift", "domain"])
        keys = _ordered_domains(domain_summary)
        means = [rows["mean"].get(key, np.nan) for key in keys]
        stds = [rows["std"].get(key, 0.0) for key in keys]
        axes.bar(
            positions + index * width,
            means,
            width,
            yerr=stds,
            label=method,
            capsize=2,
            color=colours[method],
        )
    axes.set_xticks(positions + width * (len(methods) - 1) / 2, labels, fontsize=8)
    axes.set(ylabel="accuracy", ylim=(0, 1), title="Accuracy per domain")
    axes.legend(fontsize=7, ncols=2)
    return to_png(figure)


def _ordered_domains(domain_summary: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = domain_summary[["shift", "domain"]].drop_duplicates()
    order = {"id": 0, "covariate": 1}
    return sorted(map(tuple, pairs.to_numpy()), key=lambda p: (order.get(p[0], 2), p[1]))


def accuracy_scatter(summary: pd.DataFrame, wise_curves: pd.DataFrame) -> bytes:
    """ID-test accuracy (x) against held-out-domain accuracy (y): one point per method (mean
    over seeds), the WiSE-FT curve of each trained method as a line from α = 0 to α = 1."""
    figure, axes = plt.subplots(figsize=(8.4, 5.2))
    means = summary[summary["metric"] == "accuracy"].pivot(
        index="method", columns="shift", values="mean"
    )
    colours = method_colours(means.index)
    if not wise_curves.empty:
        curves = wise_curves.groupby(["method", "alpha", "split"])["accuracy"].mean().unstack()
        for method, part in curves.groupby(level="method"):
            part = part.droplevel("method").sort_index()
            axes.plot(
                part["test_id"],
                part["test_covariate"],
                "-",
                alpha=0.6,
                lw=1.2,
                color=colours.get(method, ZERO_SHOT_COLOUR),
            )
    for method, row in means.iterrows():
        if not {"id", "covariate"} <= set(row.index) or np.isnan(row["id"]):
            continue
        marker = "*" if is_wise(method) else "o" if method != "zero_shot" else "s"
        axes.scatter(
            row["id"],
            row["covariate"],
            marker=marker,
            s=70 if marker == "*" else 40,
            color=colours[method],
            zorder=3,
            label=method,
        )
    # labels in a legend beside the axes: points of similar methods sit in one clump
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    axes.set(
        xlabel="ID test accuracy",
        ylabel="held-out domain (covariate) accuracy",
        title="Accuracy: ID vs covariate shift (lines: WiSE-FT, α from 0 to 1)",
    )
    axes.grid(alpha=0.3)
    return to_png(figure)
