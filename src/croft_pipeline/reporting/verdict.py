"""The verdict: paired differences with their intervals, how each method was selected, and the
oracle gap (Kedro-free tables for the report)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from croft_pipeline.reporting.tables import SHIFT_ORDER

SIGNIFICANT_UP, SIGNIFICANT_DOWN = "▲", "▼"
VERDICT_NOTE = (
    "Cells: method − baseline, mean over seeds, with its 95% paired bootstrap interval (seeds and "
    f"test images resampled). {SIGNIFICANT_UP}: the whole interval is above 0; {SIGNIFICANT_DOWN}: "
    "below 0; no mark: within noise. accuracy on ID test, the held-out domain (covariate) and its "
    "glyphs never seen in training (covariate_novel); energy AUROC of ID test against every "
    "open-set class, the near ones (same CLDR group as an ID class) and the far ones."
)


def format_interval(difference: float, low: float, high: float) -> str:
    mark = SIGNIFICANT_UP if low > 0 else SIGNIFICANT_DOWN if high < 0 else ""
    return f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]{mark}"


def verdict_table(comparisons: pd.DataFrame, role: str) -> pd.DataFrame:
    """Method × (shift, metric) cells of one kind of comparison (e.g. ``vs zero-shot``)."""
    rows = comparisons[comparisons["role"] == role]
    if rows.empty:
        return pd.DataFrame()
    cells = rows.assign(
        cell=[
            format_interval(d, lo, hi)
            for d, lo, hi in zip(rows["difference"], rows["low"], rows["high"], strict=True)
        ],  # fmt: skip
        label=[
            f"{m} − {b}" if role != "vs zero-shot" else m
            for m, b in zip(rows["method"], rows["baseline"], strict=True)
        ],  # fmt: skip
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


def selection_table(train_summary: Mapping[str, Any]) -> pd.DataFrame:
    """Per trained method: the selected point(s), best epochs, ID-val accuracy against
    zero-shot's, and the oracle (best held-out accuracy over the grid, an upper bound)."""
    rows = []
    for name, entry in train_summary["methods"].items():
        seeds = entry["seeds"]
        if "base" in entry:
            alphas = [run["alpha"] for run in seeds.values()]
            rows.append({"method": name, "selected (per seed)": "α = " + ", ".join(f"{a:g}" for a in alphas),
                         "val accuracy": _mean(seeds, "best_val_accuracy")})  # fmt: skip
            continue
        if entry["seeds"] and next(iter(seeds.values())).get("best_epoch", -1) < 0:
            rows.append({"method": name, "selected (per seed)": "(nothing trained)",
                         "val accuracy": _mean(seeds, "best_val_accuracy")})  # fmt: skip
            continue
        points = "; ".join(
            ", ".join(f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}" for k, v in _point(run, entry).items())
            for run in seeds.values()
        )  # fmt: skip
        oracle = [run.get("oracle", {}) for run in seeds.values()]
        chosen = [_probe_of(run) for run in seeds.values()]
        rows.append(
            {
                "method": name,
                "selected (per seed)": points,
                "best epoch (per seed)": ", ".join(
                    str(run["best_epoch"]) for run in seeds.values()
                ),
                "val accuracy": _mean(seeds, "best_val_accuracy"),
                "zero-shot val accuracy": _mean(seeds, "zero_shot_val_accuracy"),
                "held-out accuracy, selected": _nanmean([c.get("test_covariate") for c in chosen]),
                "held-out accuracy, oracle (upper bound)": _nanmean(
                    [o.get("test_covariate") for o in oracle]
                ),
            }
        )
    table = pd.DataFrame(rows).set_index("method")
    return table.map(_cell).fillna("–")


def _cell(value):
    if isinstance(value, float):
        return "–" if np.isnan(value) else f"{value:.3f}"
    return value


def _point(run: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    return {key: run["config"][key] for key in entry.get("grid", {})}


def _probe_of(run: Mapping[str, Any]) -> dict[str, float]:
    """The probe numbers of the selected grid point (the row whose point the config holds)."""
    for row in run.get("grid", []):
        if all(run["config"].get(k) == v for k, v in row.get("point", {}).items()):
            return row.get("probe", {})
    return {}


def _mean(seeds: Mapping[str, Any], key: str) -> float:
    return _nanmean([run.get(key) for run in seeds.values()])


def _nanmean(values) -> float:
    numbers = [float(v) for v in values if v is not None]
    return float(np.mean(numbers)) if numbers else float("nan")
