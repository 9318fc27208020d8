"""The verdict: paired differences with their intervals, how each method was selected, and the
oracle gap (Kedro-free tables for the report)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from croft_pipeline.methods.train_summary import SeedWise, TrainSummary
from croft_pipeline.ood.intervals import beyond_noise
from croft_pipeline.reporting.tables import SHIFT_ORDER

SIGNIFICANT_UP, SIGNIFICANT_DOWN = "▲", "▼"
VERDICT_NOTE = (
    "Cells: method − baseline, mean over units (seeds; backbones × held-out folds × seeds in the "
    "benchmark), with its 95% paired bootstrap interval (units, per backbone in the benchmark, "
    "and test images resampled). "
    f"{SIGNIFICANT_UP}: the whole interval is above 0; {SIGNIFICANT_DOWN}: "
    "below 0; no mark: within noise. accuracy on ID test, the held-out domain (covariate) and its "
    "glyphs never seen in training (covariate_novel); energy AUROC of ID test against every "
    "open-set class, the near ones (same CLDR group as an ID class) and the far ones."
)


MARKS = {1: SIGNIFICANT_UP, -1: SIGNIFICANT_DOWN, 0: ""}


def format_interval(difference: float, low: float, high: float) -> str:
    return f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]{MARKS[beyond_noise(low, high)]}"


def verdict_table(comparisons: pd.DataFrame, role: str) -> pd.DataFrame:
    """Method × (shift, metric) cells of one kind of comparison (e.g. ``vs zero-shot``)."""
    rows = comparisons[comparisons["role"] == role]
    if rows.empty:
        return pd.DataFrame()
    cells = [
        format_interval(d, lo, hi)
        for d, lo, hi in zip(rows["difference"], rows["low"], rows["high"], strict=True)
    ]
    return _wide(rows, cells, role)


HEADLINE = (("covariate", "accuracy"), ("openset", "energy_auroc"))
VERDICT_WORDS = {1: "better beyond noise", -1: "worse beyond noise", 0: "within noise"}


def verdict_sentence(comparisons: pd.DataFrame, method: str) -> str:
    """The report's first line: ``method`` against zero-shot CLIP on the headline metrics, each
    with its interval and what it means; empty when there is no such comparison."""
    rows = comparisons[(comparisons["role"] == "vs zero-shot") & (comparisons["method"] == method)]
    parts = []
    for shift, metric in HEADLINE:
        row = rows[(rows["shift"] == shift) & (rows["metric"] == metric)]
        if not row.empty:
            r = row.iloc[0]
            side = beyond_noise(float(r["low"]), float(r["high"]))
            interval = format_interval(float(r["difference"]), float(r["low"]), float(r["high"]))
            parts.append(f"{shift} {metric} {interval} ({VERDICT_WORDS[side]})")
    if not parts:
        return ""
    return (
        f"Verdict: {method}, the served method, against zero-shot CLIP: " + "; ".join(parts) + "."
    )


COMPARISON_KEYS = ["role", "method", "baseline", "shift", "metric"]


def backbone_agreement(pooled: pd.DataFrame, per_backbone: pd.DataFrame) -> pd.DataFrame:
    """Per comparison of ``pooled``: ``holds_on``, on how many of its ``backbones`` the
    difference has the pooled sign with that backbone's own interval excluding 0, and
    ``differences``, each backbone's ``{backbone, difference, low, high}`` in their order."""
    groups = dict(list(per_backbone.groupby(COMPARISON_KEYS, sort=False)))
    rows = []
    for row in pooled.itertuples(index=False):
        key = tuple(getattr(row, name) for name in COMPARISON_KEYS)
        part = groups.get(key, per_backbone.iloc[:0])
        differences = [
            {
                "backbone": int(r.backbone),
                "difference": float(r.difference),
                "low": float(r.low),
                "high": float(r.high),
            }
            for r in part.itertuples()
        ]
        sign = int(np.sign(row.difference))
        holds = [sign != 0 and beyond_noise(d["low"], d["high"]) == sign for d in differences]
        rows.append(
            {
                **dict(zip(COMPARISON_KEYS, key, strict=True)),
                "holds_on": sum(holds),
                "backbones": len(differences),
                "differences": differences,
            }
        )
    return pd.DataFrame(rows, columns=[*COMPARISON_KEYS, "holds_on", "backbones", "differences"])


def backbone_table(pooled: pd.DataFrame, per_backbone: pd.DataFrame, role: str) -> pd.DataFrame:
    """Method × (shift, metric) cells of one role, per backbone: ``k/n: d₁ d₂ …``, the pooled
    claim holding on k of the n backbones (:func:`backbone_agreement`), then each backbone's
    difference (marked when its own interval excludes 0)."""
    rows = backbone_agreement(pooled[pooled["role"] == role], per_backbone)
    if rows.empty:
        return pd.DataFrame()
    cells = [
        f"{row.holds_on}/{row.backbones}: "
        + " ".join(
            f"{d['difference']:+.3f}{MARKS[beyond_noise(d['low'], d['high'])]}"
            for d in row.differences
        )
        for row in rows.itertuples()
    ]
    return _wide(rows, cells, role)


def _wide(rows: pd.DataFrame, cells: list[str], role: str) -> pd.DataFrame:
    """One cell per row of one role's comparisons: label × (shift, metric), in reading order."""
    cells = rows.assign(
        cell=cells,
        label=[
            f"{m} − {b}" if role != "vs zero-shot" and m != b else m  # m == b: two scores
            for m, b in zip(rows["method"], rows["baseline"], strict=True)
        ],
        rank=rows["shift"].map(_shift_rank),
    ).sort_values(["rank", "metric"])
    order = list(dict.fromkeys(zip(cells["shift"], cells["metric"], strict=True)))
    wide = cells.pivot(index="label", columns=["shift", "metric"], values="cell")
    return wide.reindex(columns=pd.MultiIndex.from_tuples(order, names=["shift", "metric"])).fillna(
        "–"
    )


def _shift_rank(shift: str) -> int:
    base = shift.split("_")[0]
    return SHIFT_ORDER.get(base, len(SHIFT_ORDER)) * 10 + (0 if shift == base else 1)


def selection_records(train_summary: TrainSummary, **extra: Any) -> list[dict[str, Any]]:
    """One record per method and seed: the selected grid point, best epoch, ID-val accuracy and
    zero-shot's, the held-out accuracy of the selected point and of the oracle point (the best
    held-out accuracy over the grid: an upper bound no user could select), or α for WiSE-FT."""
    records = []
    for name, entry in train_summary.methods.items():
        for seed, run in entry.seeds.items():
            record = {**extra, "method": name, "seed": seed, "val_accuracy": run.best_val_accuracy}
            if isinstance(run, SeedWise):
                record["alpha"] = run.alpha
            elif run.best_epoch >= 0:
                record.update(
                    point={key: run.config[key] for key in entry.grid or {}},
                    best_epoch=run.best_epoch,
                    zero_shot_val_accuracy=run.zero_shot_val_accuracy,
                    heldout_selected=run.probe().get("test_covariate"),
                    heldout_oracle=run.oracle.get("test_covariate"),
                )
            records.append(record)
    return records


def selection_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Per method, over its records (seeds, or folds × seeds): the points chosen (with how often),
    best epochs, mean accuracies, the oracle gap, or the WiSE-FT α."""
    rows = []
    for method, part in pd.DataFrame(records).groupby("method", sort=False):
        row: dict[str, Any] = {"method": method, "val accuracy": part["val_accuracy"].mean()}
        if "alpha" in part and part["alpha"].notna().any():
            alphas = part["alpha"].dropna()
            row["selected"] = f"α mean {alphas.mean():.2f} ({alphas.min():g}–{alphas.max():g})"
        elif "best_epoch" in part and part["best_epoch"].notna().any():
            chosen = part.dropna(subset=["best_epoch"])
            row.update(
                {
                    "selected": _points(chosen["point"]),
                    "best epoch": f"{int(chosen['best_epoch'].min())}–{int(chosen['best_epoch'].max())}",
                    "zero-shot val accuracy": chosen["zero_shot_val_accuracy"].mean(),
                    "held-out accuracy, selected": chosen["heldout_selected"].mean(),
                    "held-out accuracy, oracle (upper bound)": chosen["heldout_oracle"].mean(),
                    "oracle gap": chosen["heldout_oracle"].mean()
                    - chosen["heldout_selected"].mean(),
                }
            )
        else:
            row["selected"] = "(nothing trained)"
        rows.append(row)
    return pd.DataFrame(rows).set_index("method").map(_cell).fillna("–")


def _points(points: pd.Series) -> str:
    """``lr=0.05 ×2; lr=0.1`` (each chosen point with how often it was chosen)."""
    labels = [
        ", ".join(
            f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}" for k, v in point.items()
        )
        for point in points
    ]
    counts = pd.Series(labels).value_counts(sort=False)
    return "; ".join(f"{label} ×{n}" if n > 1 else label for label, n in counts.items())


def _cell(value):
    if isinstance(value, float):
        return "–" if np.isnan(value) else f"{value:.3f}"
    return value
